"""Heatmap visualisation in plain torch: colormap, overlay, boxes, mask contours, frame tiles.

Used by ``tvau analyze`` (overlay videos), TensorBoard logging during training and the notebooks. All
functions take and return uint8 RGB frames ``(..., H, W, 3)`` so their outputs can be written as video or
PNG directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

RED = (255, 40, 40)
GREEN = (40, 220, 40)
YELLOW = (255, 220, 0)


def colorize_heatmap(heatmap: torch.Tensor) -> torch.Tensor:
    """Map values in [0, 1] ``(..., H, W)`` to a blue→cyan→yellow→red ("jet") colormap ``(..., H, W, 3)`` uint8."""
    x = heatmap.float().clamp(0.0, 1.0).unsqueeze(-1)
    centres = torch.tensor([0.75, 0.5, 0.25], device=x.device)  # r, g, b peaks
    rgb = (1.5 - (4.0 * x - 4.0 * centres).abs()).clamp(0.0, 1.0)
    return (rgb * 255.0).round().to(torch.uint8)


def overlay_heatmap(frames: torch.Tensor, heatmap: torch.Tensor, *, alpha: float = 0.45,
                    min_value: float = 0.0) -> torch.Tensor:
    """Blend a heatmap ``(..., H, W)`` over frames ``(..., H, W, 3)`` uint8.

    Cells below ``min_value`` are left untouched (e.g. 0.5 shows only cells judged abnormal); the blend is
    proportional to ``alpha``.
    """
    if frames.shape[:-1] != heatmap.shape:
        heatmap = resize_maps(heatmap, tuple(frames.shape[-3:-1]))
    colour = colorize_heatmap(heatmap).float()
    weight = alpha * (heatmap.float() >= min_value).float().unsqueeze(-1)
    out = frames.float() * (1.0 - weight) + colour * weight
    return out.round().clamp(0, 255).to(torch.uint8)


def resize_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize ``(..., h, w)`` float maps to ``(..., H, W)``."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flat, size=size, mode=mode, **kwargs)
    return out.reshape(*lead, *size)


def draw_boxes(frame: torch.Tensor, boxes: Sequence[Sequence[float]] | torch.Tensor,
               color: tuple[int, int, int] = YELLOW, thickness: int = 2) -> torch.Tensor:
    """Draw axis-aligned boxes ``(x1, y1, x2, y2)`` (inclusive pixels) on one frame ``(H, W, 3)`` uint8."""
    out = frame.clone()
    h, w = out.shape[:2]
    c = torch.tensor(color, dtype=torch.uint8, device=out.device)
    for box in boxes:
        x1, y1, x2, y2 = (int(round(float(v))) for v in list(box)[:4])
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        if x2 < x1 or y2 < y1:
            continue
        t = max(1, thickness)
        out[y1:min(y1 + t, y2 + 1), x1:x2 + 1] = c
        out[max(y2 - t + 1, y1):y2 + 1, x1:x2 + 1] = c
        out[y1:y2 + 1, x1:min(x1 + t, x2 + 1)] = c
        out[y1:y2 + 1, max(x2 - t + 1, x1):x2 + 1] = c
    return out


def mask_contour(mask: torch.Tensor, thickness: int = 1) -> torch.Tensor:
    """The inner boundary ``(..., H, W)`` bool of a binary mask (pixels of the mask next to its outside)."""
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    k = 2 * thickness + 1
    eroded = -F.max_pool2d(-m, kernel_size=k, stride=1, padding=thickness)
    return ((m > 0) & (eroded <= 0)).reshape(mask.shape)


def draw_mask_contour(frames: torch.Tensor, mask: torch.Tensor, color: tuple[int, int, int] = GREEN,
                      thickness: int = 1) -> torch.Tensor:
    """Paint the contour of ``mask (..., H, W)`` on ``frames (..., H, W, 3)`` uint8 (e.g. ground truth)."""
    edge = mask_contour(mask.bool(), thickness)
    out = frames.clone()
    out[edge] = torch.tensor(color, dtype=torch.uint8, device=frames.device)
    return out


def tile_frames(frames: torch.Tensor, ncols: int = 4, pad: int = 2) -> torch.Tensor:
    """Arrange ``(N, H, W, 3)`` uint8 frames in a grid image ``(H', W', 3)`` with ``pad`` black pixels between."""
    n, h, w, _ = frames.shape
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    canvas = torch.zeros(nrows * (h + pad) - pad, ncols * (w + pad) - pad, 3, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = frames[i].cpu()
    return canvas
