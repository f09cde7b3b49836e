"""What the stage-1 metrics saw, read back from their states as plain arrays keyed by video name.

The AHD task's torchmetrics (:class:`~tvau_lightning.metrics.MicroAUROC` and
:class:`~tvau_lightning.metrics.RegionTrackDetection`) keep one row per frame, detection and ground-truth region,
with videos as int64 hashes and an occurrence id per sample. :func:`records_from_metrics` applies the same
"first occurrence of each ``(video, frame)``" rule as their ``compute()`` (``DistributedSampler`` repeats clips),
links mask-derived regions into tracks the same way, and maps the hashes back to the video names the batches
carried — so every number derived from the records equals the metric's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tvau_lightning.metrics import MacroAUROC, MicroAUROC, RegionTrackDetection
from tvau_lightning.metrics.state import first_occurrence_mask


@dataclass
class EvaluationRecords:
    """Deduplicated frames, detections and GT regions of one evaluation, videos as codes ``0 … V-1``.

    Attributes:
        videos: ``V`` video names, sorted; a video's code is its index here.
        frames_seen: ``(V,)`` int64 distinct frames of each video seen by the region metric (the RBDC/TBDC
            false-positive-rate denominator is their sum).
        frame_video, frame_index: ``(F,)`` int64 video code and frame number of each scored frame, sorted.
        frame_score: ``(F,)`` float64 frame anomaly score.
        frame_label: ``(F,)`` bool, True = abnormal frame.
        det_video, det_frame: ``(D,)`` int64 video code and frame of each detected region.
        det_box: ``(D, 4)`` float64 inclusive ``(x1, y1, x2, y2)`` in original video pixels.
        det_score: ``(D,)`` float64 region score.
        gt_video, gt_frame: ``(R,)`` int64 video code and frame of each ground-truth region.
        gt_box: ``(R, 4)`` float64 inclusive boxes.
        gt_track: ``(R,)`` int64 track id, unique across videos.
        macro_pad: whether macro AUC uses UBnormal's padding (the task's ``macro_auc_padding``).
        alpha, beta: the TBDC track fraction and the RBDC IoU threshold of the region metric.
    """

    videos: list[str]
    frames_seen: np.ndarray
    frame_video: np.ndarray
    frame_index: np.ndarray
    frame_score: np.ndarray
    frame_label: np.ndarray
    det_video: np.ndarray
    det_frame: np.ndarray
    det_box: np.ndarray
    det_score: np.ndarray
    gt_video: np.ndarray
    gt_frame: np.ndarray
    gt_box: np.ndarray
    gt_track: np.ndarray
    macro_pad: bool = True
    alpha: float = 0.1
    beta: float = 0.1

    @property
    def num_videos(self) -> int:
        return len(self.videos)


def _first(video: np.ndarray, frame: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    return first_occurrence_mask(np.stack([video, frame], axis=1), occurrence)


def records_from_metrics(
    frames: MicroAUROC | MacroAUROC,
    regions: RegionTrackDetection,
    names: Mapping[int, str],
    *,
    macro_pad: bool = True,
) -> EvaluationRecords:
    """Read the (already synced, under DDP) states of a frame-AUC metric and the region metric.

    Args:
        frames: the task's micro (or macro) AUROC metric; both hold the same rows.
        regions: the task's :class:`~tvau_lightning.metrics.RegionTrackDetection`.
        names: ``video_hash(name) → name`` for every video seen (a hash without a name is written as
            ``#<hash>``).
        macro_pad: the macro metric's padding convention, carried into the records.
    """
    fv, ff, fo = (frames.rows(c) for c in ("video", "frame", "occurrence"))
    keep_f = _first(fv, ff, fo)
    sv, sf, so = (regions.rows(f"seen_{c}") for c in ("video", "frame", "occurrence"))
    dv, df, do = (regions.rows(f"det_{c}") for c in ("video", "frame", "occurrence"))
    gv, gf, go = (regions.rows(f"gt_{c}") for c in ("video", "frame", "occurrence"))
    # as in RegionTrackDetection.compute(): the first occurrence of a (video, frame) over all three row kinds
    keep = _first(np.concatenate([sv, dv, gv]), np.concatenate([sf, df, gf]), np.concatenate([so, do, go]))
    keep_s, keep_d, keep_g = keep[:len(sv)], keep[len(sv):len(sv) + len(dv)], keep[len(sv) + len(dv):]
    # the metric's own track assembly (given ids per video, mask components linked per video)
    gt_hash, gt_track, gt_rows = regions.link_gt_tracks(gv[keep_g], gf[keep_g], regions.rows("gt_box")[keep_g],
                                                    regions.rows("gt_track")[keep_g])

    hashes = np.unique(np.concatenate([fv, sv, dv, gv]))
    labelled = {int(h): names.get(int(h), f"#{int(h):016x}") for h in hashes}
    videos = sorted(set(labelled.values()))
    code_of_name = {name: i for i, name in enumerate(videos)}
    lookup_hash = np.array(sorted(labelled), dtype=np.int64)
    lookup_code = np.array([code_of_name[labelled[int(h)]] for h in lookup_hash], dtype=np.int64)

    def codes(h: np.ndarray) -> np.ndarray:
        return lookup_code[np.searchsorted(lookup_hash, h)] if len(h) else np.zeros(0, dtype=np.int64)

    frame_video, frame_index = codes(fv[keep_f]), ff[keep_f]
    order = np.lexsort((frame_index, frame_video))
    # detections and regions in a canonical order (video, frame, box, score), whatever order the ranks gathered them in
    det_video, det_frame, det_box = codes(dv[keep_d]), df[keep_d], regions.rows("det_box")[keep_d].reshape(-1, 4)
    det_score = regions.rows("det_score")[keep_d]
    det_order = np.lexsort((det_score, *det_box.T[::-1], det_frame, det_video))
    gt_video, gt_frame, gt_box = codes(gt_hash), gt_rows[:, 0].astype(np.int64), gt_rows[:, 1:5]
    gt_order = np.lexsort((*gt_box.T[::-1], gt_frame, gt_video))
    seen_codes = codes(sv[keep_s])
    seen_pairs = np.unique(np.stack([seen_codes, sf[keep_s]], axis=1), axis=0) if len(seen_codes) else np.zeros((0, 2))
    frames_seen = np.bincount(seen_pairs[:, 0].astype(np.int64), minlength=len(videos)).astype(np.int64)
    return EvaluationRecords(
        videos=videos,
        frames_seen=frames_seen,
        frame_video=frame_video[order],
        frame_index=frame_index[order],
        frame_score=frames.rows("score")[keep_f][order],
        frame_label=frames.rows("label")[keep_f][order].astype(bool),
        det_video=det_video[det_order],
        det_frame=det_frame[det_order],
        det_box=det_box[det_order],
        det_score=det_score[det_order],
        gt_video=gt_video[gt_order],
        gt_frame=gt_frame[gt_order],
        gt_box=gt_box[gt_order],
        gt_track=gt_track.astype(np.int64)[gt_order],
        macro_pad=bool(macro_pad),
        alpha=float(regions.alpha),
        beta=float(regions.beta),
    )
