"""Records read back from the metric states, and the bootstrap over videos, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tvau_lightning.evaluation import (
    METRIC_NAMES,
    VideoResampler,
    bootstrap_metrics,
    records_from_metrics,
    summarize,
)
from tvau_lightning.metrics import MacroAUROC, MicroAUROC, RegionTrackDetection, video_hash
from tvau_lightning.metrics.functional import rbdc_tbdc_curves

T, GRID, SIZE = 24, (12, 18), (120, 180)  # frames per video, heatmap grid, original (H, W): 10-px cells


def _video(rng: np.random.Generator, abnormal: bool, quality: float):
    """One video: frame labels, scores, a heatmap clip and its GT boxes (one track of a moving 3×2-cell box)."""
    labels = np.zeros(T, dtype=np.int64)
    heat = rng.uniform(0.0, 0.45, (T, *GRID))
    boxes = []
    if abnormal:
        start, stop = sorted(rng.choice(np.arange(2, T - 2), 2, replace=False))
        labels[start:stop + 1] = 1
        for f in range(start, stop + 1):
            r, c = 2 + f % 5, 3 + f % 7
            boxes.append((f, 0, c * 10, r * 10, (c + 3) * 10 - 1, (r + 2) * 10 - 1))
            if rng.random() < quality:  # a hit on the object
                heat[f, r:r + 2, c:c + 3] = rng.uniform(0.6, 1.0)
    for f in rng.choice(T, 3, replace=False):  # false-positive blobs
        heat[f, 9:11, 14:16] = rng.uniform(0.55, 0.9)
    scores = rng.normal(0, 1, T) + 1.5 * labels * quality
    return labels, scores, heat, np.array(boxes, dtype=np.float64).reshape(-1, 6)


@pytest.fixture(scope="module")
def filled():
    """Micro/macro/region metrics updated with 7 videos (5 abnormal) in clips of 8 frames, one clip repeated
    with different scores (as DistributedSampler does: the first occurrence must win), plus the raw data."""
    rng = np.random.default_rng(0)
    micro, macro, regions = MicroAUROC(), MacroAUROC(pad=True), RegionTrackDetection()
    data = {}
    for k in range(7):
        name = f"video_{k}"
        labels, scores, heat, boxes = _video(rng, abnormal=k < 5, quality=[0.9, 0.7, 0.5, 0.8, 0.3, 0, 0][k])
        data[name] = (labels, scores, heat, boxes)
        for start in range(0, T, 8):
            idx = np.arange(start, start + 8)
            gt = boxes[(boxes[:, 0] >= start) & (boxes[:, 0] < start + 8)]
            args = (torch.tensor(scores[idx])[None], torch.tensor(labels[idx])[None], [name], torch.tensor(idx)[None])
            micro.update(*args)
            macro.update(*args)
            regions.update(torch.tensor(heat[idx])[None], [name], torch.tensor(idx)[None], torch.tensor([SIZE]),
                           gt_boxes=[gt])
    # a repeated clip of video_0 with other scores and an extra blob: must be ignored everywhere
    idx = np.arange(8)
    noise = torch.tensor(rng.normal(0, 5, 8))[None]
    micro.update(noise, torch.tensor(data["video_0"][0][idx])[None], ["video_0"], torch.tensor(idx)[None])
    extra = data["video_0"][2][idx].copy()
    extra[:, 0:2, 0:2] = 0.99
    regions.update(torch.tensor(extra)[None], ["video_0"], torch.tensor(idx)[None], torch.tensor([SIZE]),
                   gt_boxes=[np.zeros((0, 6))])
    names = {video_hash(v): v for v in data}
    records = records_from_metrics(micro, regions, names, macro_pad=True)
    return {"micro": micro, "macro": macro, "regions": regions, "data": data, "records": records}


def test_records_are_the_metric_rows_deduplicated_and_named(filled):
    r, data = filled["records"], filled["data"]
    assert r.videos == sorted(data)
    assert r.frame_video.size == 7 * T and (r.frames_seen == T).all()
    for code, name in enumerate(r.videos):
        mine = r.frame_video == code
        np.testing.assert_array_equal(r.frame_index[mine], np.arange(T))
        np.testing.assert_allclose(r.frame_score[mine], data[name][1])  # first occurrence, not the repeat
        np.testing.assert_array_equal(r.frame_label[mine], data[name][0].astype(bool))
        assert (r.gt_video == code).sum() == len(data[name][3])
    # the repeated clip's extra top-left blob is gone
    assert not ((r.det_box[:, 0] == 0) & (r.det_box[:, 1] == 0)).any()


def test_point_estimates_equal_the_metrics_compute(filled):
    estimates = bootstrap_metrics(filled["records"], num_resamples=0)
    regions = filled["regions"].compute()
    assert estimates["micro_auc"].value == pytest.approx(float(filled["micro"].compute()), abs=1e-6)
    assert estimates["macro_auc"].value == pytest.approx(float(filled["macro"].compute()), abs=1e-6)
    assert estimates["rbdc"].value == pytest.approx(float(regions["rbdc"]), abs=1e-6)
    assert estimates["tbdc"].value == pytest.approx(float(regions["tbdc"]), abs=1e-6)
    assert all(estimates[m].ci_low is None and estimates[m].valid_resamples == 0 for m in METRIC_NAMES)


def _padded_auc(labels, scores):
    """UBnormal's padded per-video AUC: a normal frame below and an abnormal frame above every real score."""
    return roc_auc_score(np.r_[labels, 0, 1], np.r_[scores, scores.min() - 1, scores.max() + 1])


def _naive_resample(data, sample):
    """Every metric of a multiset of videos, from the raw data, via sklearn and the dict-based RBDC API."""
    scores = np.concatenate([data[v][1] for v in sample])
    labels = np.concatenate([data[v][0] for v in sample])
    micro = roc_auc_score(labels, scores) if 0 < labels.sum() < len(labels) else np.nan
    padded = [_padded_auc(data[v][0], data[v][1]) for v in sample]
    gt, dets = {}, {}
    from tvau_lightning.metrics.regions import heatmap_to_detections

    for p, v in enumerate(sample):  # a video drawn twice is two videos
        boxes = data[v][3]
        gt[f"{v}#{p}"] = [boxes[:, [0, 2, 3, 4, 5]]] if len(boxes) else []
        dets[f"{v}#{p}"] = heatmap_to_detections(data[v][2], np.arange(T), SIZE)
    if any(len(t) for t in gt.values()):
        curves = rbdc_tbdc_curves(gt, dets, num_frames=T * len(sample))
        rbdc, tbdc = curves.rbdc, curves.tbdc
    else:
        rbdc = tbdc = np.nan
    return [micro, float(np.mean(padded)), rbdc, tbdc]


def test_bootstrap_matches_an_independent_resampling(filled):
    records, data = filled["records"], filled["data"]
    n, seed = 60, 11
    estimates = bootstrap_metrics(records, num_resamples=n, seed=seed)
    draws = np.random.default_rng(seed).integers(0, records.num_videos, size=(n, records.num_videos))
    values = np.array([_naive_resample(data, [records.videos[i] for i in row]) for row in draws])
    for k, name in enumerate(METRIC_NAMES):
        valid = values[:, k][np.isfinite(values[:, k])]
        low, high = np.quantile(valid, [0.025, 0.975])
        e = estimates[name]
        assert e.valid_resamples == len(valid), name
        assert (e.ci_low, e.ci_high) == pytest.approx((low, high), abs=1e-9), name
        assert e.ci_low <= e.value <= e.ci_high, name
        assert e.ci_high - e.ci_low > 0.01, name  # videos of different quality: a real spread


def test_bootstrap_is_seeded(filled):
    records = filled["records"]
    a = bootstrap_metrics(records, num_resamples=40, seed=3)
    b = bootstrap_metrics(records, num_resamples=40, seed=3)
    c = bootstrap_metrics(records, num_resamples=40, seed=4)
    assert {m: a[m].to_json() for m in a} == {m: b[m].to_json() for m in b}
    assert any(a[m].to_json() != c[m].to_json() for m in a)


def test_per_video_rows_and_operating_point(filled):
    summary = summarize(filled["records"], num_resamples=0)
    data = filled["data"]
    rows = {row["video"]: row for row in summary.per_video}
    resampler = VideoResampler(filled["records"])
    for name, (labels, scores, _, boxes) in data.items():
        row = rows[name]
        assert row["frames"] == T and row["abnormal_frames"] == labels.sum()
        if 0 < labels.sum() < T:
            assert row["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        else:
            assert row["auc"] is None
        assert row["auc_padded"] == pytest.approx(_padded_auc(labels, scores), abs=1e-12)
        assert row["gt_regions"] == len(boxes) and row["gt_tracks"] == (1 if len(boxes) else 0)
    # summed over videos, the detected counts are the sweep's last RBDR/TBDR
    curves = summary.regions
    assert sum(r["detected_regions"] for r in rows.values()) == round(curves.rbdr[-1] * curves.num_regions)
    assert sum(r["detected_tracks"] for r in rows.values()) == round(curves.tbdr[-1] * curves.num_tracks)
    assert summary.operating_threshold == np.nanmin(curves.thresholds[np.isfinite(curves.thresholds)])
    assert np.nanmean(resampler.macro_terms) == pytest.approx(summary.metrics["macro_auc"].value)
