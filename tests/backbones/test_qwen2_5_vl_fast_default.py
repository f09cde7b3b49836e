"""The fast Qwen2.5-VL vision path as the shipped default: config fields, one compile per (shape, dtype) whatever
the autocast state, eager fallback when compiling fails, no device-side grid reads, and equality with the stock
tower for every layer the AHD reads — fp32 tight, bf16 within stated tolerances (tiny random model, CPU).

bf16 tolerances (stated once, here): the two paths sum in different orders (one SDPA call over batched windows
vs one per window; the patch embedding as a matmul vs a Conv3d), so each bf16 rounding (relative 2⁻⁸ ≈ 0.4 %)
can land differently in every block. Layer grids: max |fast − stock| ≤ 3 % of max |stock| of that layer.
Heatmaps (p(abnormal) in [0, 1]): max difference ≤ 0.03. Unsaturated scores (the fp32 logit gap, scale 100 ×
cosine, so ±200 at most): max difference ≤ 0.5 on cells whose stock score lies in (−10, 10) — where the
heatmap is not saturated and the ranking is decided — and the sign agrees wherever |stock score| > 1.
Observed on the tiny model (2026-12-06): layers ≤ 0.65 % of max |stock|, heatmaps 0.016, scores 0.11.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from tvau_lightning.backbones.qwen2_5_vl_fast import CompileFallbackWarning, FastQwen2_5VisionTower
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "backbones"
FAMILY = "qwen2_5_vl"
FP32_TOL = 1e-4
BF16_LAYER_REL_TOL = 0.03
BF16_HEATMAP_TOL = 0.03
BF16_SCORE_TOL = 0.5


def clips(batch: int, frames: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, *size, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def qwen_dir(tiny_backbone_dir):
    return tiny_backbone_dir(FAMILY)


# ------------------------------------------------------------------------------------------------ config


def test_the_7b_preset_selects_the_compiled_fast_path():
    data = yaml.safe_load((CONFIG_DIR / "qwen2_5_vl_7b.yaml").read_text())
    config = BackboneConfig(**data)
    assert config.vision_path == "fast" and config.compile_vision is True
    assert config.compile_options() == {"dynamic": False, "fullgraph": False}


def test_compile_options_come_from_the_config(qwen_dir):
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast", compile_vision=True,
                            compile_mode="max-autotune-no-cudagraphs", compile_dynamic=None, compile_fullgraph=True)
    assert adapter.fast_visual.compile_options == {"mode": "max-autotune-no-cudagraphs", "dynamic": None,
                                                   "fullgraph": True}


def test_an_unknown_compile_mode_is_refused_at_load(qwen_dir):
    with pytest.raises(BackboneError, match=r"compile_mode 'fastest'.*'max-autotune'"):
        load_backbone(str(qwen_dir), dtype="float32", vision_path="fast", compile_vision=True, compile_mode="fastest")


# ------------------------------------------------------------------------------------------------ compile


class _CountingBackend:
    """A ``torch.compile`` backend that counts compiled graphs and runs them as traced (no code generation)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):  # noqa: ANN001 - the dynamo backend protocol
        self.graphs += 1
        return gm.forward


def test_one_compile_per_shape_whatever_the_autocast_state(qwen_dir):
    torch._dynamo.reset()
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")
    backend = _CountingBackend()
    fast = FastQwen2_5VisionTower(adapter.visual, compile=True, compile_options={"backend": backend, "dynamic": False})
    video = adapter.preprocess_video(clips(1, 4, (64, 96)))
    grid = [video.grid]
    with torch.no_grad():
        ref = fast(video.pixel_values, grid, layers=[1, 2, 4])
        after_first = backend.graphs
        assert after_first >= 1
        fast(video.pixel_values, grid, layers=[1, 2, 4])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under = fast(video.pixel_values, grid, layers=[1, 2, 4])
    assert backend.graphs == after_first, "entering autocast recompiled the blocks"
    # autocast does not change what the tower computes: it runs at the weights' dtype
    assert under.hidden_states[4].dtype == torch.float32
    assert torch.equal(under.hidden_states[4], ref.hidden_states[4])


def _failing_backend(gm, example_inputs):  # noqa: ANN001 - the dynamo backend protocol
    raise RuntimeError("no C++ compiler found")


def test_a_failing_compile_falls_back_to_eager_with_one_warning(qwen_dir):
    torch._dynamo.reset()
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")
    eager = FastQwen2_5VisionTower(adapter.visual)
    fast = FastQwen2_5VisionTower(adapter.visual, compile=True, compile_options={"backend": _failing_backend})
    video = adapter.preprocess_video(clips(1, 4, (64, 96)))
    with torch.no_grad(), pytest.warns(CompileFallbackWarning, match="running them eagerly"):
        out = fast(video.pixel_values, [video.grid], layers=[4])
    assert not fast.compiled
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        again = fast(video.pixel_values, [video.grid], layers=[4])
        ref = eager(video.pixel_values, [video.grid], layers=[4])
    assert torch.equal(out.hidden_states[4], ref.hidden_states[4]) and torch.equal(again.pooler_output, ref.pooler_output)


def test_the_adapter_hands_the_fast_tower_cpu_ints_not_a_device_tensor(qwen_dir, monkeypatch):
    adapter = load_backbone(str(qwen_dir), dtype="float32", vision_path="fast")
    seen = []
    original = FastQwen2_5VisionTower.forward

    def spy(self, pixel_values, grid_thw, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(grid_thw)
        return original(self, pixel_values, grid_thw, *args, **kwargs)

    monkeypatch.setattr(FastQwen2_5VisionTower, "forward", spy)
    video = adapter.preprocess_video(clips(2, 4, (64, 96)))
    with torch.no_grad():
        adapter.encode_video(video, [1])
    assert seen and not any(isinstance(g, torch.Tensor) for g in seen)
    assert [tuple(r) for r in seen[0]] == [video.grid, video.grid]


# ------------------------------------------------------------------------------------------------ equality


def _heatmap_models(qwen_dir, dtype: str) -> tuple[AnomalyHeatmapModel, AnomalyHeatmapModel]:
    """Stock and fast stage-1 models over the same weights with one AHD (fp32, random, seeded prototypes)."""
    stock = load_backbone(str(qwen_dir), dtype=dtype, vision_only=True)
    fast = load_backbone(str(qwen_dir), dtype=dtype, vision_only=True, vision_path="fast")
    torch.manual_seed(0)
    model = AnomalyHeatmapModel.build(stock)
    model.ahd.set_prototypes(torch.randn(2, stock.text_hidden_size))
    return model.eval(), AnomalyHeatmapModel(fast, model.ahd, model.layers).eval()


@pytest.mark.parametrize("size", [(64, 96), (72, 104)], ids=["equal_windows", "ragged_windows"])
def test_every_ahd_layer_heatmap_and_score_equal_in_fp32(qwen_dir, size):
    stock, fast = _heatmap_models(qwen_dir, "float32")
    frames = clips(2, 4, size, seed=3)
    with torch.no_grad():
        _, ref = stock.encode(frames)
        _, out = fast.encode(frames)
        a, b = stock(features=stock.layer_features(ref)), fast(features=fast.layer_features(out))
    assert stock.layers == [1, 2, 4]
    for i in stock.layers:
        assert float(ref.layer_features[i].abs().max()) > 0.5
        assert float((out.layer_features[i] - ref.layer_features[i]).abs().max()) < FP32_TOL, f"layer {i}"
    assert float((a.heatmap - b.heatmap).abs().max()) < FP32_TOL
    assert float((a.scores - b.scores).abs().max()) < 100 * FP32_TOL  # scores are 100 × cosine


@pytest.mark.parametrize("size", [(64, 96), (72, 104)], ids=["equal_windows", "ragged_windows"])
def test_every_ahd_layer_heatmap_and_score_within_bf16_tolerance(qwen_dir, size):
    stock, fast = _heatmap_models(qwen_dir, "bfloat16")
    frames = clips(2, 4, size, seed=5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, ref = stock.encode(frames)
        _, out = fast.encode(frames)
        a, b = stock(features=stock.layer_features(ref)), fast(features=fast.layer_features(out))
    for i in stock.layers:
        r, o = ref.layer_features[i], out.layer_features[i]
        assert r.dtype == o.dtype == torch.bfloat16
        scale = float(r.float().abs().max())
        assert float((o.float() - r.float()).abs().max()) <= BF16_LAYER_REL_TOL * scale, f"layer {i}"
    assert float((a.heatmap - b.heatmap).abs().max()) <= BF16_HEATMAP_TOL
    unsaturated = a.scores.abs() < 10
    assert int(unsaturated.sum()) > 0.25 * a.scores.numel()  # the comparison covers many cells
    assert float((a.scores - b.scores)[unsaturated].abs().max()) <= BF16_SCORE_TOL
    decided = a.scores.abs() > 1
    assert torch.equal(a.scores[decided] > 0, b.scores[decided] > 0)
