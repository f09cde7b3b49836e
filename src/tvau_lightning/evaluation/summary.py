"""One evaluation summarised: metrics with intervals, the curves, and a row per video.

Per-video detection counts are taken at the sweep's **operating point**: the lowest region-score threshold
the RBDC/TBDC sweep of the whole split reaches (the last point with at most one false positive per frame
on average, i.e. FPR ≤ 1). A GT region is *detected* when a detection of its frame scored at least that
threshold has IoU ≥ β with it; a track when at least α of its regions are. Summed over videos they give the
curve's last RBDR/TBDR exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvau_lightning.evaluation.bootstrap import Estimate, VideoResampler, bootstrap_metrics
from tvau_lightning.evaluation.curves import ROCCurve, roc_curve
from tvau_lightning.evaluation.records import EvaluationRecords
from tvau_lightning.metrics.functional import RegionTrackCurves, region_track_sweep

#: the columns of ``per_video.csv``, in order
PER_VIDEO_COLUMNS = ("video", "frames", "abnormal_frames", "auc", "auc_padded", "detections",
                     "detected_regions", "gt_regions", "detected_tracks", "gt_tracks")


@dataclass
class EvaluationSummary:
    """Everything the artifacts are written from.

    Attributes:
        records: the evaluation's frames, detections and GT regions.
        metrics: ``micro_auc``, ``macro_auc``, ``rbdc``, ``tbdc`` → :class:`Estimate`.
        roc: the micro frame ROC curve (None when the frames are of a single class).
        regions: the RBDR/TBDR-vs-FPR curves (None without GT regions).
        operating_threshold: region-score threshold of the per-video detection counts (``inf``: none counted).
        per_video: one dict per video, keys :data:`PER_VIDEO_COLUMNS` (``auc`` None for a single-class video).
        num_resamples, seed, confidence: the bootstrap settings.
    """

    records: EvaluationRecords
    metrics: dict[str, Estimate]
    roc: ROCCurve | None
    regions: RegionTrackCurves | None
    operating_threshold: float
    per_video: list[dict[str, object]] = field(default_factory=list)
    num_resamples: int = 0
    seed: int = 0
    confidence: float = 0.95


def operating_threshold(curves: RegionTrackCurves | None) -> float:
    """The lowest threshold the sweep reached (its thresholds are ``+inf`` first, NaN for the flat extension)."""
    if curves is None:
        return float("inf")
    finite = curves.thresholds[np.isfinite(curves.thresholds)]
    return float(finite.min()) if len(finite) else float("inf")


def _video_detection_counts(records: EvaluationRecords, code: int, threshold: float) -> tuple[int, int, int, int]:
    """``(detected regions, GT regions, detected tracks, GT tracks)`` of one video at ``threshold``."""
    r = records
    gt = np.nonzero(r.gt_video == code)[0]
    if len(gt) == 0:
        return 0, 0, 0, 0
    det = np.nonzero((r.det_video == code) & (r.det_score >= threshold))[0]
    # a sweep whose N admits every detection: its last point counts what all of them detect
    curves = region_track_sweep(
        r.gt_video[gt], r.gt_frame[gt], r.gt_box[gt], r.gt_track[gt],
        r.det_video[det], r.det_frame[det], r.det_box[det].reshape(-1, 4), r.det_score[det],
        max(1, len(det)), alpha=r.alpha, beta=r.beta,
    )
    return (int(round(curves.rbdr[-1] * curves.num_regions)), curves.num_regions,
            int(round(curves.tbdr[-1] * curves.num_tracks)), curves.num_tracks)


def summarize(
    records: EvaluationRecords, num_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> EvaluationSummary:
    """Metrics with bootstrap intervals (:func:`~tvau_lightning.evaluation.bootstrap.bootstrap_metrics`), the
    ROC and RBDR/TBDR curves of all videos, and the per-video table."""
    resampler = VideoResampler(records)
    metrics = bootstrap_metrics(records, num_resamples, seed, confidence, resampler=resampler)
    labels = records.frame_label
    roc = roc_curve(records.frame_score, labels) if labels.any() and not labels.all() else None
    regions = resampler.sweep(np.arange(records.num_videos))
    threshold = operating_threshold(regions)
    rows: list[dict[str, object]] = []
    for code, name in enumerate(records.videos):
        mine = records.frame_video == code
        auc = resampler.video_auc[code]
        padded = resampler.video_auc_padded[code]
        counts = _video_detection_counts(records, code, threshold)
        rows.append(dict(zip(PER_VIDEO_COLUMNS, (
            name, int(mine.sum()), int(labels[mine].sum()), float(auc) if np.isfinite(auc) else None,
            float(padded) if np.isfinite(padded) else None, int((records.det_video == code).sum()), *counts,
        ))))
    return EvaluationSummary(records=records, metrics=metrics, roc=roc, regions=regions, operating_threshold=threshold,
                             per_video=rows, num_resamples=num_resamples, seed=seed, confidence=confidence)
