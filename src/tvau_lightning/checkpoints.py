"""Reading checkpoint files safely, and the paths and backbone identity stored in them.

Every checkpoint tvau reads goes through :func:`read_checkpoint`: ``torch.load(..., weights_only=True)`` with an
explicit allowlist of the project's own hyper-parameter types (:data:`SAFE_TYPES`), so a crafted file cannot
run code — a file that needs any other class is refused with a message naming it.

Checkpoints written by the stage-1 and stage-2 tasks also record which backbone they were trained on
(:func:`backbone_identity`, under :data:`IDENTITY_KEY`): the family, a fingerprint of its vision architecture,
and the layers the AHD reads. :func:`check_backbone_identity` refuses to run such a checkpoint on another
backbone whose widths merely happen to match.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.fingerprint import architecture_fingerprint
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.modules.prompts import PromptBank

#: classes a checkpoint's hyper-parameters may hold besides plain data (tensors, dicts, lists, numbers, str)
SAFE_TYPES: tuple[type, ...] = (BackboneConfig, LoRASettings, PromptBank)

#: where the tasks record the backbone a checkpoint was trained on
IDENTITY_KEY = "tvau_backbone"

#: an export folder (``tvau export``): ``config.json`` of this format + ``model.safetensors``
EXPORT_FORMAT = "tvau-export"
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a Lightning checkpoint on the CPU without running code from it; errors name the file and the fix."""
    path = Path(path)
    if path.is_dir():
        if (path / EXPORT_CONFIG).is_file() and (path / EXPORT_WEIGHTS).is_file():
            return read_export(path)
        raise CheckpointError(f"{path} is a folder, not a checkpoint file nor a `tvau export` folder; pass the .ckpt "
                              "inside it (e.g. runs/ahd/checkpoints/best.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_TYPES)):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if found is None:  # not a refused class: the bytes are not a checkpoint's pickle at all
            raise CheckpointError(f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (unreadable pickle "
                                  "data) — is it a Lightning .ckpt file?") from None
        raise CheckpointError(f"refusing to load {path}: it needs the Python global {found.group(1)!r}, which is not "
                              "one of tvau's checkpoint types (checkpoints written by `tvau fit` hold only tensors "
                              "and plain hyper-parameters); it was not written by tvau or was tampered with") from None
    except Exception as error:  # zip/format errors of every kind
        raise CheckpointError(f"cannot read checkpoint {path}: it is not a PyTorch checkpoint file "
                              f"({type(error).__name__}: {error}) — is it a Lightning .ckpt file?") from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint with hyper-parameters (no 'state_dict' / "
                              "'hyper_parameters'); use a .ckpt written by `tvau fit`")
    return dict(ckpt)


def read_export(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``tvau export`` folder as the checkpoint it was exported from (weights from safetensors, no pickle):
    ``state_dict``, ``hyper_parameters``, ``datamodule_hyper_parameters`` and the backbone record; a stored
    stage-1 folder name (``ahd``) is resolved against ``folder``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / EXPORT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {folder / EXPORT_CONFIG}: {error}") from None
    if not isinstance(config, Mapping) or config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{folder / EXPORT_CONFIG} is not a tvau export (format {EXPORT_FORMAT!r}); it may be a "
                              "Hugging Face model folder — pass it as the backbone instead")
    try:
        state = load_file(str(folder / EXPORT_WEIGHTS))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {folder / EXPORT_WEIGHTS}: {error}") from None
    hparams = dict(config.get("hyper_parameters") or {})
    if config.get("class_names") and not hparams.get("categories"):  # a category AHD's class names, 0 = normal
        hparams["categories"] = [str(c) for c in config["class_names"]]
    stage1 = hparams.get("ahd_checkpoint")
    if stage1 and not Path(stage1).is_absolute() and (folder / stage1).is_dir():
        hparams["ahd_checkpoint"] = str(folder / stage1)
    datamodule = dict(config.get("datamodule_hyper_parameters") or {})
    sampling = config.get("sampling")
    if isinstance(sampling, Mapping):  # a hand-written config.json may carry only its "sampling" block
        for key, value in sampling.items():
            name = "num_frames" if key == "clip_len" and config.get("task") == "RAETask" else str(key)
            if value is not None:
                datamodule.setdefault(name, value)
    return {"state_dict": state, "hyper_parameters": hparams, "datamodule_hyper_parameters": datamodule,
            IDENTITY_KEY: config.get(IDENTITY_KEY)}


def plain_data(value: Any) -> Any:
    """``value`` as JSON-able plain data: dataclasses (``BackboneConfig``, ``LoRASettings``, ``PromptBank``) as
    dicts, tuples as lists, paths as strings; LightningCLI's private keys (``_class_path`` …) dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_data(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot export a hyper-parameter of type {type(value).__name__}: {value!r}")


def resolve_stored_path(stored: str, checkpoint: str | os.PathLike[str]) -> str:
    """A path stored in a checkpoint, resolved: as given if it exists from the current folder, else the first
    match relative to the checkpoint's folder or one of its parents; unchanged when nothing matches (a hub id,
    or a path the caller must override)."""
    candidate = Path(os.path.expanduser(stored))
    if candidate.is_absolute() or candidate.exists():
        return str(candidate)
    for parent in Path(checkpoint).resolve().parents:
        if (parent / candidate).exists():
            return str(parent / candidate)
    return stored


def backbone_config_from(stored: Any, checkpoint: str | os.PathLike[str], *, path: str | None = None,
                         dtype: str | None = None) -> BackboneConfig:
    """Rebuild the ``BackboneConfig`` a checkpoint stores (a dataclass, a dict from LightningCLI, or a bare
    path); ``path`` overrides the stored model folder (else it is resolved with :func:`resolve_stored_path`),
    ``dtype`` the compute dtype."""
    if isinstance(stored, BackboneConfig):
        values = dict(stored.__dict__)
    elif isinstance(stored, Mapping):
        values = {k: v for k, v in stored.items() if not k.startswith("_")}
    elif isinstance(stored, str):
        values = {"path": stored}
    else:
        raise CheckpointError(f"{checkpoint}: hyper-parameter 'backbone' is {type(stored).__name__}, expected a "
                              "backbone config; pass --backbone PATH")
    try:
        config = BackboneConfig(**values)
    except TypeError as error:
        raise CheckpointError(f"{checkpoint}: cannot rebuild the backbone config from {values}: {error}") from None
    config.path = path if path is not None else resolve_stored_path(str(config.path), checkpoint)
    if dtype is not None:
        config.dtype = dtype
    if config.input_size is not None:
        config.input_size = tuple(config.input_size)
    return config


def backbone_identity(backbone: BackboneAdapter, layers: Sequence[int]) -> dict[str, Any]:
    """What a checkpoint records about its backbone: family, vision-architecture fingerprint, AHD layers."""
    return {"family": backbone.family, "fingerprint": architecture_fingerprint(backbone),
            "layers": [int(i) for i in layers]}


def check_backbone_identity(checkpoint: Mapping[str, Any], backbone: BackboneAdapter, *, source: Any,
                            force: bool = False) -> None:
    """Refuse a checkpoint trained on another backbone than ``backbone`` (family or vision architecture),
    naming both; ``force`` turns the error into a warning. Checkpoints older than this record pass."""
    stored = checkpoint.get(IDENTITY_KEY)
    if not isinstance(stored, Mapping):
        return
    here = {"family": backbone.family, "fingerprint": architecture_fingerprint(backbone)}
    differs = [k for k in ("family", "fingerprint") if stored.get(k) != here[k]]
    if not differs:
        return
    message = (f"{source} was trained on a {stored.get('family')} backbone (vision fingerprint "
               f"{str(stored.get('fingerprint'))[:12]}), but the backbone given is {here['family']} (fingerprint "
               f"{here['fingerprint'][:12]}) from {backbone.config.path}: its heatmaps would be meaningless. Use the "
               "backbone it was trained with (--backbone), or --force-backbone if you know they are the same")
    if not force:
        raise CheckpointError(message)
    warnings.warn(message, stacklevel=2)
