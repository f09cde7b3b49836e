"""Fine-grained mAP@tIoU against hand-worked cases (VadCLIP's protocol, docs/datasets_weak.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tvau_lightning.metrics.functional.temporal_map import (
    class_average_precision,
    score_segments,
    segments_from_frame_categories,
    temporal_iou,
    temporal_map,
)
from tvau_lightning.metrics.temporal_map import TemporalMAP


def _two_videos() -> tuple[dict, dict]:
    """Video A: one exact proposal (score .8 + .7·.8 = 1.36) and a 1-frame spike (too short). Video B: a wrong
    proposal [0, 6) (1 + .7 = 1.7) and [22, 26) (.5 + .7 = 1.2) against GT [20, 30) — tIoU 0.4."""
    a = np.zeros((32, 3))
    a[4:12, 1] = 0.8
    a[20, 1] = 0.8
    b = np.zeros((32, 3))
    b[0:6, 1] = 1.0
    b[22:26, 1] = 0.5
    return {"A": a, "B": b}, {"A": [(1, 4, 12)], "B": [(1, 20, 30)]}


def test_tiou_of_frame_ranges():
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 4), (4, 8)) == 0.0
    assert temporal_iou((20, 30), (22, 26)) == pytest.approx(0.4)


def test_proposals_follow_the_threshold_rule():
    scores, _ = _two_videos()
    # A: θ = .8 − .6·.8 = .32; runs [4, 12) and [20, 21) — the latter shorter than 2 frames is dropped
    assert score_segments(scores["A"][:, 1]) == [(4, 12, pytest.approx(0.8 + 0.7 * 0.8))]
    assert score_segments(scores["B"][:, 1]) == [(0, 6, pytest.approx(1.7)), (22, 26, pytest.approx(1.2))]
    assert score_segments(np.full(10, 0.5)) == []  # constant scores: nothing exceeds θ = max


def test_hand_worked_map_at_each_threshold():
    scores, truth = _two_videos()
    result = temporal_map(scores, truth)
    # ranking: B[0,6) FP, A[4,12) TP, B[22,26) TP at tIoU ≤ .4 → AP = (1/2 + 2/3) / 2; at .5 it is a FP → (1/2) / 2
    low, high = (0.5 + 2 / 3) / 2, 0.25
    np.testing.assert_allclose(result.map, [low, low, low, low, high])
    assert result.average == pytest.approx((4 * low + high) / 5)
    assert result.classes == (1,) and result.num_videos == 2  # class 2 has no ground truth: not averaged
    assert result.as_dict()["map@0.5"] == pytest.approx(high)


def test_greedy_matching_takes_the_best_tiou_and_uses_each_gt_once():
    gt = [("v", 0, 10), ("v", 12, 20)]
    # the first proposal overlaps both GTs and takes the better one (12..20, tIoU 6/10 vs 2/10) …
    proposals = [("v", 8, 18, 0.9), ("v", 12, 20, 0.8), ("v", 0, 10, 0.7)]
    # … so the exact second proposal finds its GT gone (FP), the third matches: TP, FP, TP → (1 + 2/3) / 2
    assert class_average_precision(proposals, gt, 0.5) == pytest.approx((1 + 2 / 3) / 2)
    assert class_average_precision(proposals, gt, 0.7) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert class_average_precision([], gt, 0.1) == 0.0


def test_abnormal_videos_only_unless_include_normal():
    scores, truth = _two_videos()
    normal = np.zeros((16, 3))
    normal[1:, 0] = 0.9  # normal-class scores: proposal [1, 16) vs the whole video [0, 16), tIoU 15/16
    normal[3:9, 1] = 1.0  # a false alarm of class 1 (score 1.7) — ignored unless normal videos are evaluated
    scores["N"], truth["N"] = normal, []
    default = temporal_map(scores, truth)
    assert default.num_videos == 2 and default.classes == (1,)
    published = temporal_map(scores, truth, include_normal=True)
    assert published.classes == (0, 1) and published.num_videos == 3
    # class 0: one TP → 1. class 1 gains N's false alarm tied with B's at 1.7 (A/B order: stable) → FP FP TP TP
    ap1_low = (1 / 3 + 2 / 4) / 2
    np.testing.assert_allclose(published.ap[0], [1.0, ap1_low])


def test_errors():
    scores, truth = _two_videos()
    with pytest.raises(ValueError, match="videos differ"):
        temporal_map(scores, {"A": truth["A"]})
    with pytest.raises(ValueError, match="segment classes"):
        temporal_map(scores, {"A": [(3, 0, 4)], "B": []})
    with pytest.raises(ValueError, match="no evaluated video"):
        temporal_map(scores, {"A": [], "B": []})


def test_segments_from_frame_categories():
    cats = np.zeros((10, 3), dtype=bool)
    cats[:, 0] = True
    cats[2:5, 1], cats[4:7, 2], cats[8:10, 1] = True, True, True
    assert segments_from_frame_categories(cats) == [(1, 2, 5), (2, 4, 7), (1, 8, 10)]


def test_metric_equals_functional_over_padded_repeated_clips():
    scores, truth = _two_videos()
    metric = TemporalMAP(num_classes=3)
    for video, s in scores.items():
        cats = np.zeros((32, 3), dtype=bool)
        for c, a, b in truth[video]:
            cats[a:b, c] = True
        cats[~cats[:, 1:].any(axis=1), 0] = True
        for start in (24, 0, 8, 16, 8, 30):  # out of order, one repeated, the last padded
            index = np.arange(start, start + 8)
            index[index >= 32] = -1
            safe = np.maximum(index, 0)
            metric.update(torch.tensor(s[safe])[None], torch.tensor(cats[safe])[None], [video],
                          torch.tensor(index)[None])
    got = metric.compute()
    expected = temporal_map(scores, truth).as_dict()
    assert got.keys() - {"category_accuracy"} == expected.keys()
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(value, abs=1e-6), key


def test_metric_rejects_bad_shapes_and_warns_without_anomalies():
    metric = TemporalMAP(num_classes=3)
    with pytest.raises(ValueError, match=r"\(B, T, K\)"):
        metric.update(torch.rand(1, 4, 2), torch.zeros(1, 4, 3, dtype=torch.bool), ["a"], torch.arange(4)[None])
    cats = torch.zeros(1, 4, 3, dtype=torch.bool)
    cats[..., 0] = True
    metric.update(torch.rand(1, 4, 3), cats, ["n"], torch.arange(4)[None])
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert all(torch.isnan(v) for v in metric.compute().values())  # category accuracy too: no abnormal frame
    with pytest.raises(ValueError, match="num_classes"):
        TemporalMAP(num_classes=1)


def test_category_accuracy_counts_each_anomalous_frame_once():
    """Frames 1–3 are anomalous (categories 1, 2, 2); the argmax over anomaly classes is right on frames 1 and 2,
    wrong on 3 → 2/3. Frame 3 arrives twice (overlapping clips) and still counts once; frame 0 is normal."""
    cats = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.bool)
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.0, 0.9, 0.1], [0.0, 0.2, 0.7], [0.0, 0.6, 0.3]])
    metric = TemporalMAP(num_classes=3)
    metric.update(scores[None], cats[None], ["v"], torch.arange(4)[None])
    metric.update(scores[None, 3:], cats[None, 3:], ["v"], torch.tensor([[3]]))
    assert float(metric.compute()["category_accuracy"]) == pytest.approx(2 / 3)
