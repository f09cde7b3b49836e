"""InternVL3 in the transformers-native ("-hf") format: InternViT-300M (448², patch 14) + Qwen2.5.

Vision: every frame is one 448×448 tile (no dynamic tiling for video, as the HF video processor does);
the ViT's hidden states are plain ``1 + 32×32`` token sequences — the 2×2 pixel shuffle that turns a tile
into 16×16 = 256 LLM tokens happens *after* the ViT — so intermediate layers give ``(T, 32, 32)`` grids.
Chat: Qwen2.5 markup, and one block per frame like the HF processor's video expansion
(``Frame{i}: <img>`` + 256 × ``<IMG_CONTEXT>`` + ``</img>`` + newline). The model forward takes
``inputs_embeds`` only (it rejects ``input_ids`` alongside).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLModel

from tvau_lightning.backbones.dialogue import ChatFormat, _Segment
from tvau_lightning.backbones.frame_tower import FrameTowerAdapter, _pair
from tvau_lightning.backbones.normalization import IMAGENET_MEAN, IMAGENET_STD
from tvau_lightning.backbones.registry import register_adapter
from tvau_lightning.backbones.tiny import TINY_SHARED_SETTINGS, TinyHooks, tiny_settings, tiny_text_config
from tvau_lightning.backbones.types import BackboneError, VideoInputs


@register_adapter
class InternVLAdapter(TinyHooks, FrameTowerAdapter):
    """InternVL3-*-hf (``model_type: internvl``). Default AHD layers for the 24-block InternViT-300M:
    1, 6, 12, 24."""

    family: ClassVar[str] = "internvl"
    model_types: ClassVar[tuple[str, ...]] = ("internvl",)
    full_model_class: ClassVar[Any] = InternVLForConditionalGeneration
    base_model_class: ClassVar[Any] = InternVLModel
    config_class: ClassVar[Any] = InternVLConfig
    # InternVL3-hf ships ImageNet statistics in its (video) preprocessor config; the class default in
    # transformers' InternVLVideoProcessor is CLIP's, so the folder's file wins when present.
    default_mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    default_std: ClassVar[tuple[float, float, float]] = IMAGENET_STD
    image_token: ClassVar[str] = "<IMG_CONTEXT>"
    start_image_token: ClassVar[str] = "<img>"
    end_image_token: ClassVar[str] = "</img>"

    @classmethod
    def grid_multiple(cls, hf_config: Any) -> int:
        """Patches merged per side by the pixel shuffle (2 for ``downsample_ratio`` 0.5)."""
        ratio = float(hf_config.downsample_ratio)
        factor = round(1 / ratio)
        if abs(factor * ratio - 1) > 1e-6:
            raise BackboneError(f"InternVL downsample_ratio {ratio} is not 1/k for an integer k")
        return factor

    @property
    def shuffle_factor(self) -> int:
        return self.grid_multiple(self.hf_config)

    def token_grid(self) -> tuple[int, int]:
        h, w = self.patch_grid
        k = self.shuffle_factor
        return (h // k, w // k)

    def _tokens_from_hidden(self, vision_out: Any) -> torch.Tensor:
        """The stock ``InternVLModel.get_image_features`` after the tower: select, drop CLS, pixel-shuffle
        the ``(h, w)`` grid, project. Works for non-square input sizes too (the stock code assumes square)."""
        cfg = self.hf_config
        layer = cfg.vision_feature_layer
        if not isinstance(layer, int):
            raise BackboneError(f"InternVL vision_feature_layer must be one int, got {layer!r}")
        feats = vision_out.last_hidden_state if layer == -1 else vision_out.hidden_states[layer]
        if cfg.vision_feature_select_strategy != "default":
            raise BackboneError(
                f"InternVL vision_feature_select_strategy {cfg.vision_feature_select_strategy!r} is not supported "
                "(the pixel shuffle needs the CLS-free patch grid); use 'default'"
            )
        feats = feats[:, 1:]
        h, w = self.patch_grid
        feats = feats.reshape(feats.shape[0], h, w, feats.shape[-1])
        feats = self.core.pixel_shuffle(feats, scale_factor=cfg.downsample_ratio)
        feats = feats.reshape(feats.shape[0], -1, feats.shape[-1])
        return self.core.multi_modal_projector(feats)

    # ---- chat ------------------------------------------------------------------------------------

    @property
    def chat_format(self) -> ChatFormat:
        """The InternVL3-hf chat template (Qwen2.5 markup, no default system message)."""
        return ChatFormat.chatml(None)

    def visual_placeholder(self, video: VideoInputs) -> list[_Segment]:
        """Per frame ``Frame{i}: <img>`` + n × ``<IMG_CONTEXT>`` + ``</img>\\n`` (i from 1)."""
        n = self.visual_tokens_per_clip(video) // video.grid[0]
        end = self.tokenize(f"{self.end_image_token}\n")
        segs: list[_Segment] = []
        for i in range(video.grid[0]):
            segs.append(_Segment(self.tokenize(f"Frame{i + 1}: {self.start_image_token}")))
            segs.append(_Segment([self.image_token_id] * n, "visual"))
            segs.append(_Segment(list(end)))
        return segs

    # ---- tiny models -----------------------------------------------------------------------------

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """Qwen2 chat markup + InternVL's image markers (``<img>``, ``</img>``, ``<IMG_CONTEXT>``, ``<video>``)."""
        return {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": list(_TINY_SPECIAL_TOKENS),
        }

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> InternVLConfig:
        """An InternVL3-structured config with :data:`TINY_INTERNVL_SETTINGS` (+ ``overrides``): 4 InternViT
        blocks of width 32 on 32×32 frames with 4-px patches (an 8×8 feature grid, 4×4 = 16 LLM tokens per
        frame after the 2×2 shuffle; the released model: 24 blocks, 448², 14-px patches, 256 tokens) and a
        2-layer Qwen2 of width 64."""
        s = tiny_settings("internvl", TINY_INTERNVL_SETTINGS, overrides)
        return InternVLConfig(
            vision_config={
                "hidden_size": s["vision_hidden_size"],
                "num_hidden_layers": s["vision_layers"],
                "num_attention_heads": s["vision_heads"],
                "intermediate_size": s["vision_intermediate_size"],
                "image_size": [s["image_size"], s["image_size"]],
                "patch_size": [s["patch_size"], s["patch_size"]],
                "initializer_range": s["initializer_range"],
            },
            text_config={
                **tiny_text_config(s, tokenizer),
                "model_type": "qwen2",
                "tie_word_embeddings": True,
                "bos_token_id": None,
                "eos_token_id": int(tokenizer.convert_tokens_to_ids("<|im_end|>")),
                "pad_token_id": int(tokenizer.pad_token_id),
            },
            image_token_id=int(tokenizer.convert_tokens_to_ids(cls.image_token)),
            image_seq_length=(s["image_size"] // s["patch_size"] // 2) ** 2,
            downsample_ratio=0.5,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
            tie_word_embeddings=True,
        )

    @classmethod
    def tiny_processor_files(cls, model: nn.Module) -> dict[str, dict[str, Any]]:
        size = _pair(model.config.vision_config.image_size)
        return {
            "preprocessor_config.json": {
                "image_mean": list(IMAGENET_MEAN),
                "image_std": list(IMAGENET_STD),
                "size": {"height": size[0], "width": size[1]},
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1.0 / 255.0,
            }
        }


_TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")

#: settings of the tiny random model (``build_tiny_backbone("internvl", **overrides)``)
TINY_INTERNVL_SETTINGS: dict[str, Any] = {
    **TINY_SHARED_SETTINGS,
    "image_size": 32,  # the released model: 448
    "patch_size": 4,  # the released model: 14
    "vision_layers": 4,
}

