"""Box IoU under the two box conventions of the project, each defined once and named by its convention.

Boxes are ``(x1, y1, x2, y2)`` rows in pixels, ``x`` to the right and ``y`` down. What the max corner means
differs, and with it the area:

* **inclusive pixel boxes** — ``x2``/``y2`` are the last pixel column/row *inside* the box, so a box covers
  ``(x2 − x1 + 1) × (y2 − y1 + 1)`` pixels and a one-pixel box ``[3, 3, 3, 3]`` has area 1. Ground-truth
  regions and detections of RBDC/TBDC (:mod:`.regions`, :mod:`.functional.rbdc_tbdc`) use it, as does the
  RBDC/TBDC reference evaluation (``bb_intersection_over_union`` in ``evaluation/compute_tbdc_rbdc.py`` of
  github.com/lilygeorgescu/AED), whose IoU adds the same ``+1``.
* **continuous boxes** — ``[x1, x2) × [y1, y2)`` in real-valued coordinates, area ``(x2 − x1) · (y2 − y1)``;
  an inclusive box ``(x1, y1, x2, y2)`` is the continuous box ``(x1, y1, x2 + 1, y2 + 1)``
  (:func:`inclusive_to_continuous`). The dataset builder's geometry (:mod:`tvau_lightning.builder.geometry`)
  works in it, since smoothed and interpolated boxes are not whole pixels.

The same two boxes differ under the two conventions: ``[0, 0, 9, 9]`` and ``[5, 5, 14, 14]`` share 5 × 5
pixels of 100 each (inclusive IoU 25 / 175), but as continuous boxes a 4 × 4 square of two 9 × 9 squares
(16 / 146).
"""

from __future__ import annotations

import numpy as np

from tvau_lightning.metrics.arrays import ArrayLike


def _inclusive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcastable ``(..., 4)`` inclusive boxes; areas are at least 1, so the union never is 0."""
    iw = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def box_iou_inclusive(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``(n, m)`` pairwise IoU of inclusive pixel boxes ``a (n, 4)`` and ``b (m, 4)`` (``+1`` widths)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    return _inclusive_iou(a, b)


def paired_box_iou_inclusive(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``(n,)`` IoU of row ``i`` of ``a (n, 4)`` with row ``i`` of ``b (n, 4)``, inclusive pixel boxes.

    The diagonal of :func:`box_iou_inclusive` without the ``(n, n)`` matrix (for long lists of candidate pairs).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if a.shape != b.shape:
        raise ValueError(f"paired box IoU needs as many boxes on both sides, got {len(a)} and {len(b)}")
    return _inclusive_iou(a, b)


def box_iou_continuous(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """``(n, m)`` pairwise IoU of continuous boxes ``a (n, 4)`` and ``b (m, 4)``; 0 where both are empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def inclusive_to_continuous(boxes: ArrayLike) -> np.ndarray:
    """``(n, 4)`` inclusive pixel boxes → continuous ``[x1, x2 + 1) × [y1, y2 + 1)`` boxes, float64."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, 2:] += 1.0
    return out
