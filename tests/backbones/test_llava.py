"""LLaVA-1.5 and LLaVA-NeXT specifics on tiny random backbones: stock visual tokens (NeXT: the base tile),
preprocessing against HF's PIL processor, CLIP position interpolation, chat text, the 4,096-token context and
the presets. Behaviour shared with InternVL is tested in test_frame_tower.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from tvau_lightning.backbones.base import default_layers
from tvau_lightning.backbones.llava import VICUNA_SYSTEM, LlavaAdapter, LlavaNextAdapter
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.tiny import build_tiny_backbone
from tvau_lightning.backbones.types import BackboneConfig, ContextOverflowError
from tvau_lightning.data.dialogue_schema import Turn

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "backbones"
LLAVA_FAMILIES = ["llava", "llava_next"]
QUESTION = [Turn("user", "Is there any anomaly?"), Turn("assistant", "Yes.", "yesno"), Turn("user", "Where?")]


def load(folder: Path, **overrides):
    bb = load_backbone(str(folder), dtype="float32", **overrides)
    assert isinstance(bb, (LlavaAdapter, LlavaNextAdapter))
    return bb


def frames(t: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, t, *size, 3), dtype=torch.uint8, generator=g)


def test_llava_visual_tokens_equal_the_stock_image_features(tiny_backbone_dir):
    bb = load(tiny_backbone_dir("llava"))
    video = bb.preprocess_video(frames(3, (40, 56)))
    stock = torch.stack(bb.core.get_image_features(video.pixel_values).pooler_output)  # (T, 64, D)
    assert stock.shape[1] == bb.tokens_per_frame() == bb.patch_grid[0] * bb.patch_grid[1]
    ours = bb.encode_video(video, [1]).visual_tokens
    torch.testing.assert_close(ours, stock.reshape(1, -1, stock.shape[-1]), atol=0, rtol=0)


@pytest.mark.parametrize("pool", [1, 2])
def test_full_select_strategy_keeps_the_cls_token(tiny_backbone_dir, pool):
    """``vision_feature_select_strategy: full`` sends CLS + grid per frame; pooling leaves the CLS alone."""
    bb = load(tiny_backbone_dir("llava"), visual_token_pool=pool)
    bb.model.config.vision_feature_select_strategy = "full"
    video = bb.preprocess_video(frames(2, (32, 32), seed=6))
    stock = torch.stack(bb.core.get_image_features(video.pixel_values).pooler_output)  # (T, 1 + 64, D)
    h, w = bb.token_grid()
    d = stock.shape[-1]
    grid = stock[:, 1:].reshape(2, h // pool, pool, w // pool, pool, d).mean(dim=(2, 4)).reshape(2, -1, d)
    expected = torch.cat([stock[:, :1], grid], dim=1).reshape(1, -1, d)
    ours = bb.encode_video(video, [1]).visual_tokens
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert bb.visual_tokens_per_clip(video) == ours.shape[1] == 2 * (1 + (h // pool) * (w // pool))


def test_llava_next_frame_tokens_are_the_stock_base_tile(tiny_backbone_dir):
    """Fed as a 2-tile any-res image (base tile + one high-res tile), the stock path's output starts with
    the base tile's tokens; ours are exactly those, without the high-res tiles and newline tokens."""
    bb = load(tiny_backbone_dir("llava_next"))
    video = bb.preprocess_video(frames(2, (40, 56), seed=1))
    s = bb.input_size[0]
    extra = torch.randn(2, 1, 3, s, s, generator=torch.Generator().manual_seed(0))
    tiles = torch.cat([video.pixel_values.unsqueeze(1), extra], dim=1)  # (T, 2, 3, S, S)
    stock = bb.core.get_image_features(tiles, torch.tensor([[s, s], [s, s]])).pooler_output
    n = bb.tokens_per_frame()
    h, w = bb.patch_grid
    assert all(o.shape[0] == n + h * (w + 1) for o in stock)  # base + tile with one newline per row
    ours = bb.encode_video(video, [1]).visual_tokens.reshape(2, n, -1)
    for t in range(2):
        torch.testing.assert_close(ours[t], stock[t][:n], atol=1e-6, rtol=1e-6)
    newline = bb.core.image_newline
    assert not any(torch.allclose(tok, newline) for tok in ours.reshape(-1, ours.shape[-1]))


@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_preprocessing_matches_hf_pil_processor_without_crop(family, tiny_backbone_dir):
    """Same as HF's LLaVA image processor asked to resize to S×S without the centre crop, up to PIL's
    uint8 rounding (≈1/255 before normalisation)."""
    bb = load(tiny_backbone_dir(family))
    coarse = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(2)) * 255
    image = F.interpolate(coarse, size=(50, 60), mode="bilinear").round().clamp(0, 255).to(torch.uint8)[0]
    image = image.permute(1, 2, 0).contiguous()  # (H, W, 3)
    s = bb.input_size
    hf = LlavaImageProcessorPil(size={"height": s[0], "width": s[1]}, do_center_crop=False,
                                image_mean=bb.pixel_mean.flatten().tolist(), image_std=bb.pixel_std.flatten().tolist())
    expected = hf(images=[Image.fromarray(image.numpy())], return_tensors="pt")["pixel_values"]
    ours = bb.preprocess_video(image[None, None]).pixel_values
    assert ours.shape == expected.shape
    assert float((ours - expected).abs().max()) < 2.5 / 255 / float(bb.pixel_std.min())
    assert float((ours - expected).abs().mean()) < 0.5 / 255 / float(bb.pixel_std.min())
    assert np.allclose(bb.pixel_mean.flatten().numpy(), (0.48145466, 0.4578275, 0.40821073))


@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_other_input_size_interpolates_clip_positions(family, tiny_backbone_dir):
    bb = load(tiny_backbone_dir(family), input_size=(48, 32))
    video = bb.preprocess_video(frames(2, (40, 40), seed=3))
    assert video.grid == (2, 12, 8)
    out = bb.encode_video(video, [1])
    hidden = bb.core.vision_tower(video.pixel_values, output_hidden_states=True,
                                  interpolate_pos_encoding=True).hidden_states[1]
    torch.testing.assert_close(out.layer_features[1], hidden[:, 1:].reshape(1, 2, 12, 8, -1), atol=0, rtol=0)
    if family == "llava":
        stock = torch.stack(bb.core.get_image_features(video.pixel_values, interpolate_pos_encoding=True).pooler_output)
        torch.testing.assert_close(out.visual_tokens, stock.reshape(1, -1, stock.shape[-1]), atol=0, rtol=0)
    assert out.visual_tokens.shape[1] == 2 * 12 * 8


@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_released_key_layout_loads_in_both_modes(family, tiny_backbone_dir, tmp_path):
    """llava-hf checkpoints keep the pre-transformers-5 keys (``language_model.model.*``,
    ``language_model.lm_head``, ``vision_tower.vision_model.*``): full and vision-only loads read them."""
    source = tiny_backbone_dir(family)
    folder = tmp_path / "hub"
    shutil.copytree(source, folder)
    state = load_file(str(source / "model.safetensors"))
    assert any(k.startswith("language_model.model.layers.") for k in state)  # transformers saves this layout
    hub = {("vision_tower.vision_model." + k[len("vision_tower."):] if k.startswith("vision_tower.") else k): v
           for k, v in state.items()}
    save_file(hub, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ref = load(source)
    video = ref.preprocess_video(frames(2, (32, 32), seed=5))
    expected = ref.encode_video(video)
    for vision_only in (False, True):
        bb = load(folder, vision_only=vision_only)
        out = bb.encode_video(video)
        for i in expected.layer_features:
            assert torch.equal(out.layer_features[i], expected.layer_features[i])
        assert torch.equal(out.visual_tokens, expected.visual_tokens)
    full = load(folder).model.state_dict()
    assert all(torch.equal(v, full[k]) for k, v in ref.model.state_dict().items())


def _literal(bb, n_visual: int, n_prompt: int) -> str:
    """The dialogue text with visual/prompt placeholders written out."""
    return "<image>" * n_visual + "\n" + bb.tokenizer.decode([bb._placeholder_id]) * n_prompt


def test_llava_chat_text(tiny_backbone_dir):
    bb = load(tiny_backbone_dir("llava"))
    video = bb.preprocess_video(frames(2, (32, 32)))
    inputs = bb.build_dialogue_inputs([QUESTION], video=video, num_prompt_tokens=2, add_generation_prompt=True)
    expected = (
        "<s>" + VICUNA_SYSTEM + " USER: " + _literal(bb, 2 * 64, 2) + "Is there any anomaly?"
        " ASSISTANT: Yes.</s>USER: Where? ASSISTANT:"
    )
    assert bb.tokenizer.decode(inputs.input_ids[0]) == expected
    assert bb.generation_eos_token_ids() == [bb.tokenizer.eos_token_id]


def test_llava_next_chat_text(tiny_backbone_dir):
    bb = load(tiny_backbone_dir("llava_next"))
    video = bb.preprocess_video(frames(2, (32, 32)))
    inputs = bb.build_dialogue_inputs([QUESTION], video=video, num_prompt_tokens=2, add_generation_prompt=True)
    expected = "<s>[INST] " + _literal(bb, 2 * 64, 2) + "Is there any anomaly? [/INST] Yes.</s>[INST] Where? [/INST]"
    assert bb.tokenizer.decode(inputs.input_ids[0]) == expected
    # a Llama-based 1.6 checkpoint chats like LLaVA-1.5; other text models (the 34B) use ChatML
    bb.model.config.text_config.model_type = "llama"
    assert bb.chat_format.user_prefix == "USER: " and bb.chat_format.assistant_prefix == "ASSISTANT:"
    bb.model.config.text_config.model_type = "qwen2"
    assert bb.chat_format.assistant_prefix == "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def real_grid_llava(tmp_path_factory) -> Path:
    """A tiny LLaVA with the released geometry where it matters: 336² frames, 14-px patches (24×24 = 576
    tokens per frame) and a 4,096-position LLM; one narrow CLIP block keeps it fast."""
    out = tmp_path_factory.mktemp("llava_336") / "model"
    build_tiny_backbone("llava", out, image_size=336, patch_size=14, vision_layers=2, vision_hidden_size=16,
                        max_position_embeddings=4096)
    return out


def test_eight_frames_of_576_tokens_overflow_llava_1_5_context(real_grid_llava):
    bb = load(real_grid_llava)
    assert bb.max_context_length == 4096 and bb.tokens_per_frame() == 576
    video = bb.preprocess_video(frames(8, (336, 336)))
    with pytest.raises(ContextOverflowError) as err:
        bb.build_dialogue_inputs([QUESTION], video=video)
    message = str(err.value)
    for part in ("4608 visual", "limit is 4096", "8 frames × 576 visual tokens/frame", "grid 24×24",
                 "visual_token_pool=2: 144 tokens/frame → at most 28 frames", "max_frames"):
        assert part in message, (part, message)

    pooled = load(real_grid_llava, visual_token_pool=2)
    inputs = pooled.build_dialogue_inputs([QUESTION[:2]], video=video, num_prompt_tokens=20)
    assert int(inputs.visual_mask.sum()) == 8 * 144
    tokens = pooled.encode_video(video, [1]).visual_tokens
    loss, _ = pooled.forward_dialogue(inputs, pooled.embed_dialogue(inputs, tokens, torch.zeros(1, 20, 64)))
    assert loss is not None and torch.isfinite(loss)
    with pytest.raises(ContextOverflowError, match="limit is 1000"):
        pooled.build_dialogue_inputs([QUESTION], video=video, max_length=1000)


def test_presets_parse_and_fit():
    llava = BackboneConfig(**yaml.safe_load((CONFIGS / "llava_1_5_7b.yaml").read_text()))
    nxt = BackboneConfig(**yaml.safe_load((CONFIGS / "llava_next_7b.yaml").read_text()))
    grid = 336 // 14
    assert 8 * grid * grid > 4096  # why LLaVA-1.5 needs a budget at all
    for cfg, context in ((llava, 4096), (nxt, 32768)):
        assert cfg.layers == default_layers(24) == [1, 6, 12, 24]
        per_frame = -(-grid // cfg.visual_token_pool) ** 2
        # leave room for 20 prompt tokens per step and ~1,000 tokens of dialogue
        assert cfg.max_frames * per_frame + 20 * cfg.max_frames + 1000 <= context
    for family in LLAVA_FAMILIES:
        tiny = yaml.safe_load((CONFIGS / f"tiny_{family}.yaml").read_text())
        assert tiny["path"] == f"demo/backbones/tiny_{family}"


@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_tiny_preset_loads_the_tiny_backbone(family, tiny_backbone_dir):
    tiny = yaml.safe_load((CONFIGS / f"tiny_{family}.yaml").read_text())
    bb = load_backbone(BackboneConfig(**{**tiny, "path": str(tiny_backbone_dir(family))}))
    assert bb.family == family and bb.dtype == torch.float32 and bb.layers == [1, 2, 4]
