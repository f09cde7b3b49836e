"""Frame-level average precision — XD-Violence's coarse-grained metric.

AP is the step-wise area under the precision–recall curve, ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct
score thresholds taken from high to low (tied scores form one threshold) — exactly scikit-learn's
``average_precision_score``, which VadCLIP's evaluation calls. XD-Violence's own code (``XDVioDet/test.py``)
reports ``auc(recall, precision)`` instead — the trapezoidal area of the same curve, a slightly different
number; ``interpolation="trapezoid"`` gives it. Sources: ``docs/datasets_weak.md``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tvau_lightning.metrics.arrays import ArrayLike, to_numpy

APInterpolation = Literal["step", "trapezoid"]


def precision_recall_points(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest score first: two ``(n_thresholds,)`` arrays."""
    s = to_numpy(scores, np.float64).reshape(-1)
    y = to_numpy(labels).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order].astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return tp / (tp + fp), tp / max(float(y.sum()), 1.0)


def frame_average_precision(
    scores: ArrayLike, labels: ArrayLike, interpolation: APInterpolation = "step"
) -> float:
    """Average precision of frame scores against 0/1 frame labels (all videos' frames concatenated).

    Args:
        scores: ``(N,)`` (any shape, flattened) frame anomaly scores.
        labels: same size, 1 = abnormal frame.
        interpolation: ``step`` (default; equals ``sklearn.metrics.average_precision_score``) or ``trapezoid``
            (``sklearn.metrics.auc(recall, precision)`` as XD-Violence's original evaluation computes it).
    Raises:
        ValueError: mismatched sizes, labels other than 0/1, non-finite scores, or no abnormal frame (AP
            undefined).
    """
    s = to_numpy(scores, np.float64).reshape(-1)
    y = to_numpy(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"frame AP: {s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("frame AP: scores contain NaN or infinite values")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError(f"frame AP: labels must be 0/1, found {np.unique(y[~np.isin(y, (0, 1))])[:5].tolist()}")
    if not y.astype(bool).any():
        raise ValueError(f"frame AP is undefined: none of the {y.size} frames is abnormal; evaluate on a split "
                         "with abnormal frames")
    precision, recall = precision_recall_points(s, y)
    if interpolation == "step":
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    if interpolation == "trapezoid":
        # sklearn's precision_recall_curve starts the curve at (recall 0, precision 1)
        return float(np.trapezoid(np.r_[1.0, precision], np.r_[0.0, recall]))
    raise ValueError(f"unknown interpolation {interpolation!r}; use 'step' or 'trapezoid'")
