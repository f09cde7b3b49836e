"""Frame AUROC (micro, macro padded/unpadded): functional vs scikit-learn, metric classes vs functional."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tvau_lightning.metrics import MacroAUROC, MicroAUROC
from tvau_lightning.metrics.functional import macro_auroc, micro_auroc


def _videos(seed: int, with_single_class: bool = True):
    rng = np.random.default_rng(seed)
    scores, labels = {}, {}
    for v in range(6):
        n = int(rng.integers(5, 40))
        y = rng.random(n) < 0.4
        if with_single_class and v == 1:
            y[:] = False
        if with_single_class and v == 2:
            y[:] = True
        scores[f"scene_{v}"] = np.round(rng.random(n) + 0.5 * y, 1) / 1.5  # coarse: many ties
        labels[f"scene_{v}"] = y.astype(np.int64)
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_micro_auroc_matches_sklearn_with_ties(seed):
    scores, labels = _videos(seed)
    s, y = np.concatenate(list(scores.values())), np.concatenate(list(labels.values()))
    assert micro_auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert micro_auroc(torch.from_numpy(s).float(), torch.from_numpy(y)) == pytest.approx(
        roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_macro_auroc_padded_and_unpadded_match_sklearn(seed):
    scores, labels = _videos(seed)
    padded = np.mean([roc_auc_score(np.r_[labels[v], 0, 1], np.r_[scores[v], 0.0, 1.0]) for v in scores])
    assert macro_auroc(scores, labels) == pytest.approx(padded, abs=1e-12)
    two_class = [v for v in scores if 0 < labels[v].sum() < len(labels[v])]
    unpadded = np.mean([roc_auc_score(labels[v], scores[v]) for v in two_class])
    with pytest.warns(RuntimeWarning, match=f"skipped {6 - len(two_class)} of 6"):
        assert macro_auroc(scores, labels, pad=False) == pytest.approx(unpadded, abs=1e-12)


def test_auroc_errors_name_the_problem():
    with pytest.raises(ValueError, match="all 3 frames have label 0"):
        micro_auroc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="0/1"):
        micro_auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        micro_auroc([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        micro_auroc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="all 1 videos have a single class"):
        macro_auroc({"a": [0.1, 0.2]}, {"a": [1, 1]}, pad=False)
    with pytest.raises(ValueError, match="only in scores: \\['b'\\]"):
        macro_auroc({"a": [0.1], "b": [0.2]}, {"a": [1]})
    # padding makes a single-class video count: all-normal frames scored below 1 -> AUC 1 with the pads
    assert macro_auroc({"a": [0.1, 0.2]}, {"a": [0, 0]}) == 1.0


def _clip_batches(scores, labels, clip_len=8, batch=2):
    """Split videos into padded clips (frame_index -1 on padding) and group them into batches."""
    clips = []
    for v in scores:
        n = len(scores[v])
        for start in range(0, n, clip_len):
            idx = np.arange(start, start + clip_len)
            real = idx < n
            safe = np.minimum(idx, n - 1)
            clips.append((v, np.where(real, idx, -1), scores[v][safe], labels[v][safe]))
    for i in range(0, len(clips), batch):
        group = clips[i:i + batch]
        yield (torch.tensor(np.stack([c[2] for c in group]), dtype=torch.float32),
               torch.tensor(np.stack([c[3] for c in group])),
               [c[0] for c in group],
               torch.tensor(np.stack([c[1] for c in group])))


def test_metrics_over_padded_clips_with_a_repeated_batch_equal_the_functional():
    scores, labels = _videos(11)
    scores32 = {v: s.astype(np.float32) for v, s in scores.items()}
    micro, macro, unpadded = MicroAUROC(), MacroAUROC(), MacroAUROC(pad=False)
    batches = list(_clip_batches(scores32, labels))
    for batch in [*batches, batches[0], batches[-1]]:  # DistributedSampler-style repeats count once
        for m in (micro, macro, unpadded):
            m.update(*batch)
    s, y = np.concatenate(list(scores32.values())), np.concatenate(list(labels.values()))
    assert micro.compute().item() == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert macro.compute().item() == pytest.approx(macro_auroc(scores32, labels), abs=1e-6)
    with pytest.warns(RuntimeWarning, match="skipped 2 of 6"):
        assert unpadded.compute().item() == pytest.approx(macro_auroc(scores32, labels, pad=False), abs=1e-6)
    assert (macro.log_name, unpadded.log_name, micro.log_name) == ("macro_auc_padded", "macro_auc_unpadded", "micro_auc")


def test_metrics_return_nan_when_undefined_and_accept_one_frame_per_sample():
    micro, unpadded = MicroAUROC(), MacroAUROC(pad=False)
    for m in (micro, unpadded):
        m.update(torch.tensor([0.2, 0.4]), torch.tensor([0, 0]), ["a", "b"], torch.tensor([0, 0]))
    with pytest.warns(RuntimeWarning, match="single class"):
        assert math.isnan(micro.compute().item())
    with pytest.warns(RuntimeWarning, match="single class"):
        assert math.isnan(unpadded.compute().item())


def test_metric_update_validates_shapes_and_labels():
    m = MicroAUROC()
    with pytest.raises(ValueError, match="same shape"):
        m.update(torch.rand(1, 3), torch.zeros(1, 2), ["a"], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="B = 2"):
        m.update(torch.rand(1, 3), torch.zeros(1, 3), ["a", "b"], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="0/1"):
        m.update(torch.rand(1, 2), torch.tensor([[0, 3]]), ["a"], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="0/1"):
        m.update(torch.rand(1, 2), torch.tensor([[0.0, 0.5]]), ["a"], torch.zeros(1, 2))
    # labels on padding frames are ignored, whatever they hold
    m.update(torch.rand(1, 2), torch.tensor([[1, 7]]), ["a"], torch.tensor([[0, -1]]))
