"""The RAE module (Eqs. 8–12): token layout, markers, motion input, region locality, gradients."""

import pytest
import torch

from tvau_lightning.modules.rae import RegionAwareAnomalyEncoder


def _rae(d=16):
    torch.manual_seed(0)
    return RegionAwareAnomalyEncoder(d, hidden_channels=8, num_conv_layers=2)


def test_layout_and_markers():
    rae = _rae()
    maps = torch.rand(2, 5, 2, 9, 9)
    out = rae(maps)
    k = rae.num_prompt_tokens(5)
    assert k == 4 * 20 + 2 and rae.tokens_per_step == 20
    assert out.shape == (2, k, 16)
    assert torch.equal(out[:, 0], rae.marker_start.expand(2, -1))
    assert torch.equal(out[:, -1], rae.marker_end.expand(2, -1))
    body = rae.encode(maps)
    assert body.shape == (2, 4, 20, 16)
    # base prompts are the first 10 tokens of every step, shared across time and samples
    assert torch.allclose(body[:, :, :10], rae.base_prompts.expand(2, 4, -1, -1))
    assert torch.allclose(out[:, 1:-1], body.reshape(2, -1, 16) + rae.marker_slot)


def test_reads_motion_not_static_content():
    rae = _rae()
    a = torch.rand(1, 1, 2, 9, 9).expand(1, 4, 2, 9, 9)
    b = torch.rand(1, 1, 2, 9, 9).expand(1, 4, 2, 9, 9)
    # static heatmaps have zero temporal difference, whatever their content
    assert torch.allclose(rae(a), rae(b))
    moving = a.clone()
    moving[:, 2] += 0.5
    assert not torch.allclose(rae(moving), rae(a))


def test_region_prompts_are_local():
    rae = _rae()  # two 3x3 convs: receptive field 5x5
    maps = torch.zeros(1, 3, 2, 12, 12)
    changed = maps.clone()
    changed[:, 1, :, 0:2, 0:2] = 1.0  # a change in the top-left corner only
    p0, p1 = rae.encode(maps), rae.encode(changed)
    region = slice(10, 19)
    diff = (p0[:, :, region] - p1[:, :, region]).abs().amax(dim=(0, 1, 3))
    assert diff[0] > 0            # top-left region token changes
    assert diff[8] == 0           # bottom-right region token is out of reach
    assert (p0[:, :, 19] != p1[:, :, 19]).any()  # the global token sees it


def test_errors_and_gradients():
    rae = _rae()
    with pytest.raises(ValueError, match="at least 2"):
        rae(torch.rand(1, 1, 2, 4, 4))
    with pytest.raises(ValueError, match="at least 2"):
        rae.num_prompt_tokens(1)
    with pytest.raises(ValueError, match=r"\(B, T', C, H', W'\)"):
        rae(torch.rand(2, 2, 4, 4))
    rae(torch.rand(1, 3, 2, 6, 6)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rae.parameters())
