"""LLaVA-1.5 and LLaVA-NeXT (1.6): a CLIP ViT-L/14-336 tower, a 2-layer MLP projector, Vicuna / Mistral.

Vision: each frame is one 336×336 image → 1 CLS + 24×24 patch tokens per block; the intermediate grids
are the patch tokens with the CLS dropped. The LLM tokens follow the stock ``get_image_features`` path:
hidden state ``vision_feature_layer`` (−2, the second-to-last block — independent of the AHD layers, which
read any blocks), CLS dropped (``default`` strategy), MLP projector → 576 tokens per frame.

LLaVA-NeXT video layout (a decision; transformers has no video path for ``llava_next``): each frame is
encoded as the NeXT *base tile* only — the whole frame resized to 336×336, which is exactly the first
tile the NeXT image processor produces — with no high-resolution tiles and no ``image_newline`` tokens,
as LLaVA-NeXT-Video does. Its tokens equal the base-tile part of the stock ``get_image_features`` output.
``visual_token_pool: 2`` gives NeXT-Video's 12×12 = 144 tokens per frame (pooled after the projector;
NeXT-Video pools before it).

Context: LLaVA-1.5's Llama has 4,096 positions, so 8 frames × 576 tokens already overflow — the configs
use ``visual_token_pool`` / ``max_frames`` budgets, and an overflow raises :class:`ContextOverflowError`
with the numbers. The model forward takes ``inputs_embeds`` only (it rejects ``input_ids`` alongside).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextModel,
)

from tvau_lightning.backbones.base import ChatFormat, VideoInputs, _Segment, register_adapter
from tvau_lightning.backbones.frame_tower import CLIP_MEAN, CLIP_STD, FrameTowerAdapter

#: LLaVA-1.5's (Vicuna v1) system prompt
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class _LlavaFamily(FrameTowerAdapter):
    """What LLaVA-1.5 and LLaVA-NeXT share: CLIP tower, MLP projector, ``<image>`` placeholders."""

    default_mean: ClassVar[tuple[float, float, float]] = CLIP_MEAN
    default_std: ClassVar[tuple[float, float, float]] = CLIP_STD
    image_token: ClassVar[str] = "<image>"

    def _vision_kwargs(self) -> dict[str, Any]:
        # CLIP's learned position table is for the native grid; other input sizes interpolate it
        if self.input_size != self.native_size and self.vision_config.model_type == "clip_vision_model":
            return {"interpolate_pos_encoding": True}
        return {}

    @property
    def vision_has_cls(self) -> bool:
        return self.vision_config.model_type != "siglip_vision_model"

    def _tokens_from_hidden(self, vision_out: Any) -> torch.Tensor:
        """The stock ``get_image_features`` after the tower: select the layer(s), drop CLS (``default``),
        concatenate multiple layers on the channel axis, project."""
        cfg = self.hf_config
        layers = cfg.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        drop = 1 if cfg.vision_feature_select_strategy == "default" else 0
        feats = torch.cat([vision_out.hidden_states[i][:, drop:] for i in layers], dim=-1)
        return self.core.multi_modal_projector(feats)

    def visual_tokens_per_clip(self, video: VideoInputs) -> int:
        per = self.tokens_per_frame()
        if self.hf_config.vision_feature_select_strategy == "full" and self.vision_has_cls:
            per += 1
        return video.grid[0] * per

    def visual_placeholder(self, video: VideoInputs) -> list[_Segment]:
        """All frames' tokens as one run of ``<image>`` placeholders, then a newline (``<image>\\n``)."""
        return [
            _Segment([self.image_token_id] * self.visual_tokens_per_clip(video), "visual"),
            _Segment(self.tokenize("\n")),
        ]

    def _bos(self) -> str:
        return self.tokenizer.bos_token or ""

    def _vicuna_format(self) -> ChatFormat:
        # Segments are tokenized one by one; the formats are written for Llama/Mistral SentencePiece
        # tokenizers, which prefix each segment with "▁" — that prefix plays the space before "ASSISTANT:"
        # and before each answer, so no segment carries a trailing space that would become a lone "▁".
        return ChatFormat(
            system=self._bos() + VICUNA_SYSTEM,
            user_prefix="USER: ",
            user_suffix="",
            assistant_prefix="ASSISTANT:",
            assistant_suffix=self.tokenizer.eos_token or "</s>",
        )

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """Special tokens of a tiny Llama/Mistral-style tokenizer with LLaVA's ``<image>``."""
        return {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "additional_special_tokens": ["<s>", "</s>", "<unk>", "<pad>", cls.image_token],
        }

    @classmethod
    def _tiny_parts(cls, tokenizer: Any, text_type: str, overrides: dict[str, Any]) -> tuple[dict, dict, dict]:
        image_size = int(overrides.pop("image_size", 32))
        patch = int(overrides.pop("patch_size", 4))
        v_hidden = int(overrides.pop("vision_hidden", 32))
        t_hidden = int(overrides.pop("text_hidden", 64))
        vision = {
            "model_type": "clip_vision_model",
            "hidden_size": v_hidden,
            "num_hidden_layers": int(overrides.pop("vision_layers", 4)),
            "num_attention_heads": 2,
            "intermediate_size": 2 * v_hidden,
            "image_size": image_size,
            "patch_size": patch,
            "projection_dim": v_hidden,
        }
        text = {
            "model_type": text_type,
            "hidden_size": t_hidden,
            "num_hidden_layers": int(overrides.pop("text_layers", 2)),
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 2 * t_hidden,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": int(overrides.pop("max_position_embeddings", 2048)),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        extra = {
            "image_token_index": tokenizer.convert_tokens_to_ids(cls.image_token),
            "image_seq_length": (image_size // patch) ** 2,
        }
        if overrides:
            raise TypeError(f"unknown tiny {cls.family} overrides: {', '.join(sorted(overrides))}")
        return vision, text, extra


@register_adapter
class LlavaAdapter(_LlavaFamily):
    """LLaVA-1.5 (``llava-hf/llava-1.5-7b-hf``, ``model_type: llava``). Default AHD layers for the
    24-block CLIP ViT-L: 1, 6, 12, 24; the LLM tokens come from block 23 (``vision_feature_layer: -2``)."""

    family: ClassVar[str] = "llava"
    model_types: ClassVar[tuple[str, ...]] = ("llava",)
    full_model_class: ClassVar[Any] = LlavaForConditionalGeneration
    base_model_class: ClassVar[Any] = LlavaModel
    config_class: ClassVar[Any] = LlavaConfig

    @property
    def chat_format(self) -> ChatFormat:
        """LLaVA-1.5 (Vicuna v1): ``<s>{system} USER: <image>…\\n{question} ASSISTANT: {answer}</s>``."""
        return self._vicuna_format()

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> LlavaConfig:
        """A tiny LLaVA-1.5-structured config: 4 CLIP blocks of width 32 on 32×32 frames with 4×4 patches
        (8×8 = 64 tokens per frame), a 2-layer Llama of width 64. Overrides as in the InternVL tiny config."""
        vision, text, extra = cls._tiny_parts(tokenizer, "llama", dict(overrides))
        return LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-2,
                           vision_feature_select_strategy="default", **extra)


@register_adapter
class LlavaNextAdapter(_LlavaFamily):
    """LLaVA-NeXT / 1.6 (``llava-hf/llava-v1.6-mistral-7b-hf``, ``model_type: llava_next``), one base tile
    per frame (see the module docstring). The chat format follows the text model: Mistral ``[INST]``,
    Vicuna for Llama-based 1.6 models, ChatML otherwise (the 34B)."""

    family: ClassVar[str] = "llava_next"
    model_types: ClassVar[tuple[str, ...]] = ("llava_next",)
    full_model_class: ClassVar[Any] = LlavaNextForConditionalGeneration
    base_model_class: ClassVar[Any] = LlavaNextModel
    config_class: ClassVar[Any] = LlavaNextConfig

    @property
    def chat_format(self) -> ChatFormat:
        """Mistral: ``<s>[INST] <image>…\\n{question} [/INST] {answer}</s>[INST] …``."""
        text_type = self.hf_config.text_config.model_type
        if text_type == "mistral":
            return ChatFormat(
                system=self._bos(),
                user_prefix="[INST] ",
                user_suffix=" [/INST]",
                assistant_prefix="",
                assistant_suffix=self.tokenizer.eos_token or "</s>",
            )
        if text_type == "llama":
            return self._vicuna_format()
        return ChatFormat(
            system="<|im_start|>system\nAnswer the questions.<|im_end|>\n",
            user_prefix="<|im_start|>user\n",
            user_suffix="<|im_end|>\n",
            assistant_prefix="<|im_start|>assistant\n",
            assistant_suffix="<|im_end|>\n",
        )

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        tokens = super().tiny_special_tokens()
        tokens["additional_special_tokens"] = [*tokens["additional_special_tokens"], "[INST]", "[/INST]"]
        return tokens

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> LlavaNextConfig:
        """A tiny LLaVA-NeXT (Mistral) config: as the tiny LLaVA, Mistral text model, and any-res grid
        pinpoints of 1×1 … 2×2 tiles (used only by the stock image path the tests compare against)."""
        vision, text, extra = cls._tiny_parts(tokenizer, "mistral", dict(overrides))
        s = vision["image_size"]
        return LlavaNextConfig(
            vision_config=vision,
            text_config=text,
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
            image_grid_pinpoints=[[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]],
            **extra,
        )
