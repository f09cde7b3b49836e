"""Anomaly-focused frames (paper §3.3 step 2): keep the GT anomaly mask sharp, Gaussian-blur the rest."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def blur_outside_mask(frame: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur every pixel outside ``mask`` with a Gaussian of ``sigma`` pixels; pixels inside are kept exactly.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` bool, True on the anomaly.
        sigma: blur strength in pixels (0 leaves the frame unchanged).

    Returns:
        ``(H, W, 3)`` uint8, a new array.
    """
    frame = np.asarray(frame)
    mask = np.asarray(mask, dtype=bool)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the frame {frame.shape[:2]}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return frame.copy()
    blurred = ndimage.gaussian_filter(frame.astype(np.float32), sigma=(sigma, sigma, 0), mode="nearest")
    blurred = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], frame, blurred)


def blur_sigma(frame_size: tuple[int, int], fraction: float) -> float:
    """A blur strength proportional to the frame: ``fraction`` of its longer side, at least 1 px."""
    return max(1.0, fraction * max(frame_size))


def crop_box(frame: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.25,
             min_side: int = 16) -> np.ndarray:
    """The region of ``box`` (continuous pixels) grown by ``margin`` of its size on each side and to at least
    ``min_side`` pixels, clipped to the frame: ``(h, w, 3)``."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    grow_x = max(margin * bw, (min_side - bw) / 2, 0.0)
    grow_y = max(margin * bh, (min_side - bh) / 2, 0.0)
    xa, xb = int(max(0, np.floor(x1 - grow_x))), int(min(width, np.ceil(x2 + grow_x)))
    ya, yb = int(max(0, np.floor(y1 - grow_y))), int(min(height, np.ceil(y2 + grow_y)))
    if xb <= xa or yb <= ya:
        raise ValueError(f"box {box} lies outside the {width}x{height} frame")
    return np.ascontiguousarray(frame[ya:yb, xa:xb])
