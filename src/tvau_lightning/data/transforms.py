"""Resizing of uint8 frames and of masks in plain torch (no torchvision), as the DataModules need it.

Frames are resized with an anti-aliased filter (torch's uint8 fast path for bilinear/bicubic), masks and
id maps with nearest-neighbour so that labels never blend. Backbone normalisation is not done here.

:func:`resize_frames` runs on the frames' device: the DataModules call it in their workers (``resize_on:
data``) or on the model's device after the batch transfer (``resize_on: device``). On the CPU both give the
same bytes. On other devices, where torch has no anti-aliased uint8 kernel, bilinear/bicubic resample in
float32, separably, rounding after each pass (within one grey level of the CPU's uint8 kernel when
down-scaling).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

FrameResizeMode = Literal["bilinear", "bicubic", "area", "nearest"]


def resize_frames(
    frames: torch.Tensor,
    size: tuple[int, int] | list[int] | None,
    mode: FrameResizeMode = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``(T, H, W, 3)`` uint8 frames to ``size = (H', W')``; returns ``(T, H', W', 3)`` uint8.

    ``bilinear``/``bicubic`` are anti-aliased when ``antialias`` (right for down-scaling), ``area`` averages
    source pixels (down-scaling only is meaningful), ``nearest`` copies pixels. ``size=None`` or the current
    size returns the input unchanged.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"resize_frames expects (T, H, W, 3) frames, got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"resize_frames expects uint8 frames, got {frames.dtype}")
    if size is None:
        return frames
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive (H, W), got {tuple(size)}")
    if (height, width) == tuple(frames.shape[1:3]) or frames.shape[0] == 0:
        return frames if frames.shape[0] else frames.new_zeros((0, height, width, 3))
    # (T, H, W, 3) viewed as channels-last (T, 3, H, W): torch's uint8 kernels work on it without a copy
    image = frames.permute(0, 3, 1, 2)
    if mode in ("bilinear", "bicubic") and frames.device.type != "cpu":
        out = _interpolate_float(image, (height, width), mode, antialias)
    elif mode in ("bilinear", "bicubic"):
        out = F.interpolate(image, size=(height, width), mode=mode, align_corners=False, antialias=antialias)
    elif mode == "area":
        out = F.interpolate(image.float(), size=(height, width), mode="area").round_().clamp_(0, 255).to(torch.uint8)
    elif mode == "nearest":
        out = F.interpolate(image, size=(height, width), mode="nearest-exact")
    else:
        raise ValueError(f"unknown frame resize mode {mode!r}; use bilinear, bicubic, area or nearest")
    return out.permute(0, 2, 3, 1).contiguous()


def _interpolate_float(image: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool) -> torch.Tensor:
    """Bilinear/bicubic resampling of uint8 ``(T, 3, H, W)`` in float32 for devices without torch's anti-aliased
    uint8 kernel. Like that kernel it is separable, width first, rounding and clamping to uint8 after each pass;
    the result is within one level of the CPU's bytes when down-scaling (``tests/data/test_frame_transfer.py``)."""
    out = image.float()
    for target in ((image.shape[2], size[1]), size):
        if tuple(out.shape[2:]) != tuple(target):
            out = F.interpolate(out, size=target, mode=mode, align_corners=False, antialias=antialias)
            out = out.round_().clamp_(0, 255)
    return out.to(torch.uint8)


def nearest_indices(in_size: int, out_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Source indices of nearest-neighbour resampling with matched pixel centres (torch's ``nearest-exact``):
    ``src = min(floor((dst + 0.5) * in / out), in - 1)``."""
    dst = torch.arange(out_size, dtype=torch.float64, device=device)
    return ((dst + 0.5) * (in_size / out_size)).floor().clamp_(max=in_size - 1).long()


def resize_masks(masks: torch.Tensor, size: tuple[int, int] | list[int] | None) -> torch.Tensor:
    """Resize ``(T, H, W)`` masks or id maps (any dtype) to ``(T, H', W')`` with nearest neighbour.

    The dtype is kept; pixel centres are matched (as torch's ``nearest-exact``), so a mask resized to the
    frames' size stays aligned with frames resized by :func:`resize_frames`. Bool and uint8 masks use torch's
    uint8 kernel (bools reinterpreted without a copy); other dtypes (int64 ids …) a row/column gather, exact
    for any value.

    Frames without a nonzero pixel (most frames of a test video) are not resampled: their output is zeros,
    which is what nearest-neighbour gives them.
    """
    if masks.ndim != 3:
        raise ValueError(f"resize_masks expects (T, H, W) masks, got shape {tuple(masks.shape)}")
    if size is None:
        return masks
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive (H, W), got {tuple(size)}")
    if (height, width) == tuple(masks.shape[1:]):
        return masks
    if masks.dtype in (torch.bool, torch.uint8):
        as_bytes = masks.contiguous().view(torch.uint8)
        out = _resize_nonzero_rows(as_bytes, (height, width))
        return out.view(torch.bool) if masks.dtype == torch.bool else out
    rows = nearest_indices(masks.shape[1], height, masks.device)
    cols = nearest_indices(masks.shape[2], width, masks.device)
    return masks.index_select(1, rows).index_select(2, cols)


def _resize_nonzero_rows(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-exact resize of ``(T, H, W)`` uint8 masks to ``(T, *size)``, resampling only the frames that hold a
    nonzero pixel (the others are zeros either way)."""
    nonzero = masks.flatten(1).any(1)
    if bool(nonzero.all()):
        return F.interpolate(masks[:, None], size=size, mode="nearest-exact")[:, 0]
    out = masks.new_zeros((masks.shape[0], *size))
    rows = nonzero.nonzero()[:, 0]
    if len(rows):
        out[rows] = F.interpolate(masks[rows][:, None], size=size, mode="nearest-exact")[:, 0]
    return out
