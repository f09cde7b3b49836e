"""InternVL3-hf specifics on a tiny random backbone: stock visual tokens, the pixel-shuffle order, the chat
layout and the presets. Behaviour shared with LLaVA is tested in test_frame_tower.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import InternVLConfig

from tvau_lightning.backbones.base import default_layers
from tvau_lightning.backbones.internvl import InternVLAdapter
from tvau_lightning.backbones.normalization import IMAGENET_MEAN, IMAGENET_STD
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.dialogue_schema import Turn

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "backbones"


@pytest.fixture(scope="module")
def folder(tiny_backbone_dir) -> Path:
    return tiny_backbone_dir("internvl")


def load(folder: Path, **overrides) -> InternVLAdapter:
    bb = load_backbone(str(folder), dtype="float32", **overrides)
    assert isinstance(bb, InternVLAdapter)
    return bb


def frames(t: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, t, *size, 3), dtype=torch.uint8, generator=g)


def shuffle_reference(grid: torch.Tensor) -> torch.Tensor:
    """InternVL's 2×2 pixel shuffle written out: merged cell (i, j) concatenates the patches
    (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1) on the channel axis; ``(N, h, w, C) → (N, h/2·w/2, 4C)``."""
    n, h, w, c = grid.shape
    rows = []
    for i in range(h // 2):
        for j in range(w // 2):
            rows.append(torch.cat([grid[:, 2 * i, 2 * j], grid[:, 2 * i, 2 * j + 1],
                                   grid[:, 2 * i + 1, 2 * j], grid[:, 2 * i + 1, 2 * j + 1]], dim=-1))
    return torch.stack(rows, dim=1)


def test_tiny_folder_has_the_released_key_layout(folder):
    """InternVL3-hf checkpoints store ``language_model.model.*`` / ``vision_tower.*`` keys, as transformers
    still saves them, so every tiny load (full and vision-only) goes through that layout."""
    from safetensors.torch import load_file

    keys = load_file(str(folder / "model.safetensors")).keys()
    assert any(k.startswith("language_model.model.layers.") for k in keys)
    assert any(k.startswith("vision_tower.encoder.layer.") for k in keys)


def test_visual_tokens_equal_the_stock_image_features(folder):
    bb = load(folder)
    video = bb.preprocess_video(frames(3, (40, 56)))
    ours = bb.encode_video(video, [1]).visual_tokens
    stock = bb.core.get_image_features(video.pixel_values).pooler_output  # (T, 16, D)
    assert stock.shape[1] == bb.tokens_per_frame() == (bb.patch_grid[0] // 2) * (bb.patch_grid[1] // 2)
    torch.testing.assert_close(ours, stock.reshape(1, -1, stock.shape[-1]), atol=0, rtol=0)


@pytest.mark.parametrize("input_size", [None, (32, 48)])
def test_pixel_shuffle_order(folder, input_size):
    """Our tokens = projector(written-out 2×2 shuffle of the last block's CLS-free grid), for the native
    square size (where this also pins down the stock order) and a non-square size the stock code rejects."""
    bb = load(folder, input_size=input_size)
    video = bb.preprocess_video(frames(2, (40, 40), seed=1))
    t, h, w = video.grid
    if input_size is not None:
        assert (h, w) == (input_size[0] // 4, input_size[1] // 4)
    hidden = bb.core.vision_tower(video.pixel_values, output_hidden_states=True).last_hidden_state
    grid = hidden[:, 1:].reshape(t, h, w, -1)
    expected = bb.core.multi_modal_projector(shuffle_reference(grid)).reshape(1, -1, bb.text_hidden_size)
    torch.testing.assert_close(bb.encode_video(video, [1]).visual_tokens, expected, atol=1e-5, rtol=1e-5)


def test_chat_layout_matches_the_hf_video_expansion(folder):
    bb = load(folder)
    video = bb.preprocess_video(frames(2, (32, 32)))
    dialogue = [Turn("user", "Is there any anomaly?"), Turn("assistant", "Yes.", "yesno"), Turn("user", "Where?")]
    inputs = bb.build_dialogue_inputs([dialogue], video=video, num_prompt_tokens=2, add_generation_prompt=True)
    n = bb.tokens_per_frame()
    frames_text = "".join(f"Frame{i}: <img>" + "<IMG_CONTEXT>" * n + "</img>\n" for i in (1, 2))
    slot = bb.tokenizer.decode([bb._placeholder_id])
    expected = (
        "<|im_start|>user\n" + frames_text + slot * 2 + "Is there any anomaly?<|im_end|>\n"
        "<|im_start|>assistant\nYes.<|im_end|>\n"
        "<|im_start|>user\nWhere?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert bb.tokenizer.decode(inputs.input_ids[0]) == expected
    assert bb.generation_eos_token_ids() == [bb.tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_family_default_statistics_are_imagenet(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert InternVLAdapter._read_normalization(tmp_path) == (IMAGENET_MEAN, IMAGENET_STD)


def test_presets_parse_and_fit():
    real = BackboneConfig(**yaml.safe_load((CONFIGS / "internvl3_8b.yaml").read_text()))
    vision = InternVLConfig().vision_config  # the InternViT-300M defaults: 24 blocks, 448², patch 14
    assert real.layers == default_layers(vision.num_hidden_layers) == [1, 6, 12, 24]
    tokens_per_frame = (448 // 14 // 2) ** 2 // real.visual_token_pool ** 2
    assert tokens_per_frame == 256 and real.max_frames * tokens_per_frame <= 32768
    tiny = yaml.safe_load((CONFIGS / "tiny_internvl.yaml").read_text())
    assert tiny["path"] == "demo/backbones/tiny_internvl"
    BackboneConfig(**tiny)


def test_tiny_preset_loads_the_tiny_backbone(folder):
    tiny = yaml.safe_load((CONFIGS / "tiny_internvl.yaml").read_text())
    bb = load_backbone(BackboneConfig(**{**tiny, "path": str(folder)}))
    assert isinstance(bb, InternVLAdapter) and bb.dtype == torch.float32
    assert bb.layers == [1, 2, 4]
