"""Qwen2.5-VL adapter on a tiny random model: pixel layout, token order, 3-D positions, vision-only load.

Expectations come from transformers itself (the PIL image processor's patchify, the stock tower's hidden
states and rotary position ids, ``get_video_features``, the model's own pixel path) or from pixels indexed by
hand — never from the adapter's own reshapes.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

from tvau_lightning.backbones.normalization import CLIP_MEAN, CLIP_STD
from tvau_lightning.backbones.qwen2_5_vl import Qwen2_5_VLAdapter, window_merge_unit_order
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.tiny import build_tiny_backbone
from tvau_lightning.backbones.types import BackboneConfig, BackboneError
from tvau_lightning.data.dialogue_schema import Turn

FAMILY = "qwen2_5_vl"
SIZE = (64, 96)  # tiny model: 4-px patches → a 16×24 grid, 8×8-patch windows → 2×3 windows per frame


def clips(batch: int, frames: int, size: tuple[int, int] = SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, *size, 3), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def qwen(tiny_backbone_dir) -> Qwen2_5_VLAdapter:
    """A loaded tiny adapter shared by the read-only tests of this module (never modify it)."""
    return load_backbone(str(tiny_backbone_dir(FAMILY)), dtype="float32")


@pytest.fixture(scope="module")
def qwen14() -> Qwen2_5_VLAdapter:
    """A tiny adapter with the released models' patch geometry (14-px patches, 112-px windows)."""
    return build_tiny_backbone(FAMILY, patch_size=14, window_size=112, vision_depth=2, fullatt_block_indexes=[1])


# ------------------------------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("which", ["qwen", "qwen14"])
def test_patches_equal_the_hf_processor_on_a_still_clip(which, request):
    """A clip of two identical frames is what the HF processor makes of an image: same numbers, same order."""
    adapter = request.getfixturevalue(which)
    p = adapter.patch_size
    h, w = 4 * p, 6 * p
    image = clips(1, 1, (h, w), seed=3)[0, 0]
    ours = adapter.preprocess_video(image.expand(2, h, w, 3))
    hf = Qwen2VLImageProcessorPil(do_resize=False, patch_size=p, merge_size=2, temporal_patch_size=2)
    expected = hf(image.numpy(), return_tensors="pt")
    assert expected["image_grid_thw"].tolist() == [[1, h // p, w // p]] == ours.extras["video_grid_thw"].tolist()
    torch.testing.assert_close(ours.pixel_values, expected["pixel_values"].float(), atol=1e-5, rtol=0)


def test_patch_content_matches_frame_pixels_with_odd_length_padding(qwen):
    """Every flattened patch holds (C, 2 frames, p, p) of its merge-block position; odd T repeats the last frame."""
    b, t = 2, 5
    frames = clips(b, t, seed=1)
    video = qwen.preprocess_video(frames)
    p, (gt, gh, gw) = qwen.patch_size, video.grid
    assert (gt, gh, gw) == (3, SIZE[0] // p, SIZE[1] // p) and video.num_frames == 6
    padded = torch.cat([frames, frames[:, -1:]], dim=1).float() / 255.0
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    g = torch.Generator().manual_seed(0)
    for n in torch.randint(0, b * gt * gh * gw, (200,), generator=g).tolist():
        # token order (clip, t, h/2, w/2, 2, 2)
        clip, rest = divmod(n, gt * gh * gw)
        tt, rest = divmod(rest, gh * gw)
        bh, rest = divmod(rest, (gw // 2) * 4)
        bw, rest = divmod(rest, 4)
        mh, mw = divmod(rest, 2)
        row, col = 2 * bh + mh, 2 * bw + mw
        pix = padded[clip, 2 * tt:2 * tt + 2, row * p:(row + 1) * p, col * p:(col + 1) * p]  # (2, p, p, C)
        expected = ((pix - mean) / std).permute(3, 0, 1, 2).reshape(-1)  # (C, 2, p, p)
        torch.testing.assert_close(video.pixel_values[n], expected, atol=1e-5, rtol=0)


def test_normalisation_is_read_from_the_folder(tiny_backbone_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_backbone_dir(FAMILY), folder)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    cfg.update(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.5, 1.0])
    (folder / "preprocessor_config.json").write_text(json.dumps(cfg))
    frames = torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)
    adapter = load_backbone(str(folder), dtype="float32")
    # save_pretrained carries the processor files over, so a saved (e.g. merged) model keeps its pixels
    resaved = load_backbone(str(adapter.save_pretrained(tmp_path / "resaved")), vision_only=True, dtype="float32")
    for model in (adapter, resaved):
        per_channel = model.preprocess_video(frames).pixel_values[0].view(3, -1)
        assert per_channel[:, 0].tolist() == [2.0, 1.0, 0.5]  # (1 - 0.5) / std
        assert torch.equal(per_channel, per_channel[:, :1].expand_as(per_channel))


def test_frame_size_errors_name_the_fix(qwen):
    with pytest.raises(BackboneError, match=r"multiples of patch_size·spatial_merge_size = 4·2 = 8.*\(64, 96\)"):
        qwen.preprocess_video(clips(1, 2, (62, 98)))
    with pytest.raises(BackboneError, match="expected uint8"):
        qwen.preprocess_video(clips(1, 2).float())
    with pytest.raises(BackboneError, match=r"\(B, T, H, W, 3\)"):
        qwen.preprocess_video(clips(1, 2)[0, 0])


def test_input_size_and_frame_budget(tiny_backbone_dir):
    resized = load_backbone(str(tiny_backbone_dir(FAMILY)), vision_only=True, dtype="float32", input_size=(32, 48))
    video = resized.preprocess_video(clips(1, 2, (50, 70)))
    assert video.grid == (1, 8, 12) and resized.feature_grid(2, (50, 70)) == (1, 8, 12)
    budget = load_backbone(str(tiny_backbone_dir(FAMILY)), vision_only=True, dtype="float32", max_frames=4)
    with pytest.raises(BackboneError, match="max_frames is 4"):
        budget.preprocess_video(clips(1, 6))


def test_fps_becomes_seconds_per_temporal_step(qwen):
    video = qwen.preprocess_video(clips(3, 4), fps=torch.tensor([2.0, 10.0, 30.0]))
    torch.testing.assert_close(video.extras["second_per_grid_ts"], torch.tensor([1.0, 0.2, 2 / 30]))
    default = qwen.preprocess_video(clips(2, 4))
    assert default.extras["second_per_grid_ts"].tolist() == [1.0, 1.0]  # 2 fps when not told
    with pytest.raises(BackboneError, match="fps"):
        qwen.preprocess_video(clips(2, 4), fps=[2.0, 0.0])


# ------------------------------------------------------------------------------------------------- vision


def test_window_order_matches_transformers(qwen):
    grid = torch.tensor([[2, 16, 24], [1, 12, 20], [3, 8, 8]])
    expected, _ = get_vision_window_index(grid, spatial_merge_size=2, window_size=qwen.window_size,
                                          patch_size=qwen.patch_size)
    ours = window_merge_unit_order(grid.tolist(), spatial_merge_size=2, window_size=qwen.window_size,
                                   patch_size=qwen.patch_size)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("size", [SIZE, (40, 56)], ids=["whole-windows", "cropped-edge-windows"])
def test_layer_grids_equal_the_stock_hidden_states_placed_by_their_rotary_positions(qwen, size):
    """Independent un-permutation: each window-ordered token is put at the (h, w) its 2-D rotary position
    says (transformers' own position ids, permuted the way the stock tower permutes them)."""
    b = 2
    video = qwen.preprocess_video(clips(b, 4, size, seed=2))
    out = qwen.encode_video(video, [1, 2, 3, 4], visual_tokens=False)
    later_calls = []
    handle = qwen.visual.blocks[2].register_forward_hook(lambda *args: later_calls.append(1))
    try:
        early = qwen.encode_video(video, [2], visual_tokens=False)  # stops after block 2
    finally:
        handle.remove()
    assert later_calls == []
    assert list(early.layer_features) == [2] and torch.equal(early.layer_features[2], out.layer_features[2])
    grid_thw = video.extras["video_grid_thw"]
    with torch.no_grad():
        stock = qwen.visual(video.pixel_values, grid_thw=grid_thw, output_hidden_states=True)
    window_index, _ = get_vision_window_index(grid_thw, spatial_merge_size=2, window_size=qwen.window_size,
                                              patch_size=qwen.patch_size)
    positions = get_vision_position_ids(grid_thw, 2)  # (S, 2) (h, w) in processor order
    positions = positions.view(-1, 4, 2)[window_index].view(-1, 2)
    token = torch.arange(positions.shape[0]).view(-1, 4)[window_index].view(-1)  # processor index of each
    gt, gh, gw = video.grid
    clip, frame = token // (gt * gh * gw), (token // (gh * gw)) % gt
    for layer in (1, 2, 3, 4):
        hidden = stock.hidden_states[layer]  # [0] is the patch embedding
        expected = torch.zeros(b, gt, gh, gw, hidden.shape[-1])
        expected[clip, frame, positions[:, 0], positions[:, 1]] = hidden
        assert out.layer_features[layer].shape == (b, gt, gh, gw, qwen.vision_hidden_size)
        torch.testing.assert_close(out.layer_features[layer], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [1, 4])
def test_a_perturbed_patch_changes_its_own_grid_cell_most(qwen, layer):
    """Spatial order: invert one patch-aligned cube of the input; the largest feature change is at its cell."""
    p = qwen.patch_size
    frames = clips(1, 4, seed=4)
    base = qwen.encode_video(qwen.preprocess_video(frames), [layer], visual_tokens=False).layer_features[layer]
    # (t', h', w') in different attention windows (8×8 patches) and both temporal steps
    for t, h, w in [(0, 0, 0), (1, 5, 17), (0, 12, 9), (1, 15, 23), (0, 9, 3), (1, 7, 8)]:
        changed = frames.clone()
        cube = changed[0, 2 * t:2 * t + 2, h * p:(h + 1) * p, w * p:(w + 1) * p]
        changed[0, 2 * t:2 * t + 2, h * p:(h + 1) * p, w * p:(w + 1) * p] = 255 - cube
        feat = qwen.encode_video(qwen.preprocess_video(changed), [layer], visual_tokens=False).layer_features[layer]
        delta = (feat - base).norm(dim=-1)[0]  # (T', H', W')
        assert tuple(int(i) for i in torch.nonzero(delta == delta.max())[0]) == (t, h, w)


def test_visual_tokens_equal_get_video_features(qwen):
    video = qwen.preprocess_video(clips(2, 6, seed=5))
    out = qwen.encode_video(video, [2])
    with torch.no_grad():
        stock = qwen.core.get_video_features(video.pixel_values, video.extras["video_grid_thw"]).pooler_output
    gt, gh, gw = video.grid
    assert out.visual_tokens.shape == (2, gt * gh * gw // 4, qwen.text_hidden_size)
    assert qwen.num_visual_tokens(video) == out.visual_tokens.shape[1]
    torch.testing.assert_close(out.visual_tokens, torch.stack(stock), atol=1e-6, rtol=0)


def test_visual_token_pool_averages_merged_tokens(tiny_backbone_dir, qwen):
    pooled = load_backbone(str(tiny_backbone_dir(FAMILY)), dtype="float32", visual_token_pool=2)
    frames = clips(1, 4, seed=6)
    full = qwen.encode_video(qwen.preprocess_video(frames), [1]).visual_tokens  # (1, T'·8·12, D)
    video = pooled.preprocess_video(frames)
    out = pooled.encode_video(video, [1]).visual_tokens
    t, gh, gw = 2, 8, 12
    blocks = full.view(t, gh // 2, 2, gw // 2, 2, -1).mean(dim=(2, 4)).reshape(1, -1, full.shape[-1])
    torch.testing.assert_close(out, blocks, atol=1e-6, rtol=0)
    assert video.extras["llm_grid_thw"].tolist() == [[2, 8, 12]] and pooled.num_visual_tokens(video) == 2 * 4 * 6
    with pytest.raises(BackboneError, match="visual_token_pool=2"):
        pooled.preprocess_video(clips(1, 2, (72, 96)))


# ------------------------------------------------------------------------------------------------- language model


DIALOGUES = [
    [Turn("user", "Is there any anomaly in this video?"), Turn("assistant", "Yes.", "yesno"),
     Turn("user", "Describe the abnormal target."), Turn("assistant", "A person in a red coat.", "target")],
    [Turn("user", "Is there any anomaly?"), Turn("assistant", "No.", "yesno")],
]


def test_chat_markup_is_qwens_template(qwen):
    video = qwen.preprocess_video(clips(1, 2))
    inputs = qwen.build_dialogue_inputs(DIALOGUES[1:], video=video)
    text = qwen.tokenizer.decode(inputs.input_ids[0], skip_special_tokens=False)
    n = qwen.num_visual_tokens(video)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
        + "<|video_pad|>" * n + "<|vision_end|>Is there any anomaly?<|im_end|>\n"
        "<|im_start|>assistant\nNo.<|im_end|>\n"
    )
    assert inputs.token_type_ids[0].tolist() == [2 if v else 0 for v in inputs.visual_mask[0].tolist()]


def _own_path_logits(adapter, inputs, video):
    """The model's own multimodal forward from pixels (visual tokens computed inside, positions inside)."""
    adapter.prepare_language_model()
    with torch.no_grad():
        return adapter.model(
            input_ids=inputs.input_ids,
            attention_mask=inputs.attention_mask,
            pixel_values_videos=video.pixel_values,
            video_grid_thw=video.extras["video_grid_thw"],
            second_per_grid_ts=video.extras["second_per_grid_ts"],
            mm_token_type_ids=inputs.token_type_ids,
            use_cache=False,
        ).logits


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_precomputed_visual_tokens_give_the_models_own_3d_positions(qwen, padding_side):
    video = qwen.preprocess_video(clips(2, 4, seed=7), fps=torch.tensor([3.0, 1.0]))
    tokens = qwen.encode_video(video, [1]).visual_tokens
    inputs = qwen.build_dialogue_inputs(DIALOGUES, video=video, padding_side=padding_side)
    embeds = qwen.embed_dialogue(inputs, tokens)
    with torch.no_grad():
        _, ours = qwen.forward_dialogue(inputs, embeds, compute_loss=False)
    real = inputs.attention_mask.bool()
    torch.testing.assert_close(ours[real], _own_path_logits(qwen, inputs, video)[real], atol=1e-5, rtol=0)
    # the same embeddings with 1-D positions (no input_ids / token types) give other logits: the check above
    # would catch a fallback
    qwen.prepare_language_model()
    with torch.no_grad():
        flat = qwen.model(inputs_embeds=embeds, attention_mask=inputs.attention_mask, use_cache=False).logits
    assert (flat[real] - ours[real]).abs().max() > 1e-3


def test_fps_reaches_the_positions(qwen):
    frames = clips(1, 8, seed=8)
    logits = []
    for fps in (1.0, 8.0):
        video = qwen.preprocess_video(frames, fps=fps)
        tokens = qwen.encode_video(video, [1]).visual_tokens
        inputs = qwen.build_dialogue_inputs(DIALOGUES[1:], video=video)
        kwargs = qwen.language_model_kwargs(inputs)
        assert float(kwargs["second_per_grid_ts"]) == pytest.approx(2.0 / fps)
        with torch.no_grad():
            logits.append(qwen.forward_dialogue(inputs, qwen.embed_dialogue(inputs, tokens))[1])
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_pooled_tokens_get_positions_of_the_pooled_grid(tiny_backbone_dir):
    pooled = load_backbone(str(tiny_backbone_dir(FAMILY)), dtype="float32", visual_token_pool=2)
    video = pooled.preprocess_video(clips(1, 4, seed=9))
    inputs = pooled.build_dialogue_inputs(DIALOGUES[1:], video=video)
    kwargs = pooled.language_model_kwargs(inputs)
    positions, _ = pooled.core.get_rope_index(
        inputs.input_ids, mm_token_type_ids=inputs.token_type_ids, video_grid_thw=kwargs["video_grid_thw"],
        second_per_grid_ts=kwargs["second_per_grid_ts"],
    )
    vis = positions[:, 0, inputs.visual_mask[0]]  # (3, N): t, h, w positions of the visual tokens
    start = int(vis[1].min())
    assert vis[1].max() - start == 8 // 2 - 1 and vis[2].max() - start == 12 // 2 - 1  # a 4×6 pooled grid
    with torch.no_grad():
        loss, _ = pooled.forward_dialogue(inputs, pooled.embed_dialogue(inputs, pooled.encode_video(video, [1]).visual_tokens))
    assert loss is not None and torch.isfinite(loss)


# ------------------------------------------------------------------------------------------------- vision-only load


def test_vision_only_holds_tower_merger_and_embeddings_only(tiny_backbone_dir, qwen):
    vision = load_backbone(str(tiny_backbone_dir(FAMILY)), vision_only=True, dtype="float32")
    names = [n for n, _ in vision.model.named_parameters()]
    assert not any(".layers." in n for n in names) and not hasattr(vision.model, "lm_head")
    full_core = qwen.core
    expected = (sum(p.numel() for p in full_core.visual.parameters())
                + full_core.language_model.embed_tokens.weight.numel() + full_core.language_model.norm.weight.numel())
    assert sum(p.numel() for p in vision.model.parameters()) == expected
    assert sum(p.numel() for p in qwen.model.parameters()) > 2 * expected
    video = qwen.preprocess_video(clips(1, 4, seed=10))
    a, b = qwen.encode_video(video, [1, 4]), vision.encode_video(video, [1, 4])
    for layer in (1, 4):
        assert torch.equal(a.layer_features[layer], b.layer_features[layer])
    assert torch.equal(a.visual_tokens, b.visual_tokens)
    assert torch.equal(qwen.embed_text(["a person running"]), vision.embed_text(["a person running"]))


def test_both_checkpoint_key_layouts_load_in_both_modes(tiny_backbone_dir, qwen, tmp_path):
    """The released checkpoints (and transformers 5's save_pretrained) use the legacy keys ``visual.*``,
    ``model.layers.*``; the in-memory module layout is ``model.visual.*``, ``model.language_model.*``."""
    source = tiny_backbone_dir(FAMILY)
    state = load_file(str(source / "model.safetensors"))
    assert any(k.startswith("visual.") for k in state) and any(k.startswith("model.layers.") for k in state)
    folder = tmp_path / "module_layout"
    shutil.copytree(source, folder)
    renamed = {}
    for key, value in state.items():
        if key.startswith("visual."):
            key = "model." + key
        elif key.startswith("model."):
            key = "model.language_model." + key[len("model."):]
        renamed[key] = value
    save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    video = qwen.preprocess_video(clips(1, 2, seed=11))
    ref = qwen.encode_video(video, [1])
    for vision_only in (False, True):
        adapter = load_backbone(str(folder), vision_only=vision_only, dtype="float32")
        out = adapter.encode_video(video, [1])
        assert torch.equal(out.layer_features[1], ref.layer_features[1])
        assert torch.equal(out.visual_tokens, ref.visual_tokens)
    full = load_backbone(str(folder), dtype="float32")
    inputs = qwen.build_dialogue_inputs(DIALOGUES[1:], video=video)
    with torch.no_grad():
        a = qwen.forward_dialogue(inputs, qwen.embed_dialogue(inputs, ref.visual_tokens))[1]
        b = full.forward_dialogue(inputs, full.embed_dialogue(inputs, ref.visual_tokens))[1]
    assert torch.equal(a, b)


def test_loading_errors(tiny_backbone_dir, tmp_path):
    source = tiny_backbone_dir(FAMILY)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(source, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(BackboneError, match=r"cannot load the Qwen2.5-VL weights.*no_weights"):
        load_backbone(str(no_weights))
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(source, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    with pytest.raises(BackboneError, match="no tokenizer files"):
        load_backbone(str(no_tokenizer), vision_only=True)
    wrong = tmp_path / "wrong"
    shutil.copytree(source, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["model_type"] = "qwen2_vl"  # a config that parses, of another family
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackboneError, match="reads qwen2_5_vl"):
        Qwen2_5_VLAdapter.from_pretrained(BackboneConfig(path=str(wrong)))
