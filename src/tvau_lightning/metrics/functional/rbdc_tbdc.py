"""Region- and track-based detection criteria, RBDC/TBDC (SPEC §6; Ramachandra & Jones 2020, as used for UBnormal).

The functional form of :mod:`tvau_lightning.metrics.rbdc_tbdc`: GT tracks and scored detections in (inclusive
pixel boxes, :func:`~tvau_lightning.metrics.boxes.paired_box_iou_inclusive`), the swept curves and their
areas out. ``docs/metrics.md`` summarises the conventions and their sources.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tvau_lightning.metrics.arrays import ArrayLike, to_numpy
from tvau_lightning.metrics.boxes import paired_box_iou_inclusive

__all__ = ["RegionTrackCurves", "rbdc_tbdc", "rbdc_tbdc_curves", "region_track_sweep"]


@dataclass
class RegionTrackCurves:
    """The RBDR/TBDR-vs-FPR curves of one sweep and their areas.

    Attributes:
        fpr: ``(P,)`` false positives per frame, from 0 to exactly 1.
        rbdr: ``(P,)`` region-based detection rate at each point.
        tbdr: ``(P,)`` track-based detection rate at each point.
        thresholds: ``(P,)`` score threshold of each point (``+inf`` for the start point, NaN for the flat
            extension to FPR = 1).
        rbdc: area under ``rbdr(fpr)`` (trapezoidal), in [0, 1].
        tbdc: area under ``tbdr(fpr)``, in [0, 1].
        num_regions: GT regions counted in RBDR's denominator.
        num_tracks: non-empty GT tracks counted in TBDR's denominator.
        num_frames: the FPR denominator N.
    """

    fpr: np.ndarray
    rbdr: np.ndarray
    tbdr: np.ndarray
    thresholds: np.ndarray
    rbdc: float
    tbdc: float
    num_regions: int
    num_tracks: int
    num_frames: int


def _rows(value: ArrayLike, width: int, what: str) -> np.ndarray:
    a = to_numpy(value, np.float64)
    if a.size == 0:
        return np.zeros((0, width), dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == width:
        a = a[None, :]  # a one-row track or detection given as a flat row
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"{what}: expected rows of {width} columns, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    frames = a[:, 0]
    if (frames != np.round(frames)).any() or (frames < 0).any():
        raise ValueError(f"{what}: frame numbers must be non-negative integers, got {frames[:5].tolist()}")
    boxes = a[:, 1:5]
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise ValueError(f"{what}: boxes need x2 >= x1 and y2 >= y1 (inclusive pixels), got "
                         f"{boxes[bad][0].tolist()}")
    return a


def _min_detected(n: np.ndarray, alpha: float) -> np.ndarray:
    """Smallest k with ``k / n >= alpha`` (float division, as a per-track test would do it), k >= 1."""
    k = np.maximum(np.ceil(alpha * n).astype(np.int64), 1)
    lower = (k > 1) & ((k - 1) / n >= alpha)
    k[lower] -= 1
    k[k / n < alpha] += 1
    return np.minimum(k, n)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` (``np.trapezoid`` is numpy >= 2 only)."""
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2.0).sum())


def region_track_sweep(
    gt_video: np.ndarray,
    gt_frame: np.ndarray,
    gt_box: np.ndarray,
    gt_track: np.ndarray,
    det_video: np.ndarray,
    det_frame: np.ndarray,
    det_box: np.ndarray,
    det_score: np.ndarray,
    num_frames: int,
    *,
    alpha: float = 0.1,
    beta: float = 0.1,
) -> RegionTrackCurves:
    """The RBDC/TBDC sweep on flat arrays (used by :func:`rbdc_tbdc_curves` and the torchmetrics class).

    Args:
        gt_video, gt_frame: ``(R,)`` int64 video code and frame of each GT region.
        gt_box: ``(R, 4)`` inclusive boxes.
        gt_track: ``(R,)`` int64 track of each region (any ids, unique across videos).
        det_video, det_frame, det_box, det_score: the same for the ``D`` detections, plus ``(D,)`` scores.
        num_frames: N, the FPR denominator.

    Why this is the sequential sweep, vectorised: a detection is a false positive iff no GT region of its
    frame has IoU ≥ β with it — whatever was detected before — and a region is detected at threshold s iff
    some detection scored ≥ s has IoU ≥ β with it. (The "only already-detected regions" case adds nothing
    either way.) So each region's detection score is the max score of its β-matches, a track's is the
    k-th largest of its regions' (k = the fewest detected regions reaching α), and every count at a
    threshold is a ``searchsorted``. This also makes equal scores order-independent.
    """
    if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer (frames of the whole split), got {num_frames!r}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha (fraction of a track's regions to detect) must be in (0, 1], got {alpha}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta (IoU threshold) must be in (0, 1], got {beta}")
    num_frames = int(num_frames)
    num_regions = len(gt_frame)
    if num_regions == 0:
        raise ValueError("RBDC/TBDC are undefined without ground-truth regions (no anomalous region in the "
                         "split); evaluate on a split that has anomalies")

    # ---- (video, frame) keys and the GT regions of each detection's frame
    codes, video_inv = np.unique(np.concatenate([gt_video, det_video]), return_inverse=True)
    stride = int(max(gt_frame.max(initial=0), det_frame.max(initial=0))) + 1
    if len(codes) * stride >= 2**62:
        raise ValueError(f"frame numbers up to {stride - 1} in {len(codes)} videos overflow the frame keys")
    gt_key = video_inv[:num_regions].astype(np.int64) * stride + gt_frame
    det_key = video_inv[num_regions:].astype(np.int64) * stride + det_frame
    order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[order]
    lo = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - lo
    total = int(count.sum())
    pair_det = np.repeat(np.arange(len(det_key)), count)
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = order[np.repeat(lo, count) + offsets]
    hit = paired_box_iou_inclusive(det_box[pair_det], gt_box[pair_gt]) >= beta
    hit_det, hit_gt = pair_det[hit], pair_gt[hit]

    is_fp = np.ones(len(det_key), dtype=bool)
    is_fp[hit_det] = False
    region_score = np.full(num_regions, -np.inf)
    np.maximum.at(region_score, hit_gt, det_score[hit_det])

    # ---- a track is detected once k of its regions are (k-th largest region score)
    track_ids, track_inv, track_len = np.unique(gt_track, return_inverse=True, return_counts=True)
    by_track = np.lexsort((-region_score, track_inv))
    first = np.cumsum(track_len) - track_len
    track_score = region_score[by_track][first + _min_detected(track_len, alpha) - 1]
    num_tracks = len(track_ids)

    # ---- one curve point per distinct score, descending
    thresholds = np.unique(det_score)[::-1]
    fp_sorted = np.sort(det_score[is_fp])
    fp = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    reg_sorted = np.sort(region_score)
    tp = num_regions - np.searchsorted(reg_sorted, thresholds, side="left")
    trk_sorted = np.sort(track_score)
    td = num_tracks - np.searchsorted(trk_sorted, thresholds, side="left")

    keep = fp <= num_frames  # FP is non-decreasing: a prefix
    fpr = np.concatenate([[0.0], fp[keep] / num_frames])
    rbdr = np.concatenate([[0.0], tp[keep] / num_regions])
    tbdr = np.concatenate([[0.0], td[keep] / num_tracks])
    thr = np.concatenate([[np.inf], thresholds[keep]])
    if not keep.any() or fp[keep][-1] != num_frames:  # stop at FPR = 1: extend flat from the last point
        fpr, rbdr, tbdr = np.append(fpr, 1.0), np.append(rbdr, rbdr[-1]), np.append(tbdr, tbdr[-1])
        thr = np.append(thr, np.nan)
    return RegionTrackCurves(
        fpr=fpr, rbdr=rbdr, tbdr=tbdr, thresholds=thr,
        rbdc=_trapezoid(rbdr, fpr), tbdc=_trapezoid(tbdr, fpr),
        num_regions=num_regions, num_tracks=num_tracks, num_frames=num_frames,
    )


def rbdc_tbdc_curves(
    gt_tracks: Mapping[str, Sequence[ArrayLike]],
    detections: Mapping[str, ArrayLike],
    num_frames: int,
    *,
    alpha: float = 0.1,
    beta: float = 0.1,
) -> RegionTrackCurves:
    """:func:`rbdc_tbdc` with the curves (for plots and inspection); same arguments."""
    video_code: dict[Hashable, int] = {}

    def code(video: Hashable) -> int:
        return video_code.setdefault(video, len(video_code))

    gt_parts: list[np.ndarray] = []
    gt_video: list[np.ndarray] = []
    gt_track: list[np.ndarray] = []
    empty_tracks = 0
    for video, tracks in gt_tracks.items():
        if isinstance(tracks, (np.ndarray, torch.Tensor)) and to_numpy(tracks).ndim == 2:
            raise ValueError(f"gt_tracks[{video!r}] must be a list of (n, 5) arrays (one per track), got one 2-D "
                             "array; wrap a single track in a list")
        for t, track in enumerate(tracks):
            rows = _rows(track, 5, f"gt_tracks[{video!r}][{t}]")
            if len(rows) == 0:
                empty_tracks += 1
                continue
            gt_parts.append(rows)
            gt_video.append(np.full(len(rows), code(video), dtype=np.int64))
            gt_track.append(np.full(len(rows), len(gt_track), dtype=np.int64))
    if empty_tracks:
        warnings.warn(f"RBDC/TBDC: ignored {empty_tracks} empty GT track(s) (no region in any frame); they are "
                      "not counted in TBDR's denominator", RuntimeWarning, stacklevel=3)
    det_parts: list[np.ndarray] = []
    det_video: list[np.ndarray] = []
    for video, dets in detections.items():
        rows = _rows(dets, 6, f"detections[{video!r}]")
        det_parts.append(rows)
        det_video.append(np.full(len(rows), code(video), dtype=np.int64))

    gt = np.concatenate(gt_parts) if gt_parts else np.zeros((0, 5))
    det = np.concatenate(det_parts) if det_parts else np.zeros((0, 6))
    return region_track_sweep(
        np.concatenate(gt_video) if gt_video else np.zeros(0, np.int64),
        gt[:, 0].astype(np.int64), gt[:, 1:5],
        np.concatenate(gt_track) if gt_track else np.zeros(0, np.int64),
        np.concatenate(det_video) if det_video else np.zeros(0, np.int64),
        det[:, 0].astype(np.int64), det[:, 1:5], det[:, 5],
        num_frames, alpha=alpha, beta=beta,
    )


def rbdc_tbdc(
    gt_tracks: Mapping[str, Sequence[ArrayLike]],
    detections: Mapping[str, ArrayLike],
    num_frames: int,
    *,
    alpha: float = 0.1,
    beta: float = 0.1,
) -> tuple[float, float]:
    """Region- and track-based detection criteria (Ramachandra & Jones 2020, as used for UBnormal).

    All detections of all videos are swept in descending score; each distinct score is one threshold
    (equal scores are processed together, so their order never matters). IoU uses inclusive pixels (+1).
    A detection with IoU ≥ ``beta`` against not-yet-detected GT regions of its (video, frame) detects all
    of them; one whose IoU ≥ ``beta`` matches are all already detected is neither TP nor FP; any other
    detection — IoU < ``beta`` with every region, a frame without GT, a video without GT — is a false
    positive. RBDR = detected regions / all regions; TBDR = fraction of tracks with ≥ ``alpha`` of their
    regions detected; FPR = FP / ``num_frames``. The curves start at (0, 0), keep the points with FPR ≤ 1
    and, unless the last is exactly FPR = 1, extend flat from it to FPR = 1 (as the UBnormal authors'
    evaluation code does); RBDC/TBDC are the trapezoidal areas, in [0, 1].

    Args:
        gt_tracks: per video (any hashable key) a sequence of tracks, each array-like ``(n, 5)`` rows
            ``(frame, x1, y1, x2, y2)``, inclusive pixels (a one-row track may be a flat 5-vector). Empty
            tracks are ignored with a warning; videos may have no tracks (normal videos).
        detections: per video, array-like ``(m, 6)`` rows ``(frame, x1, y1, x2, y2, score)``; videos may be
            missing or empty.
        num_frames: N, the number of frames of the whole split (normal videos included).
        alpha: fraction of a track's regions that must be detected for the track to count.
        beta: IoU threshold for a detection to detect a region.
    Returns:
        ``(rbdc, tbdc)``.
    Raises:
        ValueError: malformed rows, ``num_frames < 1``, or no GT region at all (both criteria undefined).
    """
    curves = rbdc_tbdc_curves(gt_tracks, detections, num_frames, alpha=alpha, beta=beta)
    return curves.rbdc, curves.tbdc
