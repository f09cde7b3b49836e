"""Frame AP equals scikit-learn's average_precision_score (and auc(recall, precision) for the trapezoid form)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

from tvau_lightning.metrics.frame_ap import FrameAveragePrecision
from tvau_lightning.metrics.functional.frame_ap import frame_average_precision


def test_hand_worked_value():
    # ranks: TP (P=1, R=.5), FP, TP (P=2/3, R=1), FP → AP = .5 * 1 + .5 * 2/3
    assert frame_average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 1 / 3)


@pytest.mark.parametrize("seed", range(6))
def test_equals_sklearn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.random(n) < rng.uniform(0.05, 0.6)
    labels[0] = True
    scores = rng.random(n) + 0.3 * labels
    if seed % 2:  # heavy ties
        scores = np.round(scores, 1)
    assert frame_average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    precision, recall, _ = precision_recall_curve(labels, scores)
    assert frame_average_precision(scores, labels, "trapezoid") == pytest.approx(auc(recall, precision), abs=1e-12)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="none of the 3 frames is abnormal"):
        frame_average_precision([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        frame_average_precision([0.1, 0.2], [0, 1, 0])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        frame_average_precision([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        frame_average_precision([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="interpolation"):
        frame_average_precision([0.1, 0.2], [0, 1], "eleven_point")


def test_metric_counts_each_frame_once_and_ignores_padding():
    rng = np.random.default_rng(3)
    scores = {v: rng.random(10) for v in ("a", "b")}
    labels = {"a": (np.arange(10) >= 6).astype(np.int64), "b": np.zeros(10, dtype=np.int64)}
    labels["b"][2:4] = 1
    metric = FrameAveragePrecision()
    for v in ("a", "b"):
        for start in (0, 4, 8, 4):  # clip 4..7 arrives twice (DistributedSampler padding); the last is padded
            index = np.arange(start, start + 4)
            index[index >= 10] = -1
            safe = np.maximum(index, 0)
            metric.update(torch.tensor(scores[v][safe])[None], torch.tensor(labels[v][safe])[None], [v],
                          torch.tensor(index)[None])
    expected = average_precision_score(np.r_[labels["a"], labels["b"]], np.r_[scores["a"], scores["b"]])
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-6)
    assert metric.log_name == "frame_ap" and FrameAveragePrecision("trapezoid").log_name == "frame_ap_trapezoid"


def test_metric_without_abnormal_frames_warns_and_returns_nan():
    metric = FrameAveragePrecision()
    metric.update(torch.rand(1, 4), torch.zeros(1, 4, dtype=torch.long), ["n"], torch.arange(4)[None])
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert torch.isnan(metric.compute())
