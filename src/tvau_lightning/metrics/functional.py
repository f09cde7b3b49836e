"""Functional forms of the evaluation metrics (SPEC §6): numpy/torch in, Python floats out.

The torchmetrics classes in this package accumulate state and call these. Conventions are summarised in
``docs/metrics.md``; each function's docstring states its own.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from scipy.stats import rankdata

from tvau_lightning.metrics.regions import ArrayLike, to_numpy

__all__ = [
    "RegionTrackCurves",
    "bleu4",
    "macro_auroc",
    "micro_auroc",
    "normalize_yes_no",
    "rbdc_tbdc",
    "rbdc_tbdc_curves",
    "sentence_bleu4",
    "tokenize",
    "yes_no_accuracy",
]

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
    abnormal frame scored 1 (so single-class videos count; scores are expected in [0, 1]). ``pad=False``
    skips single-class videos, with a warning saying how many.

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
            s = np.concatenate([s, [0.0, 1.0]])
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


# ============================================================================================ RBDC / TBDC


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


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of inclusive boxes ``a (n, 4)`` and ``b (n, 4)``, +1 convention."""
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1)
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


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
    hit = _pair_iou(det_box[pair_det], gt_box[pair_gt]) >= beta
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


# ============================================================================================ text metrics

_TOKEN = re.compile(r"\w+|[^\w\s]")
#: nltk's add-epsilon smoothing (Chen & Cherry 2014, method 1): an n-gram order with no match gets
#: numerator 0.1 instead of 0, so a short, partly right answer is not scored exactly 0, and scores with
#: matches at every order are unchanged.
_SMOOTHING = SmoothingFunction().method1


def tokenize(text: str) -> list[str]:
    """Lowercase, then split into runs of word characters and single punctuation marks (no nltk data)."""
    return _TOKEN.findall(str(text).lower())


def sentence_bleu4(hypothesis: str, references: Sequence[str] | str) -> float:
    """Sentence BLEU-4 (uniform weights, brevity penalty, nltk ``method1`` smoothing) against the best reference.

    Each reference is scored on its own and the maximum is returned (SPEC: best reference per sample).
    Empty references are ignored.

    Raises:
        ValueError: no non-empty reference.
    """
    refs = [references] if isinstance(references, str) else list(references)
    ref_tokens = [tokenize(r) for r in refs]
    ref_tokens = [r for r in ref_tokens if r]
    if not ref_tokens:
        raise ValueError(f"BLEU-4 needs at least one non-empty reference, got {refs!r}")
    hyp = tokenize(hypothesis)
    if not hyp:
        return 0.0
    return max(float(sentence_bleu([r], hyp, smoothing_function=_SMOOTHING)) for r in ref_tokens)


def bleu4(hypotheses: Sequence[str], references_list: Sequence[Sequence[str] | str]) -> float:
    """Macro average over samples of :func:`sentence_bleu4`; one reference list (or string) per hypothesis."""
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a sequence of strings, got one string")
    if len(hypotheses) != len(references_list):
        raise ValueError(f"BLEU-4: {len(hypotheses)} hypotheses but {len(references_list)} reference lists")
    if not hypotheses:
        raise ValueError("BLEU-4 needs at least one sample")
    return float(np.mean([sentence_bleu4(h, r) for h, r in zip(hypotheses, references_list)]))


YesNo = Literal["yes", "no", "unknown"]

_YES_WORDS = {"yes", "yeah", "yep", "yup", "affirmative"}
_NO_WORDS = {"no", "nope", "negative"}
_PREFIX = re.compile(r"^\s*(?:answer|a)\s*:\s*")
_ANOMALY = r"(?:anomal\w*|abnormal\w*|unusual\w*|suspicious\w*|irregular\w*)"
_NEGATIVE_PHRASES = [
    re.compile(rf"\bno\s+(?:\w+\s+){{0,2}}?{_ANOMALY}"),  # no anomaly, no clear abnormal event
    re.compile(rf"\bnothing\s+(?:\w+\s+){{0,1}}?{_ANOMALY}"),  # nothing abnormal, nothing really unusual
    re.compile(rf"(?:\bnot\b|n't\b|\bnever\b)(?:\s+\w+){{0,4}}?\s+{_ANOMALY}"),  # is not anomalous, doesn't contain any anomaly
    re.compile(rf"\bwithout\s+(?:\w+\s+){{0,1}}?{_ANOMALY}"),
    re.compile(r"\b(?:is|are|looks|look|appears|appear|seems|seem)\s+(?:\w+\s+){0,1}?normal\b"),  # everything is normal
    re.compile(r"^\W*normal\b"),  # "Normal."
]
_HEDGES = re.compile(r"\b(?:unclear|unsure|uncertain|not sure|cannot (?:tell|determine|say)|can't (?:tell|determine|say)"
                     r"|hard to (?:tell|say)|impossible to (?:tell|say)|maybe|perhaps|possibly)\b")
_POSITIVE = re.compile(rf"\b{_ANOMALY}")


def normalize_yes_no(answer: str | bool | int) -> YesNo:
    """Map a free-form answer to ``yes`` / ``no`` / ``unknown``.

    Rules, first match wins (text lowercased, curly apostrophes straightened, a leading ``answer:`` dropped):

    1. the first word is yes/yeah/yep/yup/affirmative → yes; no/nope/negative → no
       ("Yes, there is…", "No.", "No anomaly is present");
    2. a hedge → unknown ("unclear", "not sure", "cannot tell", "hard to say", "maybe", "possibly");
    3. a negated anomaly phrase or a plain "normal" → no ("there is no anomaly", "nothing abnormal happens",
       "is not anomalous", "without any anomaly", "everything looks normal", "Normal.");
    4. any remaining mention of an anomaly (anomal*/abnormal*/unusual*/suspicious*/irregular*) → yes
       ("There is an anomaly", "A person behaves abnormally");
    5. otherwise unknown. Booleans map to yes/no; the integers 1/0 too.
    """
    if isinstance(answer, (bool, np.bool_)):
        return "yes" if answer else "no"
    if isinstance(answer, (int, np.integer)):
        if answer in (0, 1):
            return "yes" if answer == 1 else "no"
        return "unknown"
    text = _PREFIX.sub("", str(answer).lower().replace("\u2019", "'").replace("\u2018", "'"))
    words = re.findall(r"[a-z']+", text)
    if words:
        if words[0] in _YES_WORDS:
            return "yes"
        if words[0] in _NO_WORDS:
            return "no"
    if _HEDGES.search(text):
        return "unknown"
    if any(p.search(text) for p in _NEGATIVE_PHRASES):
        return "no"
    if _POSITIVE.search(text):
        return "yes"
    return "unknown"


_CODE = {"yes": 1, "no": 0, "unknown": -1}


def yes_no_codes(answers: Sequence[str | bool | int]) -> np.ndarray:
    """``(n,)`` int64 codes of :func:`normalize_yes_no`: 1 yes, 0 no, -1 unknown."""
    return np.array([_CODE[normalize_yes_no(a)] for a in answers], dtype=np.int64)


def yes_no_target_codes(targets: Sequence[str | bool | int]) -> np.ndarray:
    """Codes of ground-truth answers, which must normalise to yes or no (ValueError names the bad one)."""
    codes = yes_no_codes(targets)
    bad = np.nonzero(codes < 0)[0]
    if len(bad):
        raise ValueError(f"yes/no target {targets[int(bad[0])]!r} (sample {int(bad[0])}) is neither yes nor no; "
                         "ground-truth answers must start with yes/no or state whether there is an anomaly")
    return codes


def yes_no_scores(pred_codes: np.ndarray, target_codes: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy of code arrays (unknown predictions are wrong).

    Balanced accuracy = mean recall over the classes present in the targets, i.e. (TPR + TNR) / 2 with
    yes = positive when both occur (scikit-learn's convention when one class is absent).
    """
    if len(target_codes) == 0:
        raise ValueError("yes/no accuracy needs at least one sample")
    correct = pred_codes == target_codes
    recalls = [float(correct[target_codes == c].mean()) for c in (1, 0) if (target_codes == c).any()]
    return {"accuracy": float(correct.mean()), "balanced_accuracy": float(np.mean(recalls))}


def yes_no_accuracy(preds: Sequence[str | bool | int], targets: Sequence[str | bool | int]) -> dict[str, float]:
    """``{"accuracy", "balanced_accuracy"}`` of free-form predictions against yes/no targets.

    Both are normalised with :func:`normalize_yes_no`; an ``unknown`` prediction counts as wrong, a target
    that is not yes/no raises ValueError.
    """
    if isinstance(preds, str) or isinstance(targets, str):
        raise TypeError("preds and targets must be sequences of answers, got a single string")
    if len(preds) != len(targets):
        raise ValueError(f"yes/no accuracy: {len(preds)} predictions but {len(targets)} targets")
    return yes_no_scores(yes_no_codes(preds), yes_no_target_codes(targets))
