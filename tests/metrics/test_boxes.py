"""Box IoU under the inclusive-pixel and the continuous convention: hand-computed cases and pixel counting."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.metrics.boxes import (
    box_iou_continuous,
    box_iou_inclusive,
    inclusive_to_continuous,
    paired_box_iou_inclusive,
)


def _pixel_iou(a: np.ndarray, b: np.ndarray, size: int = 40) -> float:
    """IoU by painting two inclusive integer boxes on a pixel grid and counting pixels."""
    canvas = np.zeros((2, size, size), dtype=bool)
    for k, (x1, y1, x2, y2) in enumerate((a, b)):
        canvas[k, y1:y2 + 1, x1:x2 + 1] = True
    return float((canvas[0] & canvas[1]).sum() / (canvas[0] | canvas[1]).sum())


def test_hand_computed_cases_and_the_convention_difference():
    a, b = [[0, 0, 9, 9]], [[5, 5, 14, 14]]
    # inclusive: 10 × 10 pixels each, 5 × 5 shared; continuous: 9 × 9 squares sharing 4 × 4
    np.testing.assert_allclose(box_iou_inclusive(a, b), [[25 / 175]], rtol=1e-15)
    np.testing.assert_allclose(box_iou_continuous(a, b), [[16 / 146]], rtol=1e-15)
    # a one-pixel box is one pixel (inclusive) but empty (continuous)
    assert box_iou_inclusive([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 1.0
    assert box_iou_continuous([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0
    # boxes that share their border column: one column of 6 pixels in common, nothing as continuous boxes
    assert box_iou_inclusive([[0, 0, 5, 5]], [[5, 0, 10, 5]])[0, 0] == pytest.approx(6 / 66)
    assert box_iou_continuous([[0, 0, 5, 5]], [[5, 0, 10, 5]])[0, 0] == 0.0
    np.testing.assert_allclose(box_iou_inclusive([[0, 0, 1, 1]], [[1, 1, 2, 2], [5, 5, 6, 6]]), [[1 / 7, 0.0]])
    np.testing.assert_allclose(box_iou_continuous([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]),
                               [[50 / 150, 0.0]])


def test_inclusive_iou_equals_pixel_counting_and_the_continuous_iou_of_the_converted_boxes():
    rng = np.random.default_rng(3)
    corners = rng.integers(0, 30, size=(60, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)  # x1 <= x2, y1 <= y2
    a, b = boxes[:30], boxes[30:]
    matrix = box_iou_inclusive(a, b)
    assert matrix.shape == (30, 30)
    expected = np.array([[_pixel_iou(p, q) for q in b] for p in a])
    np.testing.assert_array_equal(matrix, expected)  # same integer counts, same division: exact
    np.testing.assert_array_equal(paired_box_iou_inclusive(a, b), np.diagonal(matrix))
    # an inclusive box (x1, y1, x2, y2) is the continuous box (x1, y1, x2 + 1, y2 + 1)
    continuous = box_iou_continuous(inclusive_to_continuous(a), inclusive_to_continuous(b))
    np.testing.assert_array_equal(continuous, matrix)
    assert (box_iou_continuous(a, b) != matrix).any()  # the conventions differ on the same numbers


def test_edge_cases():
    assert box_iou_inclusive(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert box_iou_continuous([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)
    assert paired_box_iou_inclusive(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)
    assert paired_box_iou_inclusive([0, 0, 4, 4], [0, 0, 4, 4]).tolist() == [1.0]  # a flat 4-vector is one box
    with pytest.raises(ValueError, match="as many boxes on both sides, got 2 and 1"):
        paired_box_iou_inclusive([[0, 0, 1, 1], [0, 0, 2, 2]], [[0, 0, 1, 1]])
    np.testing.assert_array_equal(inclusive_to_continuous([[1, 2, 3, 4]]), [[1.0, 2.0, 4.0, 5.0]])
