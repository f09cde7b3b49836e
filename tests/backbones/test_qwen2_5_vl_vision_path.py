"""``vision_path: fast`` in the Qwen2.5-VL adapter against ``vision_path: stock`` (tiny random model, CPU, fp32).

The stock path (forward hooks on the transformers tower, un-permuted by the adapter) is the reference: the
fast path must give the same per-layer grids and LLM tokens, leave the module tree alone, stop early when no
tokens are needed, and other families must refuse it with a clear error.
"""

from __future__ import annotations

import pytest
import torch

from tvau_lightning.backbones.qwen2_5_vl_fast import FastQwen2_5VisionTower
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError

FAMILY = "qwen2_5_vl"
TOL = 1e-4


def clips(batch: int, frames: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, *size, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def qwen_dir(tiny_backbone_dir):
    return tiny_backbone_dir(FAMILY)


@pytest.fixture(scope="module")
def stock(qwen_dir):
    return load_backbone(str(qwen_dir), dtype="float32")


@pytest.fixture(scope="module")
def fast(qwen_dir):
    return load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


# 64×96 → 16×24 patches → 8×12 merged units: 2×3 equal windows of 4×4 units (one dense SDPA call);
# 72×104 → 18×26 patches → 9×13 merged units: ragged edge windows (grouped by length).
@pytest.mark.parametrize("size", [(64, 96), (72, 104)], ids=["equal_windows", "ragged_windows"])
def test_fast_path_gives_the_stock_grids_and_tokens(stock, fast, size):
    frames = clips(2, 4, size, seed=1)
    video = stock.preprocess_video(frames)
    layers = list(range(1, stock.num_vision_layers + 1))
    with torch.no_grad():
        ref = stock.encode_video(video, layers)
        out = fast.encode_video(video, layers)
    assert sorted(out.layer_features) == layers
    for i in layers:
        a, b = out.layer_features[i], ref.layer_features[i]
        assert a.shape == b.shape == (2, 2, size[0] // 4, size[1] // 4, stock.vision_hidden_size)
        assert float(b.abs().max()) > 0.5  # not a comparison of near-zero tensors
        assert _max_diff(a, b) < TOL, f"layer {i}"
    assert out.visual_tokens.shape == ref.visual_tokens.shape
    assert _max_diff(out.visual_tokens, ref.visual_tokens) < TOL


def test_fast_path_with_pooled_tokens_and_without_tokens(qwen_dir, stock):
    pooled_stock = load_backbone(str(qwen_dir), dtype="float32", visual_token_pool=2)
    pooled_fast = load_backbone(str(qwen_dir), dtype="float32", visual_token_pool=2, vision_path="fast")
    video = stock.preprocess_video(clips(1, 2, (64, 96), seed=2))
    with torch.no_grad():
        ref = pooled_stock.encode_video(video, [2])
        out = pooled_fast.encode_video(video, [2])
        grids_only = pooled_fast.encode_video(video, [2], visual_tokens=False)
        nothing = pooled_fast.encode_video(video, [], visual_tokens=False)
    assert out.visual_tokens.shape == ref.visual_tokens.shape == (1, 1 * 4 * 6, pooled_stock.text_hidden_size)
    assert _max_diff(out.visual_tokens, ref.visual_tokens) < TOL
    assert grids_only.visual_tokens is None
    assert torch.equal(grids_only.layer_features[2], out.layer_features[2])  # early stop changes nothing before it
    assert nothing.layer_features == {} and nothing.visual_tokens is None


def test_fast_path_stops_after_the_deepest_requested_block(fast):
    """Without LLM tokens, blocks after the deepest requested one and the merger never run."""
    visual = fast.visual
    calls = {i: 0 for i in range(len(visual.blocks))}
    merger_calls = []
    handles = [visual.blocks[i].mlp.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i in calls]
    handles.append(visual.merger.register_forward_hook(lambda *_: merger_calls.append(1)))
    try:
        with torch.no_grad():
            fast.encode_video(fast.preprocess_video(clips(1, 2, (64, 96))), [2], visual_tokens=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == {0: 1, 1: 1, 2: 0, 3: 0} and merger_calls == []


def test_fast_wrapper_stays_out_of_the_module_tree(stock, fast):
    assert isinstance(fast.fast_visual, FastQwen2_5VisionTower)
    assert fast.fast_visual.visual is fast.visual  # the stock module, not a copy
    assert list(fast.state_dict()) == list(stock.state_dict())
    names = [n for n, _ in fast.named_parameters()]
    assert names == [n for n, _ in stock.named_parameters()]
    assert len({id(p) for p in fast.parameters()}) == len(names)  # every weight once
    assert not any("fast" in n for n, _ in fast.named_modules())
    # the wrapper follows the stock module's parameters (a weight edit is seen by both paths)
    assert fast.fast_visual.visual.blocks[0].attn.qkv.weight is fast.visual.blocks[0].attn.qkv.weight


def test_fast_path_follows_a_replaced_tower(qwen_dir):
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")
    first = adapter.fast_visual
    adapter.core.visual = load_backbone(str(qwen_dir), dtype="float32").visual
    assert adapter.fast_visual is not first and adapter.fast_visual.visual is adapter.visual


def test_compile_flag_reaches_the_fast_tower(qwen_dir):
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast", compile_vision=True)
    assert adapter.fast_visual.compile is True
    plain = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")
    assert plain.fast_visual.compile is False


def test_vision_only_fast_path_equals_the_full_model_stock_path(qwen_dir, stock):
    vision_fast = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast", vision_only=True)
    video = stock.preprocess_video(clips(1, 4, (64, 96), seed=4))
    with torch.no_grad():
        ref = stock.encode_video(video, [1, 4])
        out = vision_fast.encode_video(video, [1, 4])
    for i in (1, 4):
        assert _max_diff(out.layer_features[i], ref.layer_features[i]) < TOL
    assert _max_diff(out.visual_tokens, ref.visual_tokens) < TOL


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("other", ["internvl", "llava", "llava_next"])
def test_families_without_a_fast_path_refuse_it(tiny_backbone_dir, other):
    with pytest.raises(BackboneError, match=r"vision_path 'fast' is not available.*vision_path: stock"):
        load_backbone(str(tiny_backbone_dir(other)), dtype="float32", vision_path="fast")


def test_unknown_vision_path_and_compile_without_fast_path(qwen_dir):
    with pytest.raises(BackboneError, match=r"'turbo'.*'stock', 'fast'"):
        load_backbone(BackboneConfig(path=str(qwen_dir), vision_path="turbo"))
    with pytest.raises(BackboneError, match="compile_vision: true needs `vision_path: fast`"):
        load_backbone(str(qwen_dir), dtype="float32", compile_vision=True)
