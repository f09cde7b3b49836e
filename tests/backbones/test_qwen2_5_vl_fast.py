"""The fast Qwen2.5-VL vision path against the stock transformers tower (tiny random configs, CPU, fp32)."""

from __future__ import annotations

import time

import pytest
import torch
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

from tvau_lightning.backbones.qwen2_5_vl_fast import (
    AttentionLayout,
    FastQwen2_5VisionTower,
    build_window_plan,
    window_order_to_grids,
)

PATCH = 4
WINDOW = 16  # pixels → 16 / 2 / 4 = 2 merged units per window side = 4×4 patches = 16 tokens
DEPTH = 4
FULLATT = [1]  # block 2 (1-based) is a full-attention block
TOL = 1e-4

# Patch grids (t, h, w); h, w in patches. 8×12 patches = 4×6 merged units = 2×3 windows of 2×2 units.
EQUAL = [[2, 8, 12]]
EQUAL_BATCH = [[2, 8, 8], [2, 8, 8]]
RAGGED = [[2, 10, 14]]  # 5×7 merged units: edge windows of 2×1, 1×2 and 1×1 units
MIXED = [[2, 8, 12], [1, 10, 6]]  # two videos, different grids (the second one ragged)


def tiny_tower(attn_implementation: str = "sdpa", seed: int = 0) -> Qwen2_5_VisionTransformerPretrainedModel:
    """A random Qwen2.5-VL vision tower; weights larger than the default init so attention is far from
    uniform (a token attending to the wrong window then changes the output a lot)."""
    cfg = Qwen2_5_VLVisionConfig(
        depth=DEPTH,
        hidden_size=64,
        intermediate_size=96,
        num_heads=4,
        patch_size=PATCH,
        window_size=WINDOW,
        out_hidden_size=48,
        fullatt_block_indexes=FULLATT,
    )
    cfg._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    tower = Qwen2_5_VisionTransformerPretrainedModel(cfg).eval()
    with torch.no_grad():
        for name, p in tower.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.normal_(1.0, 0.3)
            else:
                p.normal_(0.0, 0.15)
    return tower


def pixels(grid: list[list[int]], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.tensor(grid)
    n = int(g.prod(-1).sum())
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3 * 2 * PATCH * PATCH, generator=gen), g


@pytest.fixture(scope="module")
def tower() -> Qwen2_5_VisionTransformerPretrainedModel:
    return tiny_tower()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ------------------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("grid", [EQUAL, EQUAL_BATCH, RAGGED, MIXED], ids=["equal", "equal_batch", "ragged", "mixed"])
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_matches_stock_tower(grid, attn_implementation):
    tower = tiny_tower(attn_implementation)
    px, g = pixels(grid)
    with torch.no_grad():
        ref = tower(px, g, output_hidden_states=True)
        out = FastQwen2_5VisionTower(tower)(px, g, layers=range(DEPTH + 1), return_merged=True)

    assert out.pooler_output.shape == ref.pooler_output.shape
    assert ref.pooler_output.abs().max() > 1.0  # the comparison is not between near-zero tensors
    assert _max_diff(out.pooler_output, ref.pooler_output) < TOL
    assert _max_diff(out.last_hidden_state, ref.last_hidden_state) < TOL
    assert sorted(out.hidden_states) == list(range(DEPTH + 1))
    for k in range(DEPTH + 1):  # stock hidden_states[k] is the output of block k (0 = block input)
        assert _max_diff(out.hidden_states[k], ref.hidden_states[k]) < TOL, f"layer {k}"


def test_stock_patch_embedding_option_and_matmul_patch_embedding():
    """``patch_embed_matmul=False`` runs the stock Conv3d (the fast path then differs from the stock tower only
    in how attention is batched); the default matmul embedding equals the Conv3d up to float rounding."""
    tower = tiny_tower()
    px, g = pixels(RAGGED)
    with torch.no_grad():
        ref = tower(px, g, output_hidden_states=True)
        exact = FastQwen2_5VisionTower(tower, patch_embed_matmul=False)(px, g, layers=[0, DEPTH])
        matmul = FastQwen2_5VisionTower(tower)(px, g, layers=[0])
    assert torch.equal(exact.hidden_states[0], ref.hidden_states[0])
    assert _max_diff(exact.pooler_output, ref.pooler_output) < 1e-5
    assert _max_diff(exact.hidden_states[DEPTH], ref.hidden_states[DEPTH]) < 1e-5
    assert _max_diff(matmul.hidden_states[0], ref.hidden_states[0]) < 1e-5


def test_equal_windows_use_one_dense_call_and_ragged_windows_are_grouped():
    kwargs = {"spatial_merge_size": 2, "window_size": WINDOW, "patch_size": PATCH}
    equal = build_window_plan(EQUAL, **kwargs)
    assert equal.window_layout.is_dense
    assert equal.window_layout.groups[0].length == 16 and equal.window_layout.groups[0].count == 2 * 2 * 3
    assert equal.full_layout.is_dense and equal.full_layout.groups[0].length == 8 * 12  # one segment per frame

    ragged = build_window_plan(RAGGED, **kwargs)
    # 5×7 merged units in windows of 2×2 units: interior 16 tokens, right column 8, bottom row 8, corner 4.
    lengths = {g.length: g.count for g in ragged.window_layout.groups}
    assert lengths == {16: 2 * 2 * 3, 8: 2 * (2 + 3), 4: 2 * 1}
    assert ragged.window_layout.inverse is not None

    mixed = build_window_plan(MIXED, **kwargs)
    assert {g.length: g.count for g in mixed.full_layout.groups} == {96: 2, 60: 1}
    assert mixed.full_layout.inverse is None  # frames are contiguous runs in order: sliced, not gathered


def _segment_labels_from_cu(cu: list[int]) -> torch.Tensor:
    labels = torch.empty(cu[-1], dtype=torch.long)
    for a, b in zip(cu[:-1], cu[1:]):
        labels[a:b] = a
    return labels


def _segment_labels_from_layout(layout: AttentionLayout) -> torch.Tensor:
    labels = torch.full((layout.num_tokens,), -1, dtype=torch.long)
    for g in layout.groups:
        pos = g.index if g.index is not None else torch.arange(g.start, g.start + g.num_tokens)
        pos = pos.reshape(g.count, g.length)
        labels[pos] = pos.min(dim=1, keepdim=True).values.expand_as(pos)
    return labels


@pytest.mark.parametrize("grid", [EQUAL, RAGGED, MIXED, [[3, 14, 6], [1, 4, 4], [2, 10, 14]]])
def test_plan_matches_stock_window_index_and_segments(grid):
    g = torch.tensor(grid)
    stock_index, stock_cu = get_vision_window_index(g, spatial_merge_size=2, window_size=WINDOW, patch_size=PATCH)
    plan = build_window_plan(g, spatial_merge_size=2, window_size=WINDOW, patch_size=PATCH)
    assert torch.equal(plan.window_index, stock_index)
    assert torch.equal(_segment_labels_from_layout(plan.window_layout), _segment_labels_from_cu(stock_cu.tolist()))
    frame_cu = [0]
    for t, h, w in grid:
        for _ in range(t):
            frame_cu.append(frame_cu[-1] + h * w)
    assert torch.equal(_segment_labels_from_layout(plan.full_layout), _segment_labels_from_cu(frame_cu))


# ------------------------------------------------------------------------------------------------ token order


@pytest.mark.parametrize("grid", [EQUAL, RAGGED, MIXED])
def test_window_order_to_grids_is_row_major(grid):
    """Un-permute the stock's own window-ordered (row, col) positions; frame index from the frame-contiguous
    window order (each frame is a run of h·w tokens)."""
    g = torch.tensor(grid)
    plan = build_window_plan(g, spatial_merge_size=2, window_size=WINDOW, patch_size=PATCH)
    stock_pos = get_vision_position_ids(g, 2)  # (N, 2) in input (block-major) order
    stock_index, _ = get_vision_window_index(g, spatial_merge_size=2, window_size=WINDOW, patch_size=PATCH)
    pos_window_order = stock_pos.reshape(-1, 4, 2)[stock_index].reshape(-1, 2)
    frame = torch.cat([torch.arange(t).repeat_interleave(h * w) for t, h, w in grid])
    tokens = torch.cat([pos_window_order, frame[:, None]], dim=1).float()

    grids = window_order_to_grids(tokens, plan)
    assert len(grids) == len(grid)
    for (t, h, w), out in zip(grid, grids):
        assert out.shape == (t, h, w, 3)
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        assert torch.equal(out[..., 0], rows.float().expand(t, h, w))
        assert torch.equal(out[..., 1], cols.float().expand(t, h, w))
        assert torch.equal(out[..., 2], torch.arange(t).float()[:, None, None].expand(t, h, w))


def test_stacked_grid_and_layer_zero_is_patch_embedding(tower):
    px, g = pixels(EQUAL_BATCH)
    with torch.no_grad():
        out = FastQwen2_5VisionTower(tower, patch_embed_matmul=False)(px, g, layers=[0, 2], return_merged=False)
        emb = tower.patch_embed(px)  # (N, C) in block-major input order
    stacked = out.stacked_grid(0)
    assert stacked.shape == (2, 2, 8, 8, 64)
    # Independent unfold of the block-major input order: (b, t, h/2, w/2, 2, 2) → (b, t, h, w).
    expected = emb.reshape(2, 2, 4, 4, 2, 2, 64).permute(0, 1, 2, 4, 3, 5, 6).reshape(2, 2, 8, 8, 64)
    assert torch.equal(stacked, expected)
    with pytest.raises(KeyError, match="layer 1 was not requested"):
        out.grids(1)
    mixed = FastQwen2_5VisionTower(tower)(*pixels(MIXED), layers=[1], return_merged=False)
    with pytest.raises(ValueError, match="different grids"):
        mixed.stacked_grid(1)


# ------------------------------------------------------------------------------------------------ early stop


def test_stops_after_deepest_requested_block(tower):
    px, g = pixels(RAGGED)
    calls = []
    hooks = [blk.mlp.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, blk in enumerate(tower.blocks)]
    try:
        with torch.no_grad():
            out = FastQwen2_5VisionTower(tower)(px, g, layers=[2, 1], return_merged=False)
            ref = tower(px, g, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    assert calls[:2] == [0, 1]  # the fast pass ran blocks 1 and 2 only, then the stock pass all four
    assert calls[2:] == list(range(DEPTH))
    assert out.pooler_output is None and out.last_hidden_state is None
    assert sorted(out.hidden_states) == [1, 2]
    assert _max_diff(out.hidden_states[2], ref.hidden_states[2]) < TOL


# ------------------------------------------------------------------------------------------------ parameters


def test_shares_parameters_with_stock(tower):
    fast = FastQwen2_5VisionTower(tower)
    stock_params = dict(tower.named_parameters())
    fast_params = dict(fast.named_parameters())
    assert len(fast_params) == len(stock_params)
    for name, p in stock_params.items():
        q = fast_params[f"visual.{name}"]
        assert q is p and q.data_ptr() == p.data_ptr()


def test_sees_in_place_weight_changes():
    tower = tiny_tower()
    fast = FastQwen2_5VisionTower(tower)
    px, g = pixels(EQUAL)
    with torch.no_grad():
        before = fast(px, g).pooler_output
        tower.blocks[2].mlp.down_proj.bias.add_(0.5)
        after = fast(px, g).pooler_output
        ref = tower(px, g).pooler_output
    assert _max_diff(before, after) > 0.1
    assert _max_diff(after, ref) < TOL


# ------------------------------------------------------------------------------------------------ gradients


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match_stock(checkpointing):
    tower = tiny_tower().train()
    if checkpointing:
        tower.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    px, g = pixels(MIXED)
    px.requires_grad_(True)
    gen = torch.Generator().manual_seed(3)

    def loss_of(pooled: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        return (pooled * w_pool).sum() + (mid * w_mid).sum()

    ref = tower(px, g, output_hidden_states=True)
    w_pool = torch.randn(ref.pooler_output.shape, generator=gen)
    w_mid = torch.randn(ref.hidden_states[2].shape, generator=gen)
    loss_of(ref.pooler_output, ref.hidden_states[2]).backward()
    ref_grads = {n: p.grad.clone() for n, p in tower.named_parameters()}
    ref_px_grad = px.grad.clone()
    tower.zero_grad()
    px.grad = None

    norm_calls = []
    hook = tower.blocks[0].norm1.register_forward_hook(lambda *_: norm_calls.append(1))
    out = FastQwen2_5VisionTower(tower)(px, g, layers=[2])
    assert len(norm_calls) == 1
    loss_of(out.pooler_output, out.hidden_states[2]).backward()
    hook.remove()
    assert len(norm_calls) == (2 if checkpointing else 1)  # checkpointed blocks are recomputed in backward
    assert all(p.grad is not None for p in tower.parameters())
    for n, p in tower.named_parameters():
        scale = float(ref_grads[n].abs().max()) + 1e-6
        assert _max_diff(p.grad, ref_grads[n]) / scale < 1e-4, n
    assert _max_diff(px.grad, ref_px_grad) / float(ref_px_grad.abs().max()) < 1e-4


# ------------------------------------------------------------------------------------------------ errors


def test_user_errors(tower):
    fast = FastQwen2_5VisionTower(tower)
    px, g = pixels(EQUAL)
    with pytest.raises(ValueError, match=r"layers \[5\] out of range: this tower has blocks 1..4"):
        fast(px, g, layers=[5])
    with pytest.raises(ValueError, match="nothing to compute"):
        fast(px, g, layers=[], return_merged=False)
    with pytest.raises(ValueError, match="needs 192 patch rows"):
        fast(px[:-4], g)
    with pytest.raises(ValueError, match=r"grid_thw\[0\] = \(2, 9, 12\).*multiples of spatial_merge_size=2"):
        fast(px, torch.tensor([[2, 9, 12]]))
    with pytest.raises(TypeError, match="is not a Qwen2.5-VL vision tower"):
        FastQwen2_5VisionTower(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"expected window-ordered tokens of shape \(192, C\)"):
        window_order_to_grids(torch.zeros(10, 3), fast.plan(g, "cpu"))
    with pytest.raises(ValueError, match="cu_seqlens must start at 0"):
        AttentionLayout.from_cu_seqlens([4, 8], torch.device("cpu"))


def test_plan_cache_is_bounded_and_reused(tower):
    fast = FastQwen2_5VisionTower(tower, plan_cache_size=2)
    a = fast.plan(EQUAL, "cpu")
    assert fast.plan(torch.tensor(EQUAL), "cpu") is a
    fast.plan(RAGGED, "cpu")
    fast.plan(MIXED, "cpu")
    assert len(fast._plans) == 2 and fast.plan(EQUAL, "cpu") is not a


# ------------------------------------------------------------------------------------------------ compile


def test_block_function_traces_as_one_graph(tower):
    """Dynamo captures each block in one graph (``fullgraph``: no graph breaks), equal and ragged layouts;
    ``aot_eager`` skips the C++ code generation so this stays fast."""
    torch._dynamo.reset()
    fast = FastQwen2_5VisionTower(tower, compile=True, compile_options={"backend": "aot_eager", "fullgraph": True})
    for grid in (EQUAL, RAGGED):
        px, g = pixels(grid)
        with torch.no_grad():
            out = fast(px, g, layers=[1])
            ref = tower(px, g, output_hidden_states=True)
        assert _max_diff(out.pooler_output, ref.pooler_output) < TOL
        assert _max_diff(out.hidden_states[1], ref.hidden_states[1]) < TOL


@pytest.mark.slow  # ~30 s with a cold inductor cache (C++ code generation on CPU)
def test_compiled_blocks_match_stock(tower):
    torch._dynamo.reset()
    fast = FastQwen2_5VisionTower(tower, compile=True)
    for grid in (EQUAL, RAGGED):
        px, g = pixels(grid)
        start = time.perf_counter()
        with torch.no_grad():
            out = fast(px, g, layers=[1, DEPTH])
            ref = tower(px, g, output_hidden_states=True)
        assert time.perf_counter() - start < 300
        assert _max_diff(out.pooler_output, ref.pooler_output) < TOL
        assert _max_diff(out.hidden_states[1], ref.hidden_states[1]) < TOL


# ------------------------------------------------------------------------------------------------ benchmark


def test_benchmark_script_runs_and_reports_equal_outputs(tmp_path):
    """benchmarks/bench_qwen_vision.py at toy shapes: both paths timed, same merger output, JSON written."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_qwen_vision.py"
    spec = importlib.util.spec_from_file_location("bench_qwen_vision", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--depth", "2", "--hidden", "32", "--heads", "2", "--intermediate", "48", "--out-hidden", "16",
            "--window", "56", "--fullatt", "1", "--frames", "4", "--size", "56", "84", "--batch", "2",
            "--warmup", "1", "--iters", "2", "--json", str(tmp_path / "bench.json")]
    result = bench.main(args)
    assert result["tokens"] == 2 * 2 * 4 * 6
    # 2×3 merged units per frame in windows of 2×2 units: one 16-token and one 8-token window per frame.
    assert dict(result["window_groups"]) == {16: 4, 8: 4}
    assert result["max_abs_diff"] < TOL
    assert result["stock_frames_per_s"] > 0 and result["fast_frames_per_s"] > 0
    assert json.loads((tmp_path / "bench.json").read_text())["speedup"] == pytest.approx(result["speedup"])
