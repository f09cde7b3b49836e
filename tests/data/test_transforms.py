"""Frame and mask resizing in plain torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tvau_lightning.data.transforms import resize_frames, resize_masks


def test_area_downscale_of_blocks_is_the_block_mean():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 3, 4, 3))
    frames = torch.from_numpy(np.repeat(np.repeat(small, 4, axis=1), 4, axis=2).astype(np.uint8))
    out = resize_frames(frames, (3, 4), mode="area")
    assert out.shape == (2, 3, 4, 3) and out.dtype == torch.uint8
    assert torch.equal(out, torch.from_numpy(small.astype(np.uint8)))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "area", "nearest"])
def test_flat_frames_stay_flat(mode):
    frames = torch.full((3, 40, 60, 3), 77, dtype=torch.uint8)
    out = resize_frames(frames, (17, 23), mode=mode)
    assert out.shape == (3, 17, 23, 3)
    assert (out == 77).all()


def test_antialiased_bilinear_matches_pillow():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    ours = resize_frames(torch.from_numpy(image)[None], (30, 40))[0].numpy().astype(int)
    pillow = np.asarray(Image.fromarray(image).resize((40, 30), Image.BILINEAR)).astype(int)
    # both are anti-aliased triangle filters; they differ only by rounding
    assert np.abs(ours - pillow).max() <= 2


def test_size_none_or_same_is_identity():
    frames = torch.randint(0, 255, (2, 8, 10, 3), dtype=torch.uint8)
    assert resize_frames(frames, None) is frames
    assert resize_frames(frames, (8, 10)) is frames


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        resize_frames(torch.zeros(8, 10, 3, dtype=torch.uint8), (4, 5))
    with pytest.raises(ValueError, match="uint8"):
        resize_frames(torch.zeros(1, 8, 10, 3), (4, 5))
    with pytest.raises(ValueError, match="mode"):
        resize_frames(torch.zeros(1, 8, 10, 3, dtype=torch.uint8), (4, 5), mode="lanczos")  # type: ignore[arg-type]


def test_masks_nearest_keeps_labels_and_alignment():
    ids = torch.zeros(1, 8, 8, dtype=torch.int64)
    ids[0, 0:4, 4:8] = 7
    ids[0, 4:8, 0:4] = 300
    out = resize_masks(ids, (4, 4))
    expected = torch.zeros(1, 4, 4, dtype=torch.int64)
    expected[0, 0:2, 2:4] = 7
    expected[0, 2:4, 0:2] = 300
    assert out.dtype == torch.int64 and torch.equal(out, expected)
    masks = ids > 0
    up = resize_masks(masks, (16, 16))
    assert up.dtype == torch.bool
    assert torch.equal(up, masks.repeat_interleave(2, 1).repeat_interleave(2, 2))


@pytest.mark.parametrize(("src", "dst"), [((120, 180), (448, 672)), ((360, 640), (448, 672)), ((97, 61), (13, 29))])
def test_mask_gather_equals_torch_nearest_exact(src, dst):
    masks = torch.rand(3, *src) > 0.7
    reference = torch.nn.functional.interpolate(masks[:, None].float(), size=dst, mode="nearest-exact")[:, 0] > 0.5
    assert torch.equal(resize_masks(masks, dst), reference)
    masks[1] = False  # a frame without an anomalous pixel among others: only the others are resampled
    reference = torch.nn.functional.interpolate(masks[:, None].float(), size=dst, mode="nearest-exact")[:, 0] > 0.5
    assert torch.equal(resize_masks(masks, dst), reference)
    assert torch.equal(resize_masks(masks.to(torch.uint8), dst), reference.to(torch.uint8))
    assert torch.equal(resize_masks(torch.zeros(2, *src, dtype=torch.bool), dst), torch.zeros(2, *dst, dtype=torch.bool))
    ids = (torch.rand(3, *src) * 1000).long()  # int64 ids take the gather path: same sampling grid
    reference = torch.nn.functional.interpolate(ids[:, None].double(), size=dst, mode="nearest-exact")[:, 0].long()
    assert torch.equal(resize_masks(ids, dst), reference)
    frames = torch.randint(0, 256, (2, *src, 3), dtype=torch.uint8)
    reference = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=dst, mode="nearest-exact")
    assert torch.equal(resize_frames(frames, dst, mode="nearest"), reference.permute(0, 2, 3, 1).to(torch.uint8))
