"""RBDC/TBDC: hand-computed cases, random cases against a naive sweep written here from SPEC §6, the metric class."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from tvau_lightning.metrics import RBDC, TBDC, RegionTrackDetection
from tvau_lightning.metrics.functional import rbdc_tbdc, rbdc_tbdc_curves
from tvau_lightning.metrics.regions import heatmap_to_detections, masks_to_tracks


# ------------------------------------------------------------------------------------------------ naive reference
def naive_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def naive_rbdc_tbdc(gt_tracks, detections, num_frames, alpha=0.1, beta=0.1):
    """Straight from the SPEC text: one detection at a time in descending score, a curve point per score."""
    regions = {}  # (video, frame) -> list of [box, track, detected]
    track_sizes = []
    for video, tracks in gt_tracks.items():
        for track in tracks:
            rows = [list(map(float, r)) for r in np.asarray(track, dtype=float).reshape(-1, 5)]
            if not rows:
                continue
            for r in rows:
                regions.setdefault((video, int(r[0])), []).append([r[1:5], len(track_sizes), False])
            track_sizes.append(len(rows))
    total_regions = sum(track_sizes)
    dets = [(float(r[5]), video, int(r[0]), list(map(float, r[1:5])))
            for video, rows in detections.items() for r in np.asarray(rows, dtype=float).reshape(-1, 6)]
    dets.sort(key=lambda d: -d[0])
    detected_per_track = [0] * len(track_sizes)
    tp = fp = tracks_detected = 0
    points = [(0.0, 0.0, 0.0)]
    for i, (score, video, frame, box) in enumerate(dets):
        frame_regions = regions.get((video, frame), [])
        matching = [r for r in frame_regions if naive_iou(box, r[0]) >= beta]
        if not matching:
            fp += 1
        for r in matching:
            if not r[2]:
                r[2] = True
                tp += 1
                t = r[1]
                before = detected_per_track[t] / track_sizes[t] >= alpha
                detected_per_track[t] += 1
                if not before and detected_per_track[t] / track_sizes[t] >= alpha:
                    tracks_detected += 1
        if i + 1 == len(dets) or dets[i + 1][0] != score:
            points.append((fp / num_frames, tp / total_regions, tracks_detected / len(track_sizes)))
    kept = [p for p in points if p[0] <= 1]
    if kept[-1][0] != 1:
        kept.append((1.0, kept[-1][1], kept[-1][2]))
    area_r = sum((kept[i + 1][0] - kept[i][0]) * (kept[i + 1][1] + kept[i][1]) / 2 for i in range(len(kept) - 1))
    area_t = sum((kept[i + 1][0] - kept[i][0]) * (kept[i + 1][2] + kept[i][2]) / 2 for i in range(len(kept) - 1))
    return area_r, area_t


def box(x1, y1, x2, y2):
    return [x1, y1, x2, y2]


# ------------------------------------------------------------------------------------------------ hand-computed cases
def test_perfect_detection_is_one():
    gt = {"a": [np.array([[0, *box(10, 10, 20, 20)], [1, *box(12, 10, 22, 20)]]), np.array([[0, *box(40, 40, 50, 60)]])],
          "n": []}
    det = {"a": np.array([[0, *box(10, 10, 20, 20), 0.9], [1, *box(12, 10, 22, 20), 0.8], [0, *box(40, 40, 50, 60), 0.7]])}
    assert rbdc_tbdc(gt, det, num_frames=100) == (1.0, 1.0)


def test_false_positives_after_true_positives_and_the_cut_at_fpr_one():
    # N = 4; one track of 2 regions. Points: (0,0) .9 FP (.25,0) .8 TP (.25,.5) .7 FP (.5,.5) .6 TP (.5,1)
    # .5 three FPs -> FPR 1.25, cut; flat to (1, 1). RBDC = .25*.5 + .5*1 = .625; TBDC (k=1): .75 * 1.
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)], [1, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([
        [5, *box(0, 0, 9, 9), 0.9],
        [0, *box(0, 0, 9, 9), 0.8],
        [0, *box(50, 50, 59, 59), 0.7],
        [1, *box(0, 0, 9, 9), 0.6],
        [2, *box(0, 0, 9, 9), 0.5], [3, *box(0, 0, 9, 9), 0.5], [1, *box(70, 0, 79, 9), 0.5],
        [1, *box(0, 0, 9, 9), 0.4],  # after the cut: changes nothing
    ])}
    rbdc, tbdc = rbdc_tbdc(gt, det, num_frames=4)
    assert rbdc == pytest.approx(0.625, abs=1e-12)
    assert tbdc == pytest.approx(0.75, abs=1e-12)
    # alpha = 1: the track needs both regions, found at .6 -> TBDR 1 from FPR .5 on
    assert rbdc_tbdc(gt, det, num_frames=4, alpha=1.0)[1] == pytest.approx(0.5, abs=1e-12)
    curves = rbdc_tbdc_curves(gt, det, num_frames=4)
    np.testing.assert_allclose(curves.fpr, [0, 0.25, 0.25, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(curves.rbdr, [0, 0, 0.5, 0.5, 1.0, 1.0])
    assert curves.thresholds[0] == math.inf and math.isnan(curves.thresholds[-1])


def test_curve_that_reaches_exactly_fpr_one_is_not_extended():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(0, 0, 9, 9), 0.9], [1, *box(0, 0, 9, 9), 0.8], [2, *box(0, 0, 9, 9), 0.7]])}
    curves = rbdc_tbdc_curves(gt, det, num_frames=2)
    np.testing.assert_allclose(curves.fpr, [0, 0, 0.5, 1.0])
    assert not np.isnan(curves.thresholds).any()
    assert curves.rbdc == 1.0


def test_fp_beyond_fpr_one_at_the_first_threshold_gives_zero():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[1, *box(0, 0, 9, 9), 0.9], [2, *box(0, 0, 9, 9), 0.9], [0, *box(0, 0, 9, 9), 0.5]])}
    assert rbdc_tbdc(gt, det, num_frames=1) == (0.0, 0.0)


def test_one_detection_finds_two_regions():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]]), np.array([[0, *box(10, 0, 19, 9)]]), np.array([[1, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(0, 0, 19, 9), 0.9]])}  # IoU 0.5 with both regions of frame 0
    curves = rbdc_tbdc_curves(gt, det, num_frames=10)
    np.testing.assert_allclose(curves.rbdr, [0, 2 / 3, 2 / 3])
    assert (curves.rbdc, curves.tbdc) == pytest.approx((2 / 3, 2 / 3), abs=1e-12)


def test_duplicate_detection_of_a_found_region_is_neither_tp_nor_fp():
    # Were the duplicate an FP, the curve would be (0,0) (0,.5) (.5,.5) (.5,1) (1,1) -> 0.75.
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)], [1, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(0, 0, 9, 9), 0.9], [0, *box(1, 1, 9, 9), 0.8], [1, *box(0, 0, 9, 9), 0.7]])}
    curves = rbdc_tbdc_curves(gt, det, num_frames=2)
    np.testing.assert_allclose(curves.fpr, [0, 0, 0, 0, 1])
    assert curves.rbdc == 1.0


def test_detection_over_a_found_and_a_new_region_detects_the_new_one():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]]), np.array([[0, *box(10, 0, 19, 9)]])]}
    det = {"v": np.array([
        [0, *box(0, 0, 9, 9), 0.9],  # finds region 1
        [0, *box(0, 0, 19, 9), 0.8],  # IoU .5 with both: finds region 2, not an FP
        [0, *box(8, 0, 9, 9), 0.7],  # IoU .2 with the found region 1 only (< .1 with region 2: 0): neither
    ])}
    curves = rbdc_tbdc_curves(gt, det, num_frames=1)
    np.testing.assert_allclose(curves.rbdr, [0, 0.5, 1, 1, 1])
    np.testing.assert_allclose(curves.fpr, [0, 0, 0, 0, 1])


def test_overlap_below_beta_is_a_false_positive():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(9, 0, 18, 9), 0.9]])}  # inclusive IoU 10/190 < 0.1
    curves = rbdc_tbdc_curves(gt, det, num_frames=2)
    np.testing.assert_allclose(curves.fpr, [0, 0.5, 1])
    assert curves.rbdc == 0.0


def test_iou_uses_inclusive_pixels():
    # inclusive: inter 2x10 = 20, union 180 -> 0.111 >= 0.1 (TP); exclusive would be 9/153 = 0.059 (FP)
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(8, 0, 17, 9), 0.9]])}
    assert rbdc_tbdc(gt, det, num_frames=5) == (1.0, 1.0)


def test_iou_exactly_beta_detects():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {"v": np.array([[0, *box(0, 0, 9, 0), 0.9]])}  # inter 10, union 100: IoU exactly 0.1
    assert rbdc_tbdc(gt, det, num_frames=5) == (1.0, 1.0)
    assert rbdc_tbdc(gt, det, num_frames=5, beta=0.11) == (0.0, 0.0)


def test_track_counts_when_exactly_alpha_of_its_regions_are_detected():
    # 100 regions, alpha 0.07: 7 detected regions suffice (7/100 >= 0.07 although 0.07 * 100 = 7.000000000000001)
    track = np.array([[f, *box(0, 0, 9, 9)] for f in range(100)])
    det = {"v": np.array([[f, *box(0, 0, 9, 9), 0.9] for f in range(7)])}
    assert rbdc_tbdc({"v": [track]}, det, num_frames=100, alpha=0.07) == pytest.approx((0.07, 1.0))
    det = {"v": np.array([[f, *box(0, 0, 9, 9), 0.9] for f in range(6)])}
    assert rbdc_tbdc({"v": [track]}, det, num_frames=100, alpha=0.07) == pytest.approx((0.06, 0.0))


def test_equal_scores_are_one_threshold_in_any_order():
    # FP and TP at the same score: one point (0.5, 1) -> area .25 + .5 = .75, whatever their order
    # (FP first would give 0.5, TP first 1.0).
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    rows = [[0, *box(0, 0, 9, 9), 0.9], [3, *box(0, 0, 9, 9), 0.9]]
    for order in (rows, rows[::-1]):
        assert rbdc_tbdc(gt, {"v": np.array(order)}, num_frames=2) == pytest.approx((0.75, 0.75), abs=1e-12)
    rng = np.random.default_rng(0)
    gt, det, n = random_case(rng, ties=True)
    expected = rbdc_tbdc(gt, det, n)
    for _ in range(3):
        shuffled = {v: d[rng.permutation(len(d))] for v, d in reversed(list(det.items()))}
        assert rbdc_tbdc(gt, shuffled, n) == expected


# ------------------------------------------------------------------------------------------------ edge cases
def test_no_detections_and_videos_without_detections():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])], "w": [np.array([[3, *box(0, 0, 9, 9)]])]}
    assert rbdc_tbdc(gt, {}, num_frames=5) == (0.0, 0.0)
    assert rbdc_tbdc(gt, {"v": np.zeros((0, 6)), "w": []}, num_frames=5) == (0.0, 0.0)
    det = {"v": np.array([[0, *box(0, 0, 9, 9), 0.5]])}  # "w" has no detections at all
    assert rbdc_tbdc(gt, det, num_frames=5) == (0.5, 0.5)


def test_detections_outside_gt_frames_and_videos_are_false_positives():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]])]}
    det = {
        "v": np.array([[0, *box(0, 0, 9, 9), 0.5], [99, *box(0, 0, 9, 9), 0.9]]),  # frame beyond the GT
        "normal": np.array([[0, *box(0, 0, 9, 9), 0.8]]),  # video without GT
    }
    curves = rbdc_tbdc_curves(gt, det, num_frames=4)
    np.testing.assert_allclose(curves.fpr, [0, 0.25, 0.5, 0.5, 1])
    np.testing.assert_allclose(curves.rbdr, [0, 0, 0, 1, 1])
    assert curves.rbdc == pytest.approx(0.5)


def test_one_row_tracks_flat_rows_and_torch_inputs():
    gt = {"v": [[0, *box(0, 0, 9, 9)], torch.tensor([[1, *box(0, 0, 9, 9)]])]}
    det = {"v": torch.tensor([[0, *box(0, 0, 9, 9), 0.9]], dtype=torch.float64)}
    assert rbdc_tbdc(gt, det, num_frames=2) == (0.5, 0.5)


def test_empty_tracks_are_ignored_with_a_warning():
    gt = {"v": [np.array([[0, *box(0, 0, 9, 9)]]), np.zeros((0, 5))]}
    det = {"v": np.array([[0, *box(0, 0, 9, 9), 0.9]])}
    with pytest.warns(RuntimeWarning, match="1 empty GT track"):
        assert rbdc_tbdc(gt, det, num_frames=2) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("gt", "det", "n", "match"),
    [
        ({"v": []}, {}, 3, "without ground-truth regions"),
        ({}, {"v": np.array([[0, 0, 0, 1, 1, 0.5]])}, 3, "without ground-truth regions"),
        ({"v": [np.array([[0, 0, 0, 1, 1]])]}, {}, 0, "num_frames"),
        ({"v": [np.array([[0, 5, 0, 1, 1]])]}, {}, 3, "x2 >= x1"),
        ({"v": [np.array([[-1, 0, 0, 1, 1]])]}, {}, 3, "non-negative integers"),
        ({"v": [np.array([[0.5, 0, 0, 1, 1]])]}, {}, 3, "non-negative integers"),
        ({"v": [np.array([[0, 0, 0, 1]])]}, {}, 3, "5 columns"),
        ({"v": [np.array([[0, 0, 0, 1, 1]])]}, {"v": np.array([[0, 0, 0, 1, 1, np.nan]])}, 3, "NaN"),
        ({"v": np.array([[0, 0, 0, 1, 1], [1, 0, 0, 1, 1]])}, {}, 3, "list of"),
    ],
)
def test_invalid_inputs_raise_with_a_reason(gt, det, n, match):
    with pytest.raises(ValueError, match=match):
        rbdc_tbdc(gt, det, n)


def test_alpha_and_beta_are_validated():
    gt = {"v": [np.array([[0, 0, 0, 1, 1]])]}
    with pytest.raises(ValueError, match="alpha"):
        rbdc_tbdc(gt, {}, 3, alpha=0.0)
    with pytest.raises(ValueError, match="beta"):
        rbdc_tbdc(gt, {}, 3, beta=1.5)


# ------------------------------------------------------------------------------------------------ random vs naive
def random_case(rng: np.random.Generator, ties: bool):
    gt, det = {}, {}
    frames_total = 0
    for v in range(int(rng.integers(1, 5))):
        video = f"video_{v}"
        length = int(rng.integers(5, 30))
        frames_total += length
        tracks = []
        for _ in range(int(rng.integers(0, 4))):
            start = int(rng.integers(0, length))
            end = int(rng.integers(start, min(length, start + 12)))
            x, y = rng.integers(0, 60, size=2)
            w, h = rng.integers(1, 25, size=2)
            rows = [[f, x + 2 * (f - start), y, x + 2 * (f - start) + w, y + h] for f in range(start, end + 1)]
            tracks.append(np.array(rows, dtype=float))
        gt[video] = tracks
        rows = []
        for _ in range(int(rng.integers(0, 40))):
            f = int(rng.integers(0, length + 3))  # a few land beyond the video's GT frames
            if tracks and rng.random() < 0.6:  # near a GT box
                t = tracks[int(rng.integers(len(tracks)))]
                r = t[int(rng.integers(len(t)))]
                f = int(r[0])
                jitter = rng.integers(-6, 7, size=4)
                x1, y1 = r[1] + jitter[0], r[2] + jitter[1]
                b = [x1, y1, max(x1, r[3] + jitter[2]), max(y1, r[4] + jitter[3])]
            else:
                x1, y1 = rng.integers(0, 80, size=2)
                b = [x1, y1, x1 + rng.integers(0, 30), y1 + rng.integers(0, 30)]
            score = rng.integers(0, 8) / 8 if ties else rng.random()
            rows.append([f, *b, score])
        if rows or rng.random() < 0.5:
            det[video] = np.array(rows, dtype=float).reshape(-1, 6)
    det["normal_video"] = np.array([[int(rng.integers(0, 9)), 0, 0, 5, 5, rng.random()] for _ in range(3)])
    frames_total += 10
    if sum(len(t) for ts in gt.values() for t in ts) == 0:
        gt["extra"] = [np.array([[0, 1, 1, 4, 4]], dtype=float)]
        frames_total += 1
    num_frames = max(1, int(frames_total * rng.choice([0.05, 0.3, 1.0])))  # small N: curves cross FPR 1
    return gt, det, num_frames


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_the_naive_sweep(seed):
    rng = np.random.default_rng(seed)
    gt, det, n = random_case(rng, ties=seed % 2 == 0)
    alpha = float(rng.choice([0.1, 0.3, 1.0]))
    beta = float(rng.choice([0.1, 0.25, 0.5]))
    got = rbdc_tbdc(gt, det, n, alpha=alpha, beta=beta)
    expected = naive_rbdc_tbdc(gt, det, n, alpha=alpha, beta=beta)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0.0 <= v <= 1.0 for v in got)


def test_naive_loop_order_within_ties_does_not_matter_for_the_naive_either():
    # sanity of the reference itself: shuffling equal-score detections leaves its result unchanged
    rng = np.random.default_rng(7)
    gt, det, n = random_case(rng, ties=True)
    items = list(det.items())
    random.Random(1).shuffle(items)
    assert naive_rbdc_tbdc(gt, dict(items), n) == pytest.approx(naive_rbdc_tbdc(gt, det, n), abs=1e-12)


# ------------------------------------------------------------------------------------------------ metric class
def _blob_video(rng: np.random.Generator, length: int, size: tuple[int, int], abnormal: bool):
    """Heatmaps at 1/4 resolution and full-size masks of one moving blob (frames 3..length-3 when abnormal)."""
    big_h, big_w = size
    h, w = big_h // 4, big_w // 4
    heat = rng.random((length, h, w)) * 0.45
    masks = np.zeros((length, big_h, big_w), dtype=bool)
    if abnormal:
        for f in range(3, length - 3):
            r, c = 2 + f % 3, 2 + f
            heat[f, r:r + 3, c:c + 3] = 0.6 + 0.3 * rng.random()
            masks[f, 4 * r:4 * r + 12, 4 * c:4 * c + 12] = True
    # a few false alarms
    for f in rng.choice(length, size=3, replace=False):
        heat[f, h - 2, w - 2] = 0.55 + 0.4 * rng.random()
    return heat, masks


def _clips(length: int, clip_len: int):
    for start in range(0, length, clip_len):
        index = np.arange(start, start + clip_len)
        yield np.where(index < length, index, -1)


@pytest.fixture(scope="module")
def region_videos():
    rng = np.random.default_rng(3)
    size = (48, 80)
    return {f"vid_{i}": (*_blob_video(rng, 14 + 3 * i, size, abnormal=i != 2), size) for i in range(4)}


def _feed(metric, region_videos, gt: str, clip_len: int = 4, repeat_first: bool = False):
    batches = []
    for video_id, (heat, masks, size) in region_videos.items():
        tracks = masks_to_tracks(masks, np.arange(len(masks)))
        for index in _clips(len(heat), clip_len):
            safe = np.maximum(index, 0)
            boxes = [np.array([[r[0], t, *r[1:]] for t, track in enumerate(tracks) for r in track if r[0] in index[index >= 0]],
                              dtype=np.int64).reshape(-1, 6)]
            batches.append((heat[safe][None], [video_id], index[None], masks[safe][None], boxes, size))
    if repeat_first:
        batches.append(batches[0])
    for heat, ids, index, masks, boxes, size in batches:
        metric.update(torch.from_numpy(heat), ids, torch.from_numpy(index), torch.tensor([size]),
                      gt_masks=torch.from_numpy(masks) if gt == "masks" else None,
                      gt_boxes=[torch.from_numpy(b) for b in boxes] if gt == "boxes" else None)


def _expected(region_videos, alpha=0.1, beta=0.1):
    gt, det, n = {}, {}, 0
    for video_id, (heat, masks, size) in region_videos.items():
        gt[video_id] = masks_to_tracks(masks, np.arange(len(masks)))
        det[video_id] = heatmap_to_detections(heat, np.arange(len(heat)), size)
        n += len(heat)
    return rbdc_tbdc(gt, det, n, alpha=alpha, beta=beta)


@pytest.mark.parametrize("gt", ["masks", "boxes"])
def test_metric_over_clips_equals_the_functional_over_whole_videos(region_videos, gt):
    metric = RegionTrackDetection()
    _feed(metric, region_videos, gt, clip_len=4, repeat_first=True)  # the repeated clip counts once
    out = metric.compute()
    expected = _expected(region_videos)
    assert 0.0 < expected[0] < 1.0
    assert out["rbdc"].item() == pytest.approx(expected[0], abs=1e-6)
    assert out["tbdc"].item() == pytest.approx(expected[1], abs=1e-6)


def test_thin_rbdc_and_tbdc_and_parameters(region_videos):
    rbdc, tbdc = RBDC(alpha=0.5, beta=0.3), TBDC(alpha=0.5, beta=0.3)
    _feed(rbdc, region_videos, "boxes")
    _feed(tbdc, region_videos, "boxes")
    expected = _expected(region_videos, alpha=0.5, beta=0.3)
    assert rbdc.compute().item() == pytest.approx(expected[0], abs=1e-6)
    assert tbdc.compute().item() == pytest.approx(expected[1], abs=1e-6)


def test_metric_without_gt_regions_returns_nan_with_a_warning():
    metric = RegionTrackDetection()
    metric.update(torch.rand(1, 2, 4, 4), ["normal"], torch.tensor([[0, 1]]), torch.tensor([[8, 8]]),
                  gt_boxes=[torch.zeros((0, 6), dtype=torch.int64)])
    with pytest.warns(RuntimeWarning, match="without ground-truth regions"):
        out = metric.compute()
    assert math.isnan(out["rbdc"].item()) and math.isnan(out["tbdc"].item())


def test_metric_update_validates_its_inputs():
    metric = RegionTrackDetection()
    heat, index, size = torch.rand(1, 2, 4, 4), torch.tensor([[0, 1]]), torch.tensor([[8, 8]])
    with pytest.raises(ValueError, match="either gt_masks or gt_boxes"):
        metric.update(heat, ["v"], index, size, gt_masks=torch.zeros(1, 2, 8, 8, dtype=torch.bool),
                      gt_boxes=[torch.zeros((0, 6))])
    with pytest.raises(ValueError, match=r"\(B, T, h, w\)"):
        metric.update(heat[0], ["v"], index, size)
    with pytest.raises(ValueError, match="frame_index"):
        metric.update(heat, ["v"], torch.tensor([[0, 1, 2]]), size)
    with pytest.raises(ValueError, match="one \\(n, 6\\) array per sample"):
        metric.update(heat, ["v"], index, size, gt_boxes=[])
    with pytest.raises(ValueError, match="alpha"):
        RegionTrackDetection(alpha=0)
