"""Fine-grained anomaly detection mAP@tIoU — the UCF-Crime/XD-Violence category metric of VadCLIP and Ex-VAD.

The protocol is VadCLIP's published evaluation (``src/utils/{ucf,xd}_detectionMAP.py`` in nwpu-zxr/VadCLIP),
which Ex-VAD follows; ``docs/datasets_weak.md`` (metrics section) gives the sources and every departure.
For each video ``v`` and each anomaly class ``c`` with per-frame class scores ``p_v[:, c]`` (``T`` frames):

1. *video-class score* ``ĉ = mean of the top ⌊T/16⌋ values of p_v[:, c]`` (at least one value);
2. *proposals*: threshold ``θ = max − 0.6·(max − min)`` of ``p_v[:, c]``; every maximal run of frames with
   ``p > θ`` and at least 2 frames long is a segment ``[s, e)`` scored ``max(p[s:e]) + 0.7·ĉ``;
3. the video's proposals of class ``c`` are suppressed by temporal NMS at tIoU 0.6 (highest score first);
4. over all videos, proposals of class ``c`` are taken by decreasing score; each is a true positive when a
   not-yet-matched ground-truth segment of class ``c`` in the same video has tIoU ≥ the threshold (the one
   with the highest tIoU is matched and removed), else a false positive;
5. ``AP_c = Σ_{true positives} precision@rank / #GT segments of c`` (no interpolation); ``mAP`` is the mean
   over classes; it is computed at tIoU 0.1, 0.2, 0.3, 0.4, 0.5 and averaged (``AVG``).

tIoU of two frame ranges ``[s, e)`` is ``|frames in both| / |frames in either|``. Following the papers, only
**abnormal** videos and the **anomaly classes** are evaluated (``include_normal=False``); the published code
calls it with ``excludeNormal=False``, which also scores normal videos and a ``normal`` class whose ground
truth is each normal video's whole length — ``include_normal=True`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tvau_lightning.metrics.arrays import ArrayLike, to_numpy

DEFAULT_TIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class TemporalMAPResult:
    """mAP at each tIoU threshold, their average, and the per-class APs behind them.

    Attributes:
        thresholds: the tIoU thresholds.
        map: ``(n_thresholds,)`` mean AP over :attr:`classes` at each threshold, in [0, 1].
        average: mean of :attr:`map` (the papers' ``AVG``).
        ap: ``(n_thresholds, n_classes)`` AP per threshold and class.
        classes: the class indices averaged over (those with ground truth among the evaluated videos).
        num_videos: videos evaluated.
    """

    thresholds: tuple[float, ...]
    map: np.ndarray
    average: float
    ap: np.ndarray
    classes: tuple[int, ...]
    num_videos: int

    def as_dict(self, prefix: str = "map") -> dict[str, float]:
        """``{"map@0.1": …, …, "map_avg": …}``."""
        out = {f"{prefix}@{t:.1f}": float(m) for t, m in zip(self.thresholds, self.map)}
        out[f"{prefix}_avg"] = self.average
        return out


def temporal_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """tIoU of two half-open frame ranges ``[s, e)``: shared frames over frames in either (0 when both empty)."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def score_segments(
    scores: ArrayLike, threshold_ratio: float = 0.6, min_length: int = 2, class_score_weight: float = 0.7,
    nms_tiou: float = 0.6,
) -> list[tuple[int, int, float]]:
    """Proposals ``(start, end, score)`` (``[start, end)``, best first) from one video's per-frame scores of one
    class: steps 1–3 of the module docstring."""
    p = to_numpy(scores, np.float64).reshape(-1)
    if p.size == 0:
        return []
    top = max(1, p.size // 16)
    video_score = float(np.sort(p)[::-1][:top].mean())
    theta = p.max() - (p.max() - p.min()) * threshold_ratio
    above = np.r_[False, p > theta, False]
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    proposals = [(int(s), int(e), float(p[s:e].max()) + class_score_weight * video_score)
                 for s, e in zip(edges[0::2], edges[1::2]) if e - s >= min_length]
    proposals.sort(key=lambda r: -r[2])
    kept: list[tuple[int, int, float]] = []
    for candidate in proposals:  # temporal NMS: drop a proposal overlapping a better kept one above nms_tiou
        if all(_nms_overlap(candidate, k) <= nms_tiou for k in kept):
            kept.append(candidate)
    return kept


def _nms_overlap(a: tuple[int, int, float], b: tuple[int, int, float]) -> float:
    # VadCLIP's NMS measures lengths as end - start of the same [s, e) ranges: the same tIoU
    return temporal_iou((a[0], a[1]), (b[0], b[1]))


def class_average_precision(
    proposals: Sequence[tuple[str, int, int, float]], ground_truth: Sequence[tuple[str, int, int]], tiou: float
) -> float:
    """AP of one class: ``proposals`` ``(video, start, end, score)`` against ``ground_truth`` ``(video, start, end)``
    with greedy best-tIoU matching (steps 4–5 of the module docstring). 0 when nothing matches."""
    if not ground_truth:
        return 0.0
    remaining: dict[str, list[tuple[int, int]]] = {}
    for video, s, e in ground_truth:
        remaining.setdefault(video, []).append((s, e))
    order = sorted(range(len(proposals)), key=lambda i: -proposals[i][3])
    hits = np.zeros(len(order))
    for rank, i in enumerate(order):
        video, s, e, _ = proposals[i]
        candidates = remaining.get(video, [])
        ious = [temporal_iou((s, e), g) for g in candidates]
        if ious and max(ious) >= tiou:
            del candidates[int(np.argmax(ious))]
            hits[rank] = 1.0
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / len(ground_truth))


def temporal_map(
    class_scores: Mapping[str, ArrayLike],
    gt_segments: Mapping[str, Sequence[tuple[int, int, int]]],
    thresholds: Sequence[float] = DEFAULT_TIOU_THRESHOLDS,
    include_normal: bool = False,
    threshold_ratio: float = 0.6,
    min_length: int = 2,
    class_score_weight: float = 0.7,
    nms_tiou: float = 0.6,
) -> TemporalMAPResult:
    """Fine-grained mAP@tIoU over videos (module docstring).

    Args:
        class_scores: video → ``(T, K)`` per-frame class scores (e.g. softmax probabilities), column 0 = normal.
        gt_segments: video → ``(class, start, end)`` ground-truth segments, 0-based half-open frames, classes
            ``1 … K-1`` (a normal video has none). Every video of ``class_scores`` must be a key (maybe empty).
        thresholds: the tIoU thresholds (default 0.1:0.5:0.1).
        include_normal: also evaluate normal videos and class 0, as VadCLIP's published code does (a normal
            video's ground truth is then ``(0, 0, T)``); default: abnormal videos and anomaly classes only.
        threshold_ratio, min_length, class_score_weight, nms_tiou: the proposal constants (0.6, 2, 0.7, 0.6).
    Raises:
        ValueError: videos differ between the mappings, scores are not ``(T, K)``, a segment class is outside
            ``1 … K-1``, or no class has ground truth among the evaluated videos.
    """
    if set(class_scores) != set(gt_segments):
        only_s = sorted(set(class_scores) - set(gt_segments))[:5]
        only_g = sorted(set(gt_segments) - set(class_scores))[:5]
        raise ValueError(f"mAP@tIoU: videos differ between scores and ground truth (only in scores: {only_s}, "
                         f"only in ground truth: {only_g})")
    scores = {v: to_numpy(p, np.float64) for v, p in class_scores.items()}
    widths = {p.shape[1] for p in scores.values() if p.ndim == 2}
    if any(p.ndim != 2 for p in scores.values()) or len(widths) > 1:
        raise ValueError(f"mAP@tIoU: class scores must be (T, K) with one K for all videos, got shapes "
                         f"{sorted({p.shape for p in scores.values()})[:5]}")
    num_classes = widths.pop() if widths else 0
    truth: dict[str, list[tuple[int, int, int]]] = {}
    for video, segments in gt_segments.items():
        rows = [(int(c), int(s), int(e)) for c, s, e in segments]
        bad = [r for r in rows if not 1 <= r[0] < num_classes]
        if bad:
            raise ValueError(f"mAP@tIoU, video {video!r}: segment classes must be in 1 … {num_classes - 1}, got {bad[:3]}")
        truth[video] = rows
    videos = [v for v in scores if truth[v]]
    if include_normal:
        for v in scores:
            if not truth[v]:
                truth[v] = [(0, 0, scores[v].shape[0])]
        videos = list(scores)
    classes = sorted({c for v in videos for c, _, _ in truth[v]})
    if not classes:
        raise ValueError("mAP@tIoU is undefined: no evaluated video has a ground-truth segment")
    proposals = {c: [(v, s, e, score) for v in videos
                     for s, e, score in score_segments(scores[v][:, c], threshold_ratio, min_length,
                                                       class_score_weight, nms_tiou)]
                 for c in classes}
    ground = {c: [(v, s, e) for v in videos for k, s, e in truth[v] if k == c] for c in classes}
    ap = np.array([[class_average_precision(proposals[c], ground[c], t) for c in classes] for t in thresholds])
    per_threshold = ap.mean(axis=1)
    return TemporalMAPResult(tuple(float(t) for t in thresholds), per_threshold, float(per_threshold.mean()), ap,
                             tuple(classes), len(videos))


def segments_from_frame_categories(categories: ArrayLike) -> list[tuple[int, int, int]]:
    """Ground-truth segments ``(class, start, end)`` from ``(T, K)`` multi-hot per-frame categories: every maximal
    run of frames of each class ``k ≥ 1`` (column 0 = normal is skipped)."""
    cats = to_numpy(categories).astype(bool)
    out = []
    for k in range(1, cats.shape[1]):
        edges = np.flatnonzero(np.diff(np.r_[False, cats[:, k], False].astype(np.int8)))
        out += [(k, int(s), int(e)) for s, e in zip(edges[0::2], edges[1::2])]
    return sorted(out, key=lambda r: (r[1], r[0]))
