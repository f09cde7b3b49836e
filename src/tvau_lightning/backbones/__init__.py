"""Backbone adapters: one interface over Qwen2.5-VL, InternVL and LLaVA (SPEC §2).

Importing the package registers every family (each family module registers its adapter class with
:func:`~tvau_lightning.backbones.registry.register_adapter`), so :func:`load_backbone` knows them all.
"""

from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.dialogue import DialogueInputs
from tvau_lightning.backbones.internvl import InternVLAdapter
from tvau_lightning.backbones.llava import LlavaAdapter, LlavaNextAdapter
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.qwen2_5_vl import Qwen2_5_VLAdapter
from tvau_lightning.backbones.registry import load_backbone, register_adapter
from tvau_lightning.backbones.tiny import build_tiny_backbone, tiny_families
from tvau_lightning.backbones.types import (
    BackboneConfig,
    BackboneError,
    ContextOverflowError,
    VideoInputs,
    VisionOutput,
)

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
