"""The grid ↔ frame mapping (modules/grid.py) and the unsaturated AHD scores (AHDOutput.scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from tvau_lightning.metrics.functional import macro_auroc, micro_auroc
from tvau_lightning.modules.ahd import AnomalyHeatmapDecoder, frame_scores
from tvau_lightning.modules.grid import (
    downsample_masks,
    num_grid_steps,
    pad_last,
    pad_to_multiple,
    step_frames,
    steps_to_frames,
    upsample_heatmap,
    upsample_scores,
)

# ---------------------------------------------------------------------------------------------- grid ↔ frames


def test_padding_repeats_the_last_entry():
    x = torch.arange(3).reshape(3, 1)
    assert pad_last(x, 5).flatten().tolist() == [0, 1, 2, 2, 2]
    assert pad_to_multiple(torch.arange(5)[None], 2).tolist() == [[0, 1, 2, 3, 4, 4]]
    assert pad_last(x, 3) is x
    with pytest.raises(ValueError, match="down to"):
        pad_last(x, 2)


def test_steps_and_frames_agree():
    assert num_grid_steps(7, 2) == 4 and num_grid_steps(8, 2) == 4 and num_grid_steps(5, 1) == 5
    assert list(step_frames(3, 2, num_frames=7)) == [6] and list(step_frames(1, 2)) == [2, 3]
    grid = torch.tensor([[10.0, 20.0, 30.0, 40.0]])  # (B, T')
    assert steps_to_frames(grid, temporal_factor=2, num_frames=7).tolist() == [[10, 10, 20, 20, 30, 30, 40]]
    for step in range(4):  # every frame a step covers carries that step's value
        frames = steps_to_frames(grid, temporal_factor=2, num_frames=7)[0]
        assert all(frames[f] == grid[0, step] for f in step_frames(step, 2, num_frames=7))
    with pytest.raises(ValueError, match="cover fewer"):
        steps_to_frames(grid, temporal_factor=2, num_frames=9)


def test_a_one_cell_object_survives_the_default_mask_targets():
    """A small UBnormal actor (smaller than half a 14-px cell) must stay in the grid targets."""
    masks = torch.zeros(1, 2, 56, 56)
    masks[:, :, 17:22, 31:36] = 1  # a 5×5 object inside cell (1, 2) of a 4×4 grid of 14-px cells
    kept = downsample_masks(masks, (1, 4, 4), temporal_factor=2, mode="max")
    assert kept.sum() == 1 and kept[0, 0, 1, 2] == 1
    assert downsample_masks(masks, (1, 4, 4), temporal_factor=2, mode="area").sum() == 0  # what `area` loses


# ---------------------------------------------------------------------------------------------- unsaturated scores


def _decoder_on_angles(angles_deg: list[float]) -> tuple[AnomalyHeatmapDecoder, torch.Tensor]:
    """A 1-layer AHD whose projection is the identity, prototypes e0 (normal) and e1 (abnormal), and one frame per
    angle θ whose cells all have the feature (cos θ, sin θ): the logit gap is 100·(sin θ − cos θ) exactly."""
    dim = 4
    ahd = AnomalyHeatmapDecoder([dim], dim, hidden_dim=dim, logit_scale=100.0)
    with torch.no_grad():
        for layer in (ahd.projections[0][0], ahd.projections[0][2]):
            layer.weight.copy_(torch.eye(dim))
            layer.bias.zero_()
    ahd.projections[0][1] = nn.Identity()  # drop the GELU: the projection is exactly the identity
    ahd.set_prototypes(torch.eye(dim)[:2])
    theta = torch.tensor(angles_deg) * math.pi / 180
    cells = torch.stack([theta.cos(), theta.sin(), torch.zeros_like(theta), torch.zeros_like(theta)], -1)
    features = cells[None, :, None, None, :].expand(1, len(angles_deg), 2, 3, dim).contiguous()  # (1, T', 2, 3, D)
    return ahd, features


ANGLES = [30.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0]


@pytest.mark.parametrize("autocast", [False, True])
def test_saturated_heatmaps_still_give_distinct_ordered_frame_scores(autocast):
    ahd, features = _decoder_on_angles(ANGLES)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.no_grad():
        out = ahd([features.to(torch.bfloat16) if autocast else features])
    assert out.scores.dtype == torch.float32 and out.class_maps.dtype == torch.float32
    heat = upsample_heatmap(out.heatmap, num_frames=len(ANGLES), frame_size=(8, 12), temporal_factor=1)
    by_heatmap = frame_scores(heat)[0]
    assert (by_heatmap[2:] == 1.0).all(), "the case must saturate the softmax (otherwise it tests nothing)"
    scores = frame_scores(upsample_scores(out.scores, num_frames=len(ANGLES), frame_size=(8, 12),
                                          temporal_factor=1))[0]
    assert torch.all(scores[1:] > scores[:-1]), scores  # distinct and in the order of θ
    expected = 100 * (torch.tensor(ANGLES) * math.pi / 180).sin() - 100 * (torch.tensor(ANGLES) * math.pi / 180).cos()
    np.testing.assert_allclose(scores.numpy(), expected.numpy(), rtol=0.02 if autocast else 1e-5, atol=0.5 if autocast else 1e-3)
    assert torch.equal(out.scores > 0, out.heatmap > 0.5)  # the same region rule on either scale


def test_micro_auc_of_saturated_frames_equals_sklearn_on_the_unsaturated_scores():
    angles = ANGLES * 3
    labels = np.array([int(a in (60.0, 70.0, 80.0, 85.0)) for a in angles])  # normal frames saturate too
    ahd, features = _decoder_on_angles(angles)
    with torch.no_grad():
        out = ahd([features])
    scores = frame_scores(upsample_scores(out.scores, num_frames=len(angles), frame_size=(4, 6),
                                          temporal_factor=1))[0].numpy()
    probs = frame_scores(upsample_heatmap(out.heatmap, num_frames=len(angles), frame_size=(4, 6),
                                          temporal_factor=1))[0].numpy()
    assert micro_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert micro_auroc(probs, labels) < micro_auroc(scores, labels)  # what the saturated ranking loses


def test_macro_auc_padding_matches_the_authors_formula_where_nothing_saturates():
    """UBnormal pads each video with a normal frame scored 0 and an abnormal one scored 1 on the probability
    scale; with logit-gap scores the pads sit at ∓∞, which must give the same number."""
    rng = np.random.default_rng(0)
    scores, labels = {}, {}
    for v in range(6):
        n = 20
        labels[f"v{v}"] = (rng.random(n) < 0.3).astype(int) if v % 3 else np.zeros(n, dtype=int)  # some single-class
        scores[f"v{v}"] = rng.normal(0, 4, n) + 3 * labels[f"v{v}"]
    ours = macro_auroc(scores, labels, pad=True)
    authors = np.mean([roc_auc_score(np.r_[labels[v], 0, 1], np.r_[1 / (1 + np.exp(-scores[v])), 0.0, 1.0])
                       for v in scores])
    assert ours == pytest.approx(authors, abs=1e-12)
