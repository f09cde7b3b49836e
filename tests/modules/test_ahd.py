"""The AHD module (Eqs. 5–7) and the grid ↔ frame helpers."""

import pytest
import torch
import torch.nn.functional as F

from tvau_lightning.modules.ahd import AnomalyHeatmapDecoder, frame_scores
from tvau_lightning.modules.grid import downsample_masks, downsample_valid, upsample_heatmap


def _features(dims, b=2, t=3, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, w, c, generator=g) for c in dims]


def test_matches_an_independent_per_cell_computation():
    torch.manual_seed(0)
    dims, d = [6, 10], 8
    ahd = AnomalyHeatmapDecoder(dims, d, hidden_dim=7, logit_scale=20.0)
    with torch.no_grad():
        ahd.layer_logits.copy_(torch.tensor([0.3, -0.2]))
    protos = torch.randn(2, d)
    feats = _features(dims)
    out = ahd(feats, protos)
    w = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    b, t, h, x = 1, 2, 3, 4
    fused = torch.zeros(2)
    for i, f in enumerate(feats):
        v = ahd.projections[i](f[b, t, h, x])
        for c in range(2):
            fused[c] += w[i] * F.cosine_similarity(v, protos[c], dim=0)
    assert torch.allclose(out.class_maps[b, t, :, h, x], fused, atol=1e-5)
    p = torch.softmax(20.0 * fused, 0)
    assert torch.allclose(out.heatmap[b, t, h, x], p[1], atol=1e-5)
    assert out.heatmap.shape == (2, 3, 4, 5)
    assert torch.allclose(out.layer_weights.sum(), torch.tensor(1.0))


def test_threshold_free_judgement_and_prototype_scale_invariance():
    ahd = AnomalyHeatmapDecoder([4], 6)
    protos = torch.randn(2, 6)
    feats = _features([4])
    out = ahd(feats, protos)
    assert torch.equal(out.heatmap > 0.5, out.class_maps[:, :, 1] > out.class_maps[:, :, 0])
    assert ((out.heatmap >= 0) & (out.heatmap <= 1)).all()
    out2 = ahd(feats, protos * torch.tensor([[3.0], [0.5]]))  # cosine ignores prototype norms
    assert torch.allclose(out.heatmap, out2.heatmap, atol=1e-6)


def test_stored_prototypes_are_saved_and_required():
    ahd = AnomalyHeatmapDecoder([4], 6)
    with pytest.raises(RuntimeError, match="set_prototypes"):
        ahd(_features([4]))
    protos = torch.randn(2, 6)
    ahd.set_prototypes(protos)
    clone = AnomalyHeatmapDecoder([4], 6)
    clone.load_state_dict(ahd.state_dict())
    assert torch.allclose(clone(_features([4])).heatmap, ahd(_features([4]), protos).heatmap)
    with pytest.raises(ValueError, match="shape"):
        ahd.set_prototypes(torch.zeros(3, 6))


def test_learns_to_separate_a_planted_direction():
    """Cells whose features carry a planted direction are abnormal; a few steps of CE must find them."""
    torch.manual_seed(0)
    c, d = 16, 12
    ahd = AnomalyHeatmapDecoder([c, c], d, logit_scale=10.0)
    protos = torch.randn(2, d)
    direction = torch.randn(c)
    feats = torch.randn(4, 2, 6, 6, c)
    target = torch.zeros(4, 2, 6, 6)
    target[:, :, 1:3, 2:5] = 1
    feats = feats + 3 * target.unsqueeze(-1) * direction
    opt = torch.optim.Adam(ahd.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        out = ahd([feats, feats], protos)
        loss = F.cross_entropy(out.logits.movedim(2, 1), target.long())
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = ahd([feats, feats], protos).heatmap > 0.5
    assert loss.item() < 0.3 * first
    assert (pred == target.bool()).float().mean() > 0.97
    assert ahd.prototypes.grad is None


def test_downsample_masks_pairwise_max_and_area():
    masks = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    masks[0, 1, 0:2, 0:2] = True          # frame 1 → step 0, top-left cell fully covered
    masks[0, 2, 2, 2] = True              # frame 2 → step 1, 1/4 of a cell: below area 0.5
    out = downsample_masks(masks, (2, 2, 2), temporal_factor=2)
    expected = torch.zeros(1, 2, 2, 2)
    expected[0, 0, 0, 0] = 1
    assert torch.equal(out, expected)
    anyhit = downsample_masks(masks, (2, 2, 2), temporal_factor=2, mode="max")
    assert anyhit[0, 1, 1, 1] == 1
    # odd T: the last frame is repeated, as the video processor pads
    odd = downsample_masks(masks[:, :3], (2, 2, 2), temporal_factor=2, mode="max")
    assert odd[0, 1, 1, 1] == 1
    per_frame = downsample_masks(masks, (4, 2, 2), temporal_factor=1)
    assert per_frame[0, 1, 0, 0] == 1 and per_frame.sum() == 1
    with pytest.raises(ValueError, match="grid steps"):
        downsample_masks(masks, (3, 2, 2), temporal_factor=2)


def test_valid_and_upsample_roundtrip():
    valid = torch.tensor([[True, True, True, False, False]])
    assert downsample_valid(valid, temporal_factor=2).tolist() == [[True, True, False]]
    heat = torch.rand(1, 3, 2, 3)
    up = upsample_heatmap(heat, num_frames=5, frame_size=(8, 12), temporal_factor=2)
    assert up.shape == (1, 5, 8, 12)
    # each grid step covers its two frames; a constant map stays constant under bilinear upsampling
    assert torch.equal(up[0, 0], up[0, 1]) and torch.equal(up[0, 2], up[0, 3])
    const = upsample_heatmap(torch.full((1, 1, 2, 2), 0.7), num_frames=1, frame_size=(5, 5), temporal_factor=1)
    assert torch.allclose(const, torch.full_like(const, 0.7))
    assert torch.allclose(frame_scores(up), up.flatten(2).amax(2))
    # bilinear interpolation never exceeds the grid's extremes
    assert frame_scores(up)[0, 0] <= heat[0, 0].max() + 1e-6
