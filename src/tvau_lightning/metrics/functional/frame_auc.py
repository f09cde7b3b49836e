"""Frame-level micro and macro ROC-AUC (SPEC §6), the functional form of :mod:`tvau_lightning.metrics.frame_auc`.

Scores and labels in (numpy, torch or lists), Python floats out; ``docs/metrics.md`` summarises the conventions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata

from tvau_lightning.metrics.arrays import ArrayLike, to_numpy

__all__ = ["macro_auroc", "micro_auroc"]


def _binary_labels(labels: ArrayLike, what: str) -> np.ndarray:
    y = to_numpy(labels).reshape(-1)
    if y.dtype != bool:
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            raise ValueError(f"{what}: labels must be 0/1 (or bool), found {y[bad][:5].tolist()}")
        y = y.astype(bool)
    return y


def _scores(scores: ArrayLike, what: str) -> np.ndarray:
    s = to_numpy(scores, np.float64).reshape(-1)
    if not np.isfinite(s).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    return s


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC as the Mann–Whitney statistic (average ranks for ties) — equal to the trapezoidal ROC area."""
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def micro_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Frame ROC-AUC over all frames of all videos concatenated.

    Args:
        scores: ``(N,)`` (any shape, flattened) frame anomaly scores.
        labels: same size, 1 = abnormal frame.
    Raises:
        ValueError: when the frames are all of one class (AUC undefined).
    """
    s, y = _scores(scores, "micro AUROC"), _binary_labels(labels, "micro AUROC")
    if s.shape != y.shape:
        raise ValueError(f"micro AUROC: {s.size} scores but {y.size} labels")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(f"micro AUROC is undefined: all {y.size} frames have label {int(n_pos > 0)}; "
                         "evaluate on a split with both normal and abnormal frames")
    return _auroc(s, y)


def macro_auroc(
    scores_by_video: Mapping[str, ArrayLike], labels_by_video: Mapping[str, ArrayLike], *, pad: bool = True
) -> float:
    """Mean of per-video frame ROC-AUCs.

    ``pad=True`` is UBnormal's published protocol: every video gets one extra normal frame scored 0 and one
    abnormal frame scored 1 on the probability scale, so single-class videos count. Here the pads are scored
    −∞ and +∞ — below and above every real score — which gives the authors' value wherever no probability is
    exactly 0 or 1, and stays right for unbounded scores (the AHD's logit gap, :attr:`AHDOutput.scores`).
    ``pad=False`` skips single-class videos, with a warning saying how many.

    Raises:
        ValueError: mismatched video sets or lengths; ``pad=False`` with no two-class video left.
    """
    if set(scores_by_video) != set(labels_by_video):
        only_s = sorted(map(str, set(scores_by_video) - set(labels_by_video)))[:5]
        only_l = sorted(map(str, set(labels_by_video) - set(scores_by_video)))[:5]
        raise ValueError(f"macro AUROC: videos differ between scores and labels (only in scores: {only_s}, "
                         f"only in labels: {only_l})")
    if not scores_by_video:
        raise ValueError("macro AUROC needs at least one video")
    aucs: list[float] = []
    skipped = 0
    for video in scores_by_video:
        s = _scores(scores_by_video[video], f"macro AUROC, video {video!r}")
        y = _binary_labels(labels_by_video[video], f"macro AUROC, video {video!r}")
        if s.shape != y.shape:
            raise ValueError(f"macro AUROC, video {video!r}: {s.size} scores but {y.size} labels")
        if pad:
            s = np.concatenate([s, [-np.inf, np.inf]])
            y = np.concatenate([y, [False, True]])
        elif y.all() or not y.any():
            skipped += 1
            continue
        aucs.append(_auroc(s, y))
    if not aucs:
        raise ValueError(f"unpadded macro AUROC is undefined: all {skipped} videos have a single class; "
                         "use pad=True (UBnormal protocol) or include videos with both classes")
    if skipped:
        warnings.warn(f"unpadded macro AUROC skipped {skipped} of {skipped + len(aucs)} single-class videos",
                      RuntimeWarning, stacklevel=2)
    return float(np.mean(aucs))

