"""Anomaly-focused frames: the GT mask stays pixel-exact, the rest is blurred."""

import numpy as np
import pytest
from scipy import ndimage

from tvau_lightning.builder.focus import blur_outside_mask, blur_sigma, crop_box


def textured(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_mask_kept_exactly_and_background_blurred():
    frame = textured()
    mask = np.zeros(frame.shape[:2], dtype=bool)
    mask[10:30, 20:45] = True
    mask[40, 5] = True  # a single pixel too
    out = blur_outside_mask(frame, mask, sigma=3.0)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(out[mask], frame[mask])
    # outside: what scipy's Gaussian gives for the whole frame (computed independently per channel)
    reference = np.stack([ndimage.gaussian_filter(frame[..., c].astype(np.float64), 3.0, mode="nearest")
                          for c in range(3)], axis=-1)
    assert np.abs(out[~mask].astype(float) - reference[~mask]).max() <= 1.0
    # blur removes most of the noise's variance outside the mask
    assert out[~mask].astype(float).std() < 0.4 * frame[~mask].astype(float).std()
    assert (out[~mask] != frame[~mask]).mean() > 0.9
    assert not np.shares_memory(out, frame)


def test_edge_cases():
    frame = textured()
    np.testing.assert_array_equal(blur_outside_mask(frame, np.zeros((48, 64), bool), 0.0), frame)
    np.testing.assert_array_equal(blur_outside_mask(frame, np.ones((48, 64), bool), 5.0), frame)
    with pytest.raises(ValueError, match="does not match"):
        blur_outside_mask(frame, np.zeros((10, 10), bool), 1.0)
    with pytest.raises(ValueError, match="uint8"):
        blur_outside_mask(frame.astype(np.float32), np.zeros((48, 64), bool), 1.0)
    assert blur_sigma((480, 856), 0.02) == pytest.approx(17.12)
    assert blur_sigma((20, 30), 0.02) == 1.0


def test_crop_box_margin_minimum_and_clipping():
    frame = textured(100, 200)
    crop = crop_box(frame, (50, 40, 90, 60), margin=0.25)  # 40x20 box grows by 10 and 5 px per side
    assert crop.shape == (30, 60, 3)
    np.testing.assert_array_equal(crop, frame[35:65, 40:100])
    assert crop_box(frame, (10, 10, 12, 12), margin=0.0, min_side=16).shape == (16, 16, 3)
    assert crop_box(frame, (190, 90, 200, 100)).shape[:2] == (13, 13)  # clipped at the corner
    with pytest.raises(ValueError, match="outside"):
        crop_box(frame, (300, 300, 310, 310), min_side=1)
