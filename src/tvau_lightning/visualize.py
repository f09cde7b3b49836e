"""Heatmap visualisation in plain torch: colormap, overlay, boxes, mask contours, frame tiles, the frame-score
strip and text labels (PIL's bitmap font).

Used by ``tvau analyze`` (overlay videos), TensorBoard logging during training and the notebooks. All
functions take and return uint8 RGB frames ``(..., H, W, 3)`` so their outputs can be written as video or
PNG directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

RED = (255, 40, 40)
GREEN = (40, 220, 40)
YELLOW = (255, 220, 0)


def colorize_heatmap(heatmap: torch.Tensor) -> torch.Tensor:
    """Map values in [0, 1] ``(..., H, W)`` to a blue→cyan→yellow→red ("jet") colormap ``(..., H, W, 3)`` uint8."""
    x = heatmap.float().clamp(0.0, 1.0).unsqueeze(-1)
    centres = torch.tensor([0.75, 0.5, 0.25], device=x.device)  # r, g, b peaks
    # 1.5 - |4x - 4c|, clamped to [0, 1], × 255: in place on one (..., 3) buffer (overlays colour whole videos)
    rgb = (4.0 * x - 4.0 * centres).abs_().neg_().add_(1.5).clamp_(0.0, 1.0)
    return rgb.mul_(255.0).round_().to(torch.uint8)


def overlay_heatmap(frames: torch.Tensor, heatmap: torch.Tensor, *, alpha: float = 0.45,
                    min_value: float = 0.0) -> torch.Tensor:
    """Blend a heatmap ``(..., H, W)`` over frames ``(..., H, W, 3)`` uint8.

    Cells below ``min_value`` are left untouched (e.g. 0.5 shows only cells judged abnormal); the blend is
    proportional to ``alpha``.
    """
    if frames.shape[:-1] != heatmap.shape:
        heatmap = resize_maps(heatmap, tuple(frames.shape[-3:-1]))
    colour = colorize_heatmap(heatmap).float()
    weight = (heatmap >= min_value).unsqueeze(-1).float().mul_(alpha)
    # frames · (1 − weight) + colour · weight, in place (the same operations, so the same bytes)
    out = frames.float().mul_(1.0 - weight).add_(colour.mul_(weight))
    return out.round_().clamp_(0, 255).to(torch.uint8)


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
    for box in boxes:
        _paint_box(out, box, color, thickness)
    return out


def _paint_box(out: torch.Tensor, box: Sequence[float], color: tuple[int, int, int], thickness: int) -> None:
    """Paint one box's outline on ``out (H, W, 3)`` in place (:func:`draw_boxes`' drawing)."""
    h, w = out.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in list(box)[:4])
    x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
    y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
    if x2 < x1 or y2 < y1:
        return
    c = torch.tensor(color, dtype=torch.uint8, device=out.device)
    t = max(1, thickness)
    out[y1:min(y1 + t, y2 + 1), x1:x2 + 1] = c
    out[max(y2 - t + 1, y1):y2 + 1, x1:x2 + 1] = c
    out[y1:y2 + 1, x1:min(x1 + t, x2 + 1)] = c
    out[y1:y2 + 1, max(x2 - t + 1, x1):x2 + 1] = c


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


# ---- colours per track, text, the frame-score strip, video-friendly sizes ------------------------------

#: distinct box colours, one per region track (cycled)
TRACK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 220, 0), (0, 230, 255), (255, 80, 200), (120, 255, 80), (255, 150, 40), (170, 120, 255),
    (255, 255, 255), (40, 160, 255),
)
STRIP_BACKGROUND = (24, 24, 28)
STRIP_NORMAL = (70, 170, 255)
STRIP_ABNORMAL = (255, 70, 50)
STRIP_LABEL = (255, 0, 160)


def track_color(track_id: int) -> tuple[int, int, int]:
    """The box colour of region track ``track_id`` (``-1`` = not on a track → yellow)."""
    return YELLOW if track_id < 0 else TRACK_COLORS[track_id % len(TRACK_COLORS)]


def draw_text(image: torch.Tensor, text: str, xy: tuple[int, int], color: tuple[int, int, int] = (255, 255, 255),
              background: tuple[int, int, int] | None = None) -> torch.Tensor:
    """Write ``text`` with PIL's built-in bitmap font at ``xy = (x, y)`` (top-left) on ``(H, W, 3)`` uint8,
    over a filled ``background`` box when given (readable over any content)."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(image.cpu().numpy())
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if background is not None:
        x1, y1, x2, y2 = draw.textbbox(xy, text, font=font)
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), fill=background)
    draw.text(xy, text, fill=color, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).to(image.device)


def _column_frames(num_frames: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``width`` columns the half-open frame range ``[start, end)`` it shows (never empty)."""
    x = torch.arange(width + 1, dtype=torch.float64)
    edges = (x * num_frames / width).floor().long()
    start = edges[:-1].clamp(max=num_frames - 1)
    end = torch.maximum(edges[1:], start + 1)
    return start, end


def score_strip(scores: torch.Tensor | Sequence[float], width: int, height: int, *,
                labels: torch.Tensor | Sequence[int] | None = None, threshold: float = 0.5) -> torch.Tensor:
    """A frame-score timeline ``(height, width, 3)`` uint8 (the bottom band of ``tvau analyze``'s overlay).

    Column ``x`` shows frames ``floor(x·N/width) … floor((x+1)·N/width) − 1`` (their maximum score; one frame
    spans several columns when ``N < width``) as a bar from the bottom, red above ``threshold`` and blue below;
    a dotted grey line marks the threshold, and when ``labels (N,)`` are given a magenta band along the top
    marks the ground-truth abnormal frames.
    """
    s = torch.as_tensor(scores, dtype=torch.float32).reshape(-1).clamp(0.0, 1.0)
    n = s.numel()
    if n == 0 or width < 1 or height < 4:
        raise ValueError(f"score_strip needs at least one score and a width >= 1, height >= 4 (got {n}, {width}x{height})")
    strip = torch.tensor(STRIP_BACKGROUND, dtype=torch.uint8).expand(height, width, 3).clone()
    start, end = _column_frames(n, width)
    # the maximum over each column's frames, gathered over a window padded to the widest column
    span = int((end - start).max())
    offsets = (start[:, None] + torch.arange(span)[None, :]).clamp(max=n - 1)
    inside = offsets < end[:, None]
    column = torch.where(inside, s[offsets], torch.zeros(())).amax(dim=1)
    band = 3 if labels is not None else 0
    plot_h = height - band - 1
    bar = (column * plot_h).round().long()  # pixels of bar per column
    rows = torch.arange(height)[:, None]
    filled = rows >= (height - bar)[None, :]
    colour = torch.where((column > threshold)[:, None], torch.tensor(STRIP_ABNORMAL), torch.tensor(STRIP_NORMAL))
    strip[filled] = colour.to(torch.uint8)[None, :, :].expand(height, width, 3)[filled]
    line_row = height - 1 - int(round(threshold * plot_h))
    dots = torch.arange(width) % 4 < 2
    strip[line_row, dots] = torch.tensor((150, 150, 150), dtype=torch.uint8)
    if labels is not None:
        lab = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if lab.numel() != n:
            raise ValueError(f"labels must have one entry per score ({n}), got {lab.numel()}")
        marked = torch.where(inside, lab[offsets] > 0, torch.zeros((), dtype=torch.bool)).any(dim=1)
        strip[:band, marked] = torch.tensor(STRIP_LABEL, dtype=torch.uint8)
    return strip


def strip_cursor(strip: torch.Tensor, frame: int, num_frames: int, text: str | None = None) -> torch.Tensor:
    """A copy of a :func:`score_strip` with a white cursor on ``frame`` (and ``text`` at its top-left)."""
    out = strip.clone()
    height, width = out.shape[:2]
    start, end = _column_frames(num_frames, width)
    cols = torch.nonzero((start <= frame) & (frame < end)).flatten()
    if cols.numel():
        out[:, int(cols[0]):int(cols[-1]) + 1] = torch.tensor((255, 255, 255), dtype=torch.uint8)
    if text and height >= 12:
        out = draw_text(out, text, (3, 1), background=STRIP_BACKGROUND)
    return out


def even_size(frames: torch.Tensor) -> torch.Tensor:
    """Pad ``(..., H, W, 3)`` uint8 frames with one black row/column where ``H``/``W`` is odd (H.264 in
    yuv420p needs even sides)."""
    pad_h, pad_w = frames.shape[-3] % 2, frames.shape[-2] % 2
    if not (pad_h or pad_w):
        return frames
    return F.pad(frames, (0, 0, 0, pad_w, 0, pad_h))


def decorate_frame(frame: torch.Tensor, boxes: Sequence[Sequence[float]], *, track_ids: Sequence[int] | None = None,
                   strip: torch.Tensor | None = None, thickness: int = 2) -> torch.Tensor:
    """Region boxes (coloured by track id) on ``frame (H, W, 3)`` uint8 and an optional strip ``(h, W, 3)``
    stacked below; sides padded to even. Returns ``(H + h (+1), W (+1), 3)`` uint8."""
    out = frame.clone() if len(boxes) else frame  # one copy for all the boxes, each painted in place
    ids = list(track_ids) if track_ids is not None else [-1] * len(boxes)
    for box, tid in zip(boxes, ids):
        _paint_box(out, box, track_color(int(tid)), thickness)
    if strip is not None:
        if strip.shape[1] != out.shape[1]:
            raise ValueError(f"strip width {strip.shape[1]} differs from the frame width {out.shape[1]}")
        out = torch.cat([out, strip.to(out.device)], dim=0)
    return even_size(out)


def analysis_frame(frame: torch.Tensor, heatmap: torch.Tensor, boxes: Sequence[Sequence[float]], *,
                   track_ids: Sequence[int] | None = None, strip: torch.Tensor | None = None,
                   alpha: float = 0.45, min_value: float = 0.0, thickness: int = 2) -> torch.Tensor:
    """One frame of an analysis overlay: the heatmap ``(H, W)`` blended on ``frame (H, W, 3)`` uint8, then
    :func:`decorate_frame` (boxes coloured by track, the strip below, even sides)."""
    blended = overlay_heatmap(frame, heatmap, alpha=alpha, min_value=min_value)
    return decorate_frame(blended, boxes, track_ids=track_ids, strip=strip, thickness=thickness)

