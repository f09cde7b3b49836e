"""The frame-level ROC curve (the RBDR/TBDR-vs-FPR curves come from
:func:`tvau_lightning.metrics.functional.region_track_sweep`).

Written here rather than taken from torchmetrics' ``binary_roc``: that one applies a sigmoid to scores outside
[0, 1], which merges distinct large scores (the AHD's unsaturated logit-gap scores) into equal thresholds, so
its curve would not match the AUC the metrics report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvau_lightning.metrics.arrays import ArrayLike, to_numpy


@dataclass
class ROCCurve:
    """A ROC curve with one point per distinct score, descending.

    Attributes:
        fpr: ``(P,)`` false-positive rate, from 0 to 1.
        tpr: ``(P,)`` true-positive rate, from 0 to 1.
        thresholds: ``(P,)`` score of each point (frames scored ≥ it are called abnormal); ``+inf`` first.
        auc: trapezoidal area under ``tpr(fpr)`` — equal to the Mann–Whitney AUC with ties counted one half.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> ROCCurve:
    """ROC of frame ``scores (N,)`` against 0/1 ``labels (N,)`` (both classes must occur).

    Equal scores form one point (the segment between points is the tie's diagonal), so the trapezoidal area
    equals :func:`tvau_lightning.metrics.functional.micro_auroc` on the same frames.
    """
    s = to_numpy(scores, np.float64).reshape(-1)
    y = to_numpy(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"ROC curve: {s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("ROC curve: scores contain NaN or infinite values")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC curve is undefined: all {y.size} frames have label {int(n_pos > 0)}")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.append(s[1:] != s[:-1], True)  # the last frame of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    fpr = np.concatenate([[0.0], fp / n_neg])
    tpr = np.concatenate([[0.0], tp / n_pos])
    thresholds = np.concatenate([[np.inf], s[last]])
    auc = float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())
    return ROCCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=auc)
