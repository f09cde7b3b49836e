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
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLModel

from tvau_lightning.backbones.base import BackboneError, ChatFormat, VideoInputs, _Segment, register_adapter
from tvau_lightning.backbones.frame_tower import IMAGENET_MEAN, IMAGENET_STD, FrameTowerAdapter


@register_adapter
class InternVLAdapter(FrameTowerAdapter):
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

    @property
    def shuffle_factor(self) -> int:
        """Patches merged per side by the pixel shuffle (2 for ``downsample_ratio`` 0.5)."""
        ratio = float(self.hf_config.downsample_ratio)
        factor = round(1 / ratio)
        if abs(factor * ratio - 1) > 1e-6:
            raise BackboneError(f"InternVL downsample_ratio {ratio} is not 1/k for an integer k")
        return factor

    @property
    def grid_multiple(self) -> int:  # type: ignore[override]
        return self.shuffle_factor

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
        return ChatFormat(
            system=None,
            user_prefix="<|im_start|>user\n",
            user_suffix="<|im_end|>\n",
            assistant_prefix="<|im_start|>assistant\n",
            assistant_suffix="<|im_end|>\n",
        )

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
        """Special tokens of a tiny InternVL tokenizer (Qwen2 markup + InternVL image markers)."""
        return {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": [
                "<|im_start|>", "<|im_end|>", "<|endoftext|>",
                cls.start_image_token, cls.end_image_token, cls.image_token, "<video>",
            ],
        }

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> InternVLConfig:
        """A tiny InternVL3-structured config: 4 InternViT blocks of width 32 on 32×32 frames with 4×4
        patches (an 8×8 grid → 16 LLM tokens per frame after the 2×2 shuffle), a 2-layer Qwen2 of width 64.

        ``overrides``: ``image_size``, ``patch_size``, ``vision_layers``, ``vision_hidden``, ``text_layers``,
        ``text_hidden``, ``max_position_embeddings``.
        """
        vocab = len(tokenizer)
        image_size = int(overrides.pop("image_size", 32))
        patch = int(overrides.pop("patch_size", 4))
        v_hidden = int(overrides.pop("vision_hidden", 32))
        t_hidden = int(overrides.pop("text_hidden", 64))
        vision = {
            "hidden_size": v_hidden,
            "num_hidden_layers": int(overrides.pop("vision_layers", 4)),
            "num_attention_heads": 2,
            "intermediate_size": 2 * v_hidden,
            "image_size": [image_size, image_size],
            "patch_size": [patch, patch],
        }
        text = {
            "model_type": "qwen2",
            "hidden_size": t_hidden,
            "num_hidden_layers": int(overrides.pop("text_layers", 2)),
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 2 * t_hidden,
            "vocab_size": vocab,
            "max_position_embeddings": int(overrides.pop("max_position_embeddings", 2048)),
            "tie_word_embeddings": True,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        }
        if overrides:
            raise TypeError(f"unknown tiny InternVL overrides: {', '.join(sorted(overrides))}")
        grid = image_size // patch
        return InternVLConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=tokenizer.convert_tokens_to_ids(cls.image_token),
            image_seq_length=(grid // 2) ** 2,
            downsample_ratio=0.5,
            tie_word_embeddings=True,
        )
