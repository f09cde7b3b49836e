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
from tvau_lightning.backbones.qwen2_5_vl import Qwen2_5_VLAdapter
from tvau_lightning.backbones.tiny import build_tiny_backbone, tiny_families

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
    "Qwen2_5_VLAdapter",
    "VideoInputs",
    "VisionOutput",
    "build_tiny_backbone",
    "load_backbone",
    "register_adapter",
    "tiny_families",
]
