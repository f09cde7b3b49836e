"""The one mapping between the heatmap grid and video frames/pixels (SPEC §3, paper §3.2.1).

A vision tower turns a clip of ``T`` frames of ``H×W`` pixels into a grid of ``T' × H' × W'`` cells. In time,
one grid step covers ``temporal_factor`` consecutive frames (2 for Qwen2.5-VL, which merges frame pairs; 1
for per-frame towers); a clip whose length is not a multiple of it is padded by repeating its last frame, as
the backbones' video processors do. In space, a cell covers an ``H/H' × W/W'`` block of the (resized) frame,
and heatmaps go back to pixels by bilinear interpolation.

Every place that crosses this boundary — training targets (masks → grid), evaluation and ``tvau analyze``
(grid → frames → pixels), prediction writers (grid per frame), clip padding — calls these functions, so
the convention lives here only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_last(x: torch.Tensor, length: int, *, dim: int = 0) -> torch.Tensor:
    """Pad dim ``dim`` of ``x`` to ``length`` by repeating its last entry (unchanged when already that long)."""
    pad = length - x.shape[dim]
    if pad < 0:
        raise ValueError(f"cannot pad {x.shape[dim]} entries down to {length}")
    if pad == 0:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    return torch.cat([x, last.expand(*x.shape[:dim], pad, *x.shape[dim + 1:])], dim=dim)


def pad_to_multiple(x: torch.Tensor, factor: int, *, dim: int = 1) -> torch.Tensor:
    """Pad dim ``dim`` to a multiple of ``factor`` by repeating the last step (as the video processor does)."""
    t = x.shape[dim]
    return pad_last(x, t + (-t) % factor, dim=dim)


def num_grid_steps(num_frames: int, temporal_factor: int) -> int:
    """Grid steps ``T'`` of a clip of ``num_frames`` frames (the last step may hold padding)."""
    return -(-num_frames // temporal_factor)


def step_frames(step: int, temporal_factor: int, num_frames: int | None = None) -> range:
    """The frame indices (within the clip) that grid step ``step`` covers, cut at ``num_frames`` when given."""
    start = step * temporal_factor
    stop = start + temporal_factor if num_frames is None else min(start + temporal_factor, num_frames)
    return range(start, stop)


def steps_to_frames(grid: torch.Tensor, *, temporal_factor: int, num_frames: int, dim: int = 1) -> torch.Tensor:
    """Per-step values → per-frame values: each grid step repeated for its ``temporal_factor`` frames, trimmed
    to ``num_frames`` (e.g. ``(B, T', H', W')`` → ``(B, T, H', W')``)."""
    out = grid.repeat_interleave(temporal_factor, dim=dim)
    if out.shape[dim] < num_frames:
        raise ValueError(f"{grid.shape[dim]} grid steps × {temporal_factor} cover fewer than {num_frames} frames")
    return out.narrow(dim, 0, num_frames)


def upsample_spatial(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grid maps ``(..., H', W')`` → pixel maps ``(..., H, W)`` (bilinear, ``align_corners=False``), float32."""
    lead = grid.shape[:-2]
    flat = grid.reshape(-1, 1, *grid.shape[-2:]).float()
    up = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return up.reshape(*lead, *size)


def upsample_to_frames(
    grid: torch.Tensor, *, num_frames: int, frame_size: tuple[int, int], temporal_factor: int
) -> torch.Tensor:
    """Grid maps ``(B, T', H', W')`` → frame maps ``(B, T, H, W)`` float32: bilinear in space, each grid step
    repeated for its ``temporal_factor`` frames, trimmed to ``num_frames`` (SPEC §3 evaluation)."""
    frames = steps_to_frames(grid, temporal_factor=temporal_factor, num_frames=num_frames)
    return upsample_spatial(frames, frame_size)


def upsample_heatmap(
    heatmap: torch.Tensor, *, num_frames: int, frame_size: tuple[int, int], temporal_factor: int
) -> torch.Tensor:
    """Grid heatmap ``(B, T', H', W')`` → frame heatmap ``(B, T, H, W)`` in [0, 1] (:func:`upsample_to_frames`)."""
    return upsample_to_frames(heatmap, num_frames=num_frames, frame_size=frame_size,
                              temporal_factor=temporal_factor).clamp_(0.0, 1.0)


def upsample_scores(
    scores: torch.Tensor, *, num_frames: int, frame_size: tuple[int, int], temporal_factor: int
) -> torch.Tensor:
    """Grid scores (the AHD's logit gap) ``(B, T', H', W')`` → frame scores maps ``(B, T, H, W)``, unbounded."""
    return upsample_to_frames(scores, num_frames=num_frames, frame_size=frame_size, temporal_factor=temporal_factor)


def downsample_masks(
    masks: torch.Tensor, grid: tuple[int, int, int], *, temporal_factor: int, mode: str = "area", area_threshold: float = 0.5
) -> torch.Tensor:
    """GT pixel masks ``(B, T, H, W)`` → grid targets ``(B, T', H', W')`` (float 0/1).

    Temporal: max over each group of ``temporal_factor`` frames (the paper's pairwise merge). Spatial:
    ``area`` marks a cell abnormal when at least ``area_threshold`` of its pixels are; ``nearest`` samples
    the cell centre; ``max`` marks a cell touched by any abnormal pixel.
    """
    t_out, h_out, w_out = grid
    m = pad_to_multiple(masks.float(), temporal_factor)
    b, t = m.shape[:2]
    m = m.reshape(b, t // temporal_factor, temporal_factor, *m.shape[2:]).amax(dim=2)
    if m.shape[1] != t_out:
        raise ValueError(f"{masks.shape[1]} frames give {m.shape[1]} grid steps, expected {t_out}")
    flat = m.reshape(b * t_out, 1, *m.shape[2:])
    if mode == "area":
        out = (F.adaptive_avg_pool2d(flat, (h_out, w_out)) >= area_threshold).float()
    elif mode == "nearest":
        out = F.interpolate(flat, size=(h_out, w_out), mode="nearest")
    elif mode == "max":
        out = F.adaptive_max_pool2d(flat, (h_out, w_out))
    else:
        raise ValueError(f"mask downsampling mode must be area, nearest or max, got {mode!r}")
    return out.reshape(b, t_out, h_out, w_out)


def downsample_valid(valid: torch.Tensor, *, temporal_factor: int) -> torch.Tensor:
    """Frame validity ``(B, T)`` → grid-step validity ``(B, T')``: a step counts if any of its frames is real."""
    v = pad_to_multiple(valid.float(), temporal_factor)
    return v.reshape(v.shape[0], -1, temporal_factor).amax(dim=2) > 0
