"""Behaviour shared by the per-frame towers (InternVL, LLaVA-1.5, LLaVA-NeXT) on tiny random backbones.

Family-specific checks (stock token paths, chat text, context limits) are in test_internvl.py and
test_llava.py. The contract tests every family runs (embed_text, batched == per-sample training and
generation, LoRA save/load/merge/save_pretrained, …) are in test_base.py, parametrized over
``conftest.FAMILIES``; this file adds what is specific to towers that see each frame as one image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tvau_lightning.backbones.dialogue import IGNORE_INDEX
from tvau_lightning.backbones.frame_tower import FrameTowerAdapter, pool_token_grid
from tvau_lightning.backbones.internvl import InternVLAdapter
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError
from tvau_lightning.data.dialogue_schema import Turn

FRAME_FAMILIES = ["internvl", "llava", "llava_next"]
ATOL = 1e-5


def load(folder: Path, **overrides) -> FrameTowerAdapter:
    return load_backbone(str(folder), dtype="float32", **overrides)


def clips(batch: int, frames: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, *size, 3), dtype=torch.uint8, generator=g)


DIALOGUES = [
    [Turn("user", "Is there any anomaly in this video?"), Turn("assistant", "Yes.", "yesno"),
     Turn("user", "Who is it?"), Turn("assistant", "a person running left", "target")],
    [Turn("user", "Is there an anomaly?"), Turn("assistant", "No.", "yesno")],
]


# ------------------------------------------------------------------------------------------------- vision


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_shapes_and_grid(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family))
    video = bb.preprocess_video(clips(2, 3, (40, 52)))
    s = bb.input_size
    p = bb.patch_size[0]
    assert video.pixel_values.shape == (6, 3, *s)
    assert video.grid == (3, s[0] // p, s[1] // p) == bb.feature_grid(3, (40, 52))
    assert bb.temporal_patch_size == 1
    out = bb.encode_video(video)
    assert sorted(out.layer_features) == bb.layers == bb.default_layers
    for f in out.layer_features.values():
        assert f.shape == (2, *video.grid, bb.vision_hidden_size)
    assert out.visual_tokens.shape == (2, bb.visual_tokens_per_clip(video), bb.text_hidden_size)
    assert bb.encode_video(video, [1], visual_tokens=False).visual_tokens is None


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_layer_features_are_the_stock_hidden_states_without_cls(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family))
    video = bb.preprocess_video(clips(2, 2, bb.input_size, seed=1))
    layers = list(range(1, bb.num_vision_layers + 1))
    ours = bb.encode_video(video, layers, visual_tokens=False).layer_features
    hidden = bb.core.vision_tower(video.pixel_values, output_hidden_states=True).hidden_states
    t, h, w = video.grid
    for i in layers:
        expected = torch.empty_like(ours[i])
        for b in range(2):
            for ti in range(t):
                for r in range(h):
                    for c in range(w):
                        expected[b, ti, r, c] = hidden[i][b * t + ti, 1 + r * w + c]  # token 0 is CLS
        torch.testing.assert_close(ours[i], expected, atol=0, rtol=0)


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_spatial_order(family, tiny_backbone_dir):
    """Perturb one patch-aligned region of one frame: layer 1 changes most at exactly that (t, h, w)."""
    bb = load(tiny_backbone_dir(family))
    size = bb.input_size  # frames already at the tower size: the resize is the identity
    p = bb.patch_size[0]
    base = torch.full((1, 3, *size, 3), 120, dtype=torch.uint8)
    t0, r0, c0 = 1, 2, 5  # off-diagonal, so a transposed grid fails
    moved = base.clone()
    g = torch.Generator().manual_seed(3)
    moved[0, t0, r0 * p:(r0 + 1) * p, c0 * p:(c0 + 1) * p] = torch.randint(0, 256, (p, p, 3), dtype=torch.uint8,
                                                                             generator=g)
    a = bb.encode_video(bb.preprocess_video(base), [1], visual_tokens=False).layer_features[1]
    b = bb.encode_video(bb.preprocess_video(moved), [1], visual_tokens=False).layer_features[1]
    change = (a - b).norm(dim=-1)[0]  # (T, H', W')
    assert tuple(int(i) for i in torch.unravel_index(change.argmax(), change.shape)) == (t0, r0, c0)


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_visual_token_pool_averages_each_frame_grid(family, tiny_backbone_dir):
    folder = tiny_backbone_dir(family)
    full, pooled = load(folder), load(folder, visual_token_pool=2)
    video = full.preprocess_video(clips(1, 2, full.input_size, seed=4))
    a = full.encode_video(video, [1]).visual_tokens
    b = pooled.encode_video(video, [1]).visual_tokens
    h, w = full.token_grid()
    d = a.shape[-1]
    expected = a.reshape(2, h // 2, 2, w // 2, 2, d).mean(dim=(2, 4)).reshape(1, -1, d)
    torch.testing.assert_close(b, expected, atol=ATOL, rtol=ATOL)
    assert pooled.visual_tokens_per_clip(video) == b.shape[1] == 2 * (h // 2) * (w // 2)
    dialogue = pooled.build_dialogue_inputs(DIALOGUES[:1], video=video)
    assert int(dialogue.visual_mask.sum()) == b.shape[1]


def test_pool_token_grid_with_ragged_edges():
    """A 5×3 grid pooled by 2: edge windows average only the cells they cover."""
    tokens = torch.arange(15, dtype=torch.float32).reshape(1, 15, 1)
    out = pool_token_grid(tokens, (5, 3), 2).flatten().tolist()
    grid = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    expected = [float(grid[r:r + 2, c:c + 2].mean()) for r in range(0, 5, 2) for c in range(0, 3, 2)]
    assert out == pytest.approx(expected)


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_vision_only_load_has_no_decoder_layers_and_same_features(family, tiny_backbone_dir):
    folder = tiny_backbone_dir(family)
    full = load(folder)
    vision = load_backbone(str(folder), vision_only=True, device="cpu", dtype="float32")
    assert vision.device.type == "cpu" and vision.pixel_mean.device.type == "cpu"
    names = [n for n, _ in vision.model.named_parameters()]
    assert not [n for n in names if "language_model.layers" in n or "lm_head" in n]
    assert len(vision.core.language_model.layers) == 0
    kept = sum(p.numel() for n, p in full.model.named_parameters()
               if not n.startswith(("model.language_model.layers.", "lm_head.")))
    assert sum(p.numel() for p in vision.model.parameters()) == kept
    video = full.preprocess_video(clips(1, 2, (40, 40), seed=5))
    a, b = full.encode_video(video), vision.encode_video(video)
    for i in full.layers:
        torch.testing.assert_close(a.layer_features[i], b.layer_features[i], atol=0, rtol=0)
    torch.testing.assert_close(a.visual_tokens, b.visual_tokens, atol=0, rtol=0)
    sentences = ["a person running", "an empty street at night"]
    torch.testing.assert_close(full.embed_text(sentences), vision.embed_text(sentences), atol=0, rtol=0)
    with pytest.raises(BackboneError, match="vision_only"):
        vision.forward_dialogue(vision.build_dialogue_inputs(DIALOGUES[:1]), torch.zeros(1, 1, 1))
    with pytest.raises(BackboneError, match="vision_only"):
        vision.apply_lora(LoRASettings())


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_preprocess_budgets_and_errors(family, tiny_backbone_dir):
    folder = tiny_backbone_dir(family)
    bb = load(folder, max_frames=2)
    with pytest.raises(BackboneError, match="3 frames but the backbone's max_frames is 2"):
        bb.preprocess_video(clips(1, 3, (32, 32)))
    assert bb.preprocess_video(clips(1, 2, (32, 32))).grid[0] == 2
    with pytest.raises(BackboneError, match="uint8"):
        bb.preprocess_video(clips(1, 2, (32, 32)).float())
    with pytest.raises(BackboneError, match="input_size"):
        load(folder, input_size=(30, 30))
    with pytest.raises(BackboneError, match="visual_token_pool"):
        load(folder, visual_token_pool=0)


# ------------------------------------------------------------------------------------------------- text


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_labels_only_on_assistant_turns(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family))
    video = bb.preprocess_video(clips(2, 2, (32, 32)))
    inputs = bb.build_dialogue_inputs(DIALOGUES, video=video, num_prompt_tokens=4)
    fmt = bb.chat_format
    end_of_turn = bb.tokenizer(fmt.assistant_suffix, add_special_tokens=False)["input_ids"][:1]

    def answer_ids(content: str) -> list[int]:  # the space before an answer only where merged into its first word
        ids = bb.tokenizer(fmt.answer_separator + content, add_special_tokens=False)["input_ids"]
        return ids[1:] if fmt.answer_separator and not bb.tokenizer.decode(ids[:1]).strip() else ids

    n_vis = bb.visual_tokens_per_clip(video)
    for row, turns in enumerate(DIALOGUES):
        labelled = inputs.labels[row][inputs.labels[row] != IGNORE_INDEX]
        answers = bb.tokenizer.decode([i for t in turns if t.role == "assistant"
                                       for i in answer_ids(t.content) + end_of_turn])
        assert bb.tokenizer.decode(labelled) == answers
        assert torch.equal(labelled, inputs.input_ids[row][inputs.labels[row] != IGNORE_INDEX])
        assert int(inputs.visual_mask[row].sum()) == n_vis
        assert int(inputs.prompt_mask[row].sum()) == 4
        vis = inputs.visual_mask[row].nonzero().flatten()
        prm = inputs.prompt_mask[row].nonzero().flatten()
        assert vis.max() < prm.min()  # visual tokens, then the anomaly prompts
        assert bool((inputs.input_ids[row][vis] == bb.image_token_id).all())
    # right padding: real tokens first
    lengths = inputs.attention_mask.sum(1)
    assert int(lengths[0]) > int(lengths[1])
    assert inputs.attention_mask[1, : int(lengths[1])].all() and not inputs.attention_mask[1, int(lengths[1]):].any()


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_prompt_embeddings_change_only_later_logits(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family))
    video = bb.preprocess_video(clips(1, 2, (32, 32), seed=8))
    tokens = bb.encode_video(video, [1]).visual_tokens
    inputs = bb.build_dialogue_inputs(DIALOGUES[:1], video=video, num_prompt_tokens=2)
    g = torch.Generator().manual_seed(2)
    p1, p2 = (torch.randn(1, 2, bb.text_hidden_size, generator=g) for _ in range(2))
    _, l1 = bb.forward_dialogue(inputs, bb.embed_dialogue(inputs, tokens, p1), compute_loss=False)
    _, l2 = bb.forward_dialogue(inputs, bb.embed_dialogue(inputs, tokens, p2), compute_loss=False)
    first = int(inputs.prompt_mask[0].nonzero().min())
    torch.testing.assert_close(l1[0, :first], l2[0, :first], atol=1e-6, rtol=0)  # causal: earlier positions
    assert (l1[0, first:] - l2[0, first:]).abs().amax() > 1e-4


# ------------------------------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_lora_targets_the_language_model_only(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family))
    vision_qv = [n for n, _ in bb.core.vision_tower.named_modules() if n.endswith(("q_proj", "v_proj"))]
    assert vision_qv, "the tower has q_proj/v_proj too — the regex must skip them"
    bb.apply_lora(LoRASettings(rank=4, alpha=8, dropout=0.0))
    bb.freeze()
    trainable = [n for n, p in bb.model.named_parameters() if p.requires_grad]
    n_layers = bb.num_language_layers
    assert len(trainable) == n_layers * 2 * 2  # layers × (q, v) × (A, B)
    assert all("language_model.layers." in n and ("q_proj" in n or "v_proj" in n) and "lora_" in n
               for n in trainable)
    for module in bb.vision_modules():
        assert not any(p.requires_grad for p in module.parameters())
        assert not any(hasattr(m, "lora_A") for m in module.modules())
    assert bb.lora_state_dict() and not any("vision" in k for k in bb.lora_state_dict())
    wrapped = {n for n, m in bb.model.named_modules() if hasattr(m, "lora_A") and not n.endswith("lora_A")}
    assert wrapped and all("language_model.layers." in n for n in wrapped)


# ------------------------------------------------------------------------------------------------- broken folders


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_broken_folders_raise_clear_errors(family, tiny_backbone_dir, tmp_path):
    folder = tiny_backbone_dir(family)

    no_weights = _copy(folder, tmp_path / "a")
    for f in no_weights.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(BackboneError, match=r"cannot load the .* weights from .*copy"):
        load(no_weights)

    partial = _copy(folder, tmp_path / "b")
    weights = next(partial.glob("*.safetensors"))
    tensors = load_file(str(weights))
    save_file({k: v for k, v in tensors.items() if "vision" not in k}, str(weights), metadata={"format": "pt"})
    with pytest.raises(BackboneError, match="lack .* tensors"):
        load(partial)

    no_tokenizer = _copy(folder, tmp_path / "c")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(BackboneError, match="tokenizer"):
        load(no_tokenizer)

    bad_stats = _copy(folder, tmp_path / "d")
    (bad_stats / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5], "image_std": [1, 1]}))
    with pytest.raises(BackboneError, match="3 values"):
        load(bad_stats)

    if family != "internvl":
        with pytest.raises(BackboneError, match="model_type"):
            InternVLAdapter.from_pretrained(BackboneConfig(path=str(folder), dtype="float32"))


@pytest.mark.parametrize("family", FRAME_FAMILIES)
def test_preprocessor_statistics_are_read_and_saved(family, tiny_backbone_dir, tmp_path):
    folder = _copy(tiny_backbone_dir(family), tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3],
                                                                 "image_std": [0.5, 0.25, 0.125]}))
    bb = load(folder)
    frame = torch.full((1, 1, *bb.input_size, 3), 51, dtype=torch.uint8)  # 0.2 everywhere
    pixels = bb.preprocess_video(frame).pixel_values[0, :, 0, 0]
    torch.testing.assert_close(pixels, torch.tensor([0.2, 0.0, -0.8]), atol=1e-5, rtol=0)
    out = bb.save_pretrained(tmp_path / "saved")
    assert json.loads((out / "preprocessor_config.json").read_text())["image_mean"] == [0.1, 0.2, 0.3]


_PEAK_RSS_SCRIPT = """
import sys
from pathlib import Path
from tvau_lightning.backbones import load_backbone

def status(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
before = status("VmRSS")
bb = load_backbone(sys.argv[1], dtype="float32", vision_only=sys.argv[2] == "1")
touched = sum(float(p.sum()) for p in bb.model.parameters())  # page every kept tensor in
print(status("VmHWM") - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_vision_only_load_never_reads_the_language_model(tmp_path):
    """Peak memory of a vision-only load stays far below the LLM's size (whose tensors are never read),
    while a full load of the same folder pays for them (so the measurement can tell)."""
    import subprocess
    import sys

    from tvau_lightning.backbones.tiny import build_tiny_backbone

    folder = tmp_path / "llava"
    bb = build_tiny_backbone("llava", folder, text_hidden_size=512, text_intermediate_size=2048, text_layers=12,
                             text_heads=8, text_kv_heads=8)
    llm_bytes = sum(p.numel() * 4 for n, p in bb.model.named_parameters()
                    if n.startswith(("model.language_model.layers.", "lm_head.")))
    assert llm_bytes > 150e6

    def peak(vision_only: bool) -> int:
        out = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, str(folder), str(int(vision_only))],
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    # a vision-only load still pays ~20 MB of lazily imported transformers modules and allocator noise,
    # so the bound is a quarter of the LLM's 200 MB: reading the LLM's tensors would take all of them
    assert peak(True) < 0.25 * llm_bytes
    assert peak(False) > 0.8 * llm_bytes
