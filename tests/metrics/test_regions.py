"""Heatmap → detections, masks → boxes → tracks: components, connectivity, coordinate mapping, linking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvau_lightning.metrics.regions import (
    cells_to_pixels,
    heatmap_to_detections,
    link_boxes,
    masks_to_frame_boxes,
    masks_to_tracks,
)


def test_known_components_boxes_and_scores():
    heat = np.zeros((2, 6, 8), dtype=np.float32)
    heat[0, 1:3, 1:4] = [[0.6, 0.7, 0.6], [0.6, 0.9, 0.6]]  # component 1, max 0.9
    heat[0, 4, 6] = 0.51  # component 2, a single pixel
    heat[1, 0:6, 0] = 0.8  # frame 2: a column
    heat[1, 3, 5] = 0.5  # exactly the threshold: not anomalous (strict >)
    det = heatmap_to_detections(heat, np.array([10, 11]), original_size=(6, 8))
    expected = [
        [10, 1, 1, 3, 2, 0.9],
        [10, 6, 4, 6, 4, 0.51],
        [11, 0, 0, 0, 5, 0.8],
    ]
    np.testing.assert_allclose(det, expected, rtol=0, atol=1e-6)
    assert det.dtype == np.float64


def test_region_scores_equal_scipys_labelled_maximum():
    """Each region's score is the maximum of the ranking map inside the region (not its box): the same as
    ``scipy.ndimage.maximum`` over the labelled components, on random blobs whose boxes overlap other regions."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(5):
        heat = ndimage.gaussian_filter(rng.random((3, 40, 60)), sigma=(0, 2, 2)).astype(np.float32)
        heat = (heat - heat.min()) / (heat.max() - heat.min())
        ranking = rng.normal(size=heat.shape).astype(np.float32)  # unrelated to the heatmap: any box leak shows
        det = heatmap_to_detections(heat, np.arange(3), original_size=(40, 60), scores=ranking)
        labels, count = ndimage.label(heat > 0.5, structure=np.array([np.zeros((3, 3)), np.ones((3, 3)),
                                                                        np.zeros((3, 3))]))
        assert count == len(det) > 3
        expected = ndimage.maximum(ranking, labels, index=np.arange(1, count + 1))
        np.testing.assert_array_equal(det[:, 5], np.asarray(expected, dtype=np.float64))


def test_eight_connectivity_joins_diagonal_pixels_but_not_frames():
    heat = np.zeros((2, 4, 4))
    heat[0, 0, 0] = heat[0, 1, 1] = heat[0, 2, 2] = 0.9  # a diagonal: one 8-connected component
    heat[1, 0, 0] = 0.7  # same pixel in the next frame: a separate detection
    det = heatmap_to_detections(heat, np.array([0, 1]), (4, 4))
    np.testing.assert_allclose(det, [[0, 0, 0, 2, 2, 0.9], [1, 0, 0, 0, 0, 0.7]])
    masks = heat > 0.5
    np.testing.assert_array_equal(masks_to_frame_boxes(masks, np.array([0, 1])), [[0, 0, 0, 2, 2], [1, 0, 0, 0, 0]])


def test_threshold_is_strict_and_configurable():
    heat = np.full((1, 2, 2), 0.5)
    assert len(heatmap_to_detections(heat, [0], (2, 2))) == 0
    assert len(heatmap_to_detections(heat, [0], (2, 2), threshold=0.49)) == 1


def test_cell_mapping_to_original_pixels():
    # h = 3 rows over H = 10: cell 0 -> rows 0..3, cell 1 -> 3..6 (floor 3.33, ceil 6.67 - 1), cell 2 -> 6..9
    # w = 4 cols over W = 6: cell 1 -> floor(1.5) = 1 .. ceil(3) - 1 = 2; cell 3 -> floor(4.5) = 4 .. 5
    px = cells_to_pixels(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([1, 3, 0]), np.array([1, 3, 3]),
                         grid=(3, 4), original_size=(10, 6))
    np.testing.assert_array_equal(px, [[1, 0, 2, 3], [4, 3, 5, 6], [0, 6, 5, 9]])
    # equal resolution: identity; upsampling by 4: cell c -> 4c .. 4c + 3
    np.testing.assert_array_equal(cells_to_pixels([2], [3], [1], [5], (8, 8), (8, 8)), [[1, 2, 5, 3]])
    np.testing.assert_array_equal(cells_to_pixels([2], [3], [1], [5], (8, 8), (32, 32)), [[4, 8, 23, 15]])


def test_heatmap_boxes_land_on_the_original_video_pixels():
    # a 4x4 heatmap of a 480x640 video: the blob of cells rows 1..2, cols 2..3 covers rows 120..359, cols 320..639
    heat = torch.zeros(1, 4, 4, dtype=torch.bfloat16)
    heat[0, 1:3, 2:4] = 0.75
    det = heatmap_to_detections(heat, torch.tensor([5]), torch.tensor([480, 640]))
    np.testing.assert_allclose(det, [[5, 320, 120, 639, 359, 0.75]])


def test_padding_frames_are_skipped_and_frame_numbers_kept():
    heat = np.zeros((3, 2, 2))
    heat[:, 0, 0] = 0.9
    det = heatmap_to_detections(heat, np.array([7, 8, -1]), (2, 2))
    np.testing.assert_array_equal(det[:, 0], [7, 8])
    assert heatmap_to_detections(heat, np.array([-1, -1, -1]), (2, 2)).shape == (0, 6)
    assert masks_to_frame_boxes(heat > 0.5, np.array([-1, -1, -1])).shape == (0, 5)


def test_invalid_heatmap_inputs_raise():
    with pytest.raises(ValueError, match=r"\(T, h, w\)"):
        heatmap_to_detections(np.zeros((2, 2)), [0], (2, 2))
    with pytest.raises(ValueError, match="frame_index"):
        heatmap_to_detections(np.zeros((2, 2, 2)), [0], (2, 2))
    with pytest.raises(ValueError, match="NaN"):
        heatmap_to_detections(np.full((1, 2, 2), np.nan), [0], (2, 2))
    with pytest.raises(ValueError, match="original_size"):
        heatmap_to_detections(np.zeros((1, 2, 2)), [0], (0, 2))


def test_mask_boxes_mapped_from_resized_masks():
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 2:4, 0:2] = True
    np.testing.assert_array_equal(masks_to_frame_boxes(masks, [3], original_size=(8, 12)), [[3, 0, 4, 5, 7]])


def rows(*boxes_by_frame):
    return np.array([[f, *b] for f, boxes in boxes_by_frame for b in boxes])


def test_linking_follows_objects_across_consecutive_frames():
    table = rows(
        (0, [(0, 0, 9, 9), (50, 50, 59, 59)]),
        (1, [(52, 50, 61, 59), (2, 0, 11, 9)]),  # both move; listed in the other order
        (2, [(4, 0, 13, 9)]),  # the second object vanished
        (4, [(6, 0, 15, 9)]),  # a gap of one frame ends a track
    )
    tracks = link_boxes(table)
    assert [t.tolist() for t in tracks] == [
        [[0, 0, 0, 9, 9], [1, 2, 0, 11, 9], [2, 4, 0, 13, 9]],
        [[0, 50, 50, 59, 59], [1, 52, 50, 61, 59]],
        [[4, 6, 0, 15, 9]],
    ]


def test_linking_is_greedy_by_iou_not_by_track_order():
    # Track A [0..9] and B [4..13] (x only, height 10). New boxes b1 = [4..13] (IoU .43 with A, 1.0 with B) and
    # b2 = [0..3] (IoU .4 with A, 0 with B). By IoU: B-b1 then A-b2; by track order A would steal b1.
    table = rows((0, [(0, 0, 9, 9), (4, 0, 13, 9)]), (1, [(4, 0, 13, 9), (0, 0, 3, 9)]))
    tracks = link_boxes(table)
    assert [t.tolist() for t in tracks] == [
        [[0, 0, 0, 9, 9], [1, 0, 0, 3, 9]],
        [[0, 4, 0, 13, 9], [1, 4, 0, 13, 9]],
    ]


def test_linking_threshold():
    table = rows((0, [(0, 0, 9, 9)]), (1, [(9, 0, 18, 9)]))  # IoU 10/190 = 0.053
    assert len(link_boxes(table)) == 2
    assert len(link_boxes(table, link_iou=0.05)) == 1
    with pytest.raises(ValueError, match="link_iou"):
        link_boxes(table, link_iou=0)
    assert link_boxes(np.zeros((0, 5))) == []


def test_masks_to_tracks_on_two_moving_squares():
    masks = np.zeros((6, 40, 40), dtype=bool)
    expected_a, expected_b = [], []
    for f in range(6):
        masks[f, 5:10, 2 + 2 * f:7 + 2 * f] = True
        expected_a.append([f, 2 + 2 * f, 5, 6 + 2 * f, 9])
        if f >= 2:
            masks[f, 30:36, 30 - f:34 - f] = True
            expected_b.append([f, 30 - f, 30, 33 - f, 35])
    tracks = masks_to_tracks(torch.from_numpy(masks), torch.arange(6))
    assert [t.tolist() for t in tracks] == [expected_a, expected_b]
    assert all(t.dtype == np.int64 for t in tracks)
