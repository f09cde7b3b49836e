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
from torch import nn
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextModel,
)

from tvau_lightning.backbones.dialogue import ChatFormat, _Segment
from tvau_lightning.backbones.frame_tower import FrameTowerAdapter
from tvau_lightning.backbones.normalization import CLIP_MEAN, CLIP_STD
from tvau_lightning.backbones.registry import register_adapter
from tvau_lightning.backbones.tiny import TINY_SHARED_SETTINGS, TinyHooks, tiny_settings, tiny_text_config
from tvau_lightning.backbones.types import VideoInputs

#: LLaVA-1.5's (Vicuna v1) system prompt
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class _LlavaFamily(TinyHooks, FrameTowerAdapter):
    """What LLaVA-1.5 and LLaVA-NeXT share: CLIP tower, MLP projector, ``<image>`` placeholders."""

    default_mean: ClassVar[tuple[float, float, float]] = CLIP_MEAN
    default_std: ClassVar[tuple[float, float, float]] = CLIP_STD
    image_token: ClassVar[str] = "<image>"

    def _vision_kwargs(self) -> dict[str, Any]:
        # CLIP's learned position table is for the native grid; other input sizes interpolate it
        if self.input_size != self.native_size and self.vision_config.model_type == "clip_vision_model":
            return {"interpolate_pos_encoding": True}
        return {}

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
        if self.hf_config.vision_feature_select_strategy == "full":  # the CLS token goes to the LLM too
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
        # Vicuna v1 as LLaVA-1.5 was trained on: "<s>{system} USER: {q} ASSISTANT: {a}</s>USER: …"; the
        # dialogue is tokenised in one piece (backbones/dialogue.py), so the spaces are written out
        return ChatFormat(
            system=self._bos() + VICUNA_SYSTEM + " ",
            user_prefix="USER: ",
            user_suffix=" ",
            assistant_prefix="ASSISTANT:",
            assistant_suffix=self.tokenizer.eos_token or "</s>",
            answer_separator=" ",
        )

    # ---- tiny models -----------------------------------------------------------------------------

    #: text model type of the tiny model
    tiny_text_model_type: ClassVar[str] = "llama"

    @classmethod
    def tiny_special_tokens(cls) -> dict[str, Any]:
        """A Llama/Mistral-style special-token set (``<unk> <s> </s> <pad>``) plus LLaVA's ``<image>``."""
        return {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "additional_special_tokens": ["<unk>", "<s>", "</s>", "<pad>", cls.image_token],
        }

    @classmethod
    def tiny_config(cls, tokenizer: Any, **overrides: Any) -> Any:
        """A LLaVA config with :data:`TINY_LLAVA_SETTINGS` (+ ``overrides``): 4 CLIP blocks of width 32 on
        32×32 frames with 4-px patches (an 8×8 grid = 64 LLM tokens per frame; the released towers: 24 blocks,
        336², 14-px patches → 576) and a 2-layer Llama (LLaVA-1.5) or Mistral (NeXT) of width 64 with
        LLaVA-1.5's 4,096 positions. LLM tokens come from block −2 with the CLS dropped, as released."""
        s = tiny_settings(cls.family, TINY_LLAVA_SETTINGS, overrides)
        vision = {
            "model_type": "clip_vision_model",
            "hidden_size": s["vision_hidden_size"],
            "num_hidden_layers": s["vision_layers"],
            "num_attention_heads": s["vision_heads"],
            "intermediate_size": s["vision_intermediate_size"],
            "image_size": s["image_size"],
            "patch_size": s["patch_size"],
            "projection_dim": s["vision_hidden_size"],
            "initializer_range": s["initializer_range"],
        }
        text = {
            **tiny_text_config(s, tokenizer),
            "model_type": cls.tiny_text_model_type,
            "bos_token_id": int(tokenizer.bos_token_id),
            "eos_token_id": int(tokenizer.eos_token_id),
            "pad_token_id": int(tokenizer.pad_token_id),
        }
        common = {
            "vision_config": vision,
            "text_config": text,
            "image_token_index": int(tokenizer.convert_tokens_to_ids(cls.image_token)),
            "image_seq_length": (s["image_size"] // s["patch_size"]) ** 2,
            "vision_feature_layer": -2,
            "vision_feature_select_strategy": "default",
            "projector_hidden_act": "gelu",
        }
        return cls._tiny_config(common, s)

    @classmethod
    def _tiny_config(cls, common: dict[str, Any], settings: dict[str, Any]) -> Any:
        return cls.config_class(**common)

    @classmethod
    def tiny_processor_files(cls, model: nn.Module) -> dict[str, dict[str, Any]]:
        size = int(model.config.vision_config.image_size)
        return {
            "preprocessor_config.json": {
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "size": {"shortest_edge": size},
                "crop_size": {"height": size, "width": size},
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1.0 / 255.0,
            }
        }


#: settings of the tiny random LLaVA models (``build_tiny_backbone("llava" | "llava_next", **overrides)``)
TINY_LLAVA_SETTINGS: dict[str, Any] = {
    **TINY_SHARED_SETTINGS,
    "image_size": 32,  # the released towers: 336
    "patch_size": 4,  # the released towers: 14
    "vision_layers": 4,
    "max_position_embeddings": 4096,  # LLaVA-1.5's context
}


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
                answer_separator=" ",
            )
        if text_type == "llama":
            return self._vicuna_format()
        return ChatFormat.chatml("Answer the questions.")

    tiny_text_model_type: ClassVar[str] = "mistral"

    @classmethod
    def _tiny_config(cls, common: dict[str, Any], settings: dict[str, Any]) -> Any:
        # any-res pinpoints of 1×1 … 2×2 tiles: used only by the stock image path the tests compare with
        s = settings["image_size"]
        return cls.config_class(**common, image_grid_pinpoints=[[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]])
