"""Which adapter serves a model folder: the ``model_type`` → adapter table and :func:`load_backbone`.

Each family registers itself with :func:`register_adapter` when its module is imported; importing the
package :mod:`tvau_lightning.backbones` (which happens before any of its modules is used) imports them all.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from tvau_lightning.backbones.base import BackboneAdapter, read_model_type, resolve_model_dir
from tvau_lightning.backbones.types import BackboneConfig, BackboneError

_ADAPTERS: dict[str, type[BackboneAdapter]] = {}


def register_adapter(cls: type[BackboneAdapter]) -> type[BackboneAdapter]:
    """Class decorator: make ``cls`` the adapter for its ``model_types``."""
    if not cls.model_types:
        raise TypeError(f"{cls.__name__} must set model_types")
    for mt in cls.model_types:
        _ADAPTERS[mt] = cls
    return cls


def registered_model_types() -> dict[str, type[BackboneAdapter]]:
    """``model_type`` (of a folder's ``config.json``) → adapter class, for every registered family."""
    return dict(_ADAPTERS)


def adapter_class_for(model_type: str) -> type[BackboneAdapter]:
    """The adapter class registered for ``model_type``; a :class:`BackboneError` listing the supported ones."""
    adapters = registered_model_types()
    if model_type not in adapters:
        raise BackboneError(
            f"unsupported model family {model_type!r}; supported: {', '.join(sorted(adapters))}. "
            "To add a family, subclass BackboneAdapter (see README, 'Backbones')."
        )
    return adapters[model_type]


def load_backbone(
    config: BackboneConfig | str | os.PathLike[str],
    *,
    vision_only: bool = False,
    device: torch.device | str | None = None,
    **overrides: Any,
) -> BackboneAdapter:
    """Load the adapter for a local model folder, choosing the family from ``config.json``'s
    ``model_type``. ``config`` is a :class:`BackboneConfig` or just the path."""
    if not isinstance(config, BackboneConfig):
        config = BackboneConfig(path=str(config), **overrides)
    elif overrides:
        config = BackboneConfig(**{**config.__dict__, **overrides})
    model_dir = resolve_model_dir(config.path, local_files_only=config.local_files_only)
    cls = adapter_class_for(read_model_type(model_dir))
    resolved = BackboneConfig(**{**config.__dict__, "path": str(model_dir)})
    cls.check_vision_path(resolved)
    return cls.from_pretrained(resolved, vision_only=vision_only, device=device)
