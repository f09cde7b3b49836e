"""Backbone adapters: one interface over Qwen2.5-VL, InternVL and LLaVA (SPEC §2)."""

from tvau_lightning.backbones.base import (
    BackboneAdapter,
    BackboneConfig,
    BackboneError,
    ContextOverflowError,
    DialogueInputs,
    LoRASettings,
    VideoInputs,
    VisionOutput,
    load_backbone,
    register_adapter,
)
from tvau_lightning.backbones.internvl import InternVLAdapter
from tvau_lightning.backbones.llava import LlavaAdapter, LlavaNextAdapter

__all__ = [
    "BackboneAdapter",
    "BackboneConfig",
    "BackboneError",
    "ContextOverflowError",
    "DialogueInputs",
    "InternVLAdapter",
    "LlavaAdapter",
    "LlavaNextAdapter",
    "LoRASettings",
    "VideoInputs",
    "VisionOutput",
    "load_backbone",
    "register_adapter",
]
