"""95 % confidence intervals of the stage-1 metrics by a percentile bootstrap over videos.

Method: frames of one video are strongly correlated, so the resampling unit is the **video** (a cluster
bootstrap). Each resample draws ``V`` videos with replacement from the ``V`` evaluated videos
(``numpy.random.default_rng(seed).integers(0, V, (num_resamples, V))``, one matrix shared by every metric so the
intervals are paired), treats a video drawn twice as two distinct videos, and recomputes every metric with the
same functions as the point estimate (:mod:`tvau_lightning.metrics.functional`):

* micro AUC — the frames of the drawn videos concatenated;
* macro AUC — the mean of the drawn videos' per-video AUCs (padded the UBnormal way, or the two-class videos
  only without padding);
* RBDC/TBDC — one sweep over the drawn videos' detections and GT tracks, with ``N`` = their frame count.

A resample on which a metric is undefined (all drawn frames of one class, no GT region drawn) is left out of
that metric's interval; ``valid_resamples`` says how many remained. The interval is the
``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles (numpy's linear interpolation) of the valid
resampled values (Efron & Tibshirani 1993, ch. 13). The point estimate is the metric on all videos once —
exactly the value the task logs — not the bootstrap mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvau_lightning.evaluation.records import EvaluationRecords
from tvau_lightning.metrics.functional import RegionTrackCurves, macro_auroc, micro_auroc, region_track_sweep

#: the metrics of a stage-1 evaluation, in the order they are reported
METRIC_NAMES = ("micro_auc", "macro_auc", "rbdc", "tbdc")


@dataclass
class Estimate:
    """A point estimate and its bootstrap interval (``None`` where undefined)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    valid_resamples: int

    def to_json(self) -> dict[str, float | int | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "valid_resamples": self.valid_resamples}


def _groups(video: np.ndarray, num_videos: int) -> list[np.ndarray]:
    """Row indices of each video code ``0 … num_videos-1``."""
    order = np.argsort(video, kind="stable")
    bounds = np.searchsorted(video[order], np.arange(num_videos + 1))
    return [order[bounds[v]:bounds[v + 1]] for v in range(num_videos)]


class VideoResampler:
    """Every stage-1 metric of any multiset of videos (``sample``: ``(S,)`` video codes, repeats allowed)."""

    def __init__(self, records: EvaluationRecords) -> None:
        self.records = r = records
        v = r.num_videos
        self._frames = _groups(r.frame_video, v)
        self._dets = _groups(r.det_video, v)
        self._gts = _groups(r.gt_video, v)
        self.video_auc = np.full(v, np.nan)  # unpadded per-video AUC (NaN for a single-class video)
        self.video_auc_padded = np.full(v, np.nan)
        for code, rows in enumerate(self._frames):
            if len(rows) == 0:
                continue
            scores, labels = r.frame_score[rows], r.frame_label[rows]
            self.video_auc_padded[code] = macro_auroc({0: scores}, {0: labels}, pad=True)
            if labels.any() and not labels.all():
                self.video_auc[code] = micro_auroc(scores, labels)

    @property
    def macro_terms(self) -> np.ndarray:
        """``(V,)`` each video's term of the macro AUC (NaN: not counted)."""
        return self.video_auc_padded if self.records.macro_pad else self.video_auc

    def micro_auc(self, sample: np.ndarray) -> float:
        rows = np.concatenate([self._frames[v] for v in sample])
        labels = self.records.frame_label[rows]
        if labels.all() or not labels.any():
            return float("nan")
        return micro_auroc(self.records.frame_score[rows], labels)

    def macro_auc(self, sample: np.ndarray) -> float:
        terms = self.macro_terms[sample]
        terms = terms[np.isfinite(terms)]
        return float(terms.mean()) if len(terms) else float("nan")

    def sweep(self, sample: np.ndarray) -> RegionTrackCurves | None:
        """The RBDC/TBDC sweep over the drawn videos (position ``p`` in ``sample`` is video ``p``); None
        without GT regions or frames."""
        r = self.records
        num_frames = int(r.frames_seen[sample].sum())
        gt_counts = np.array([len(self._gts[v]) for v in sample])
        if num_frames == 0 or gt_counts.sum() == 0:
            return None
        det_counts = np.array([len(self._dets[v]) for v in sample])
        positions = np.arange(len(sample))
        gt = np.concatenate([self._gts[v] for v in sample])
        det = np.concatenate([self._dets[v] for v in sample]) if det_counts.sum() else np.zeros(0, dtype=np.int64)
        gt_position = np.repeat(positions, gt_counts)
        # a track drawn twice is two tracks: (track, position) → a fresh id
        gt_track = r.gt_track[gt] * len(sample) + gt_position
        return region_track_sweep(
            gt_position, r.gt_frame[gt], r.gt_box[gt], gt_track,
            np.repeat(positions, det_counts), r.det_frame[det], r.det_box[det].reshape(-1, 4), r.det_score[det],
            num_frames, alpha=r.alpha, beta=r.beta,
        )

    def metrics(self, sample: np.ndarray) -> dict[str, float]:
        """``{micro_auc, macro_auc, rbdc, tbdc}`` of ``sample`` (NaN where undefined)."""
        curves = self.sweep(sample)
        return {
            "micro_auc": self.micro_auc(sample),
            "macro_auc": self.macro_auc(sample),
            "rbdc": float("nan") if curves is None else curves.rbdc,
            "tbdc": float("nan") if curves is None else curves.tbdc,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def bootstrap_metrics(
    records: EvaluationRecords,
    num_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    resampler: VideoResampler | None = None,
) -> dict[str, Estimate]:
    """Point estimates and percentile-bootstrap intervals over videos (see the module docstring).

    ``num_resamples = 0`` gives the point estimates with ``None`` intervals.
    """
    if num_resamples < 0:
        raise ValueError(f"num_resamples must be >= 0, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    resampler = resampler or VideoResampler(records)
    v = records.num_videos
    point = resampler.metrics(np.arange(v))
    draws = np.random.default_rng(seed).integers(0, v, size=(num_resamples, v)) if v else np.zeros((0, 0), int)
    values = np.array([list(resampler.metrics(sample).values()) for sample in draws]).reshape(-1, len(METRIC_NAMES))
    quantiles = [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0]
    out: dict[str, Estimate] = {}
    for k, name in enumerate(METRIC_NAMES):
        valid = values[:, k][np.isfinite(values[:, k])]
        low, high = np.quantile(valid, quantiles) if len(valid) else (np.nan, np.nan)
        out[name] = Estimate(_finite_or_none(point[name]), _finite_or_none(low), _finite_or_none(high), len(valid))
    return out
