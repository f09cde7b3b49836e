"""Turning trained checkpoints into self-contained model folders for sharing and later stages.

* :func:`export_checkpoint` (``tvau export``) writes a trained head the Hugging Face way: ``config.json`` (task,
  hyper-parameters, backbone family and fingerprint, layers, sampling, a category AHD's ``class_names``) and
  ``model.safetensors`` (the trained weights: AHD; for stage 2 RAE, markers and LoRA), plus for stage 2 the
  frozen stage-1 model in ``ahd/`` and a peft adapter folder ``adapter/`` (``adapter_config.json``,
  ``adapter_model.safetensors``) that loads with peft alone. Every loader reads such a folder wherever it reads a ``.ckpt``
  (:func:`~tvau_lightning.checkpoints.read_checkpoint`): ``load_ahd``/``AnomalyHeatmapModel.from_pretrained``,
  ``load_rae_task``, ``tvau analyze/chat --ckpt DIR``.
* :func:`merge_lora_checkpoint` (``tvau merge-lora``) folds a stage-2 checkpoint's LoRA into its backbone and
  saves a plain Hugging Face folder (phase B trains on it; ``load_backbone`` loads it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from tvau_lightning.atomic import atomic_directory
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_WEIGHTS,
    IDENTITY_KEY,
    CheckpointError,
    backbone_config_from,
    plain_data,
    read_checkpoint,
    resolve_stored_path,
)

#: the peft adapter folder of a stage-2 export
ADAPTER_DIR = "adapter"
#: the frozen stage-1 model of a stage-2 export
AHD_DIR = "ahd"


def _stage(ckpt: Mapping[str, Any], where: Any) -> str:
    state = ckpt["state_dict"]
    if any(k.startswith("rae.") or "lora_" in k for k in state):
        return "rae"
    if any(k.startswith("ahd.") for k in state):
        return "ahd"
    raise CheckpointError(f"{where} holds neither AHD nor RAE/LoRA weights; export takes a `tvau fit` checkpoint")


def _write_export(folder: Path, ckpt: Mapping[str, Any], hparams: Mapping[str, Any], task: str) -> None:
    weights = {k: v.detach().contiguous() for k, v in ckpt["state_dict"].items()}
    save_file(weights, str(folder / EXPORT_WEIGHTS))
    dm = dict(ckpt.get("datamodule_hyper_parameters") or {})
    config = {
        "format": EXPORT_FORMAT, "format_version": 1, "task": task,
        "hyper_parameters": plain_data(dict(hparams)),
        "datamodule_hyper_parameters": plain_data(dm),
        IDENTITY_KEY: plain_data(ckpt.get(IDENTITY_KEY)),
        "layers": (ckpt.get(IDENTITY_KEY) or {}).get("layers"),
        "sampling": {"frame_size": dm.get("frame_size"), "clip_len": dm.get("clip_len", dm.get("num_frames")),
                     "frame_stride": dm.get("frame_stride"), "sample_fps": dm.get("sample_fps"),
                     "min_frames": dm.get("min_frames"), "max_frames": dm.get("max_frames")},
        "prototype_mode": hparams.get("text_embedding_mode"),
        # a weakly supervised category AHD: the name of each prototype row, 0 = normal (also in hyper_parameters)
        "class_names": plain_data(hparams.get("categories")),
    }
    (folder / EXPORT_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      overwrite: bool = False) -> Path:
    """Write a stage-1 or stage-2 checkpoint as an export folder (module docstring); staged, so a failure
    leaves nothing. Returns ``out``."""
    ckpt = read_checkpoint(checkpoint)
    stage = _stage(ckpt, checkpoint)
    hparams = dict(ckpt["hyper_parameters"])
    with atomic_directory(out, inputs=[checkpoint], overwrite=overwrite) as staging:
        if stage == "ahd":
            _write_export(staging, ckpt, hparams, "AHDTask")
            return Path(out)
        if hparams.get("use_ahd", True) and hparams.get("ahd_checkpoint"):
            stage1 = resolve_stored_path(str(hparams["ahd_checkpoint"]), checkpoint)
            ahd = read_checkpoint(stage1)
            (staging / AHD_DIR).mkdir()
            _write_export(staging / AHD_DIR, ahd, dict(ahd["hyper_parameters"]), "AHDTask")
            hparams["ahd_checkpoint"] = AHD_DIR  # resolved against the export folder when read
        hparams["init_checkpoint"] = None
        _write_export(staging, ckpt, hparams, "RAETask")
        lora = hparams.get("lora")
        if lora is not None:
            settings = lora if isinstance(lora, LoRASettings) else \
                LoRASettings(**{k: v for k, v in dict(lora).items() if not k.startswith("_")})
            backbone = load_backbone(backbone_config_from(ckpt["hyper_parameters"]["backbone"], checkpoint),
                                     vision_only=False)
            backbone.apply_lora(settings)
            prefix = "backbone."
            state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix) and "lora_" in k}
            result = backbone.load_state_dict(state, strict=False)
            if [k for k in result.unexpected_keys if "lora_" in k]:
                raise CheckpointError(f"{checkpoint}: LoRA weights do not match its backbone")
            backbone.save_lora(staging / ADAPTER_DIR)
    return Path(out)


def merge_lora_checkpoint(checkpoint: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """Load an ``RAETask`` checkpoint's backbone with its LoRA weights, merge them, and save a
    self-contained Hugging Face folder (``load_backbone`` loads it). Written to a temporary folder first,
    then renamed, so a failure never leaves a half-written model."""
    ckpt = read_checkpoint(checkpoint)
    hp = ckpt.get("hyper_parameters", {})
    if "backbone" not in hp or not any(k.startswith("rae.") or "lora_" in k for k in ckpt["state_dict"]):
        raise CheckpointError(f"{checkpoint} is not a stage-2 RAETask checkpoint (no backbone config or no RAE/LoRA "
                              "weights); merge-lora takes the .ckpt of `tvau fit --config configs/rae_phase_a.yaml`")
    lora = hp.get("lora")
    backbone_cfg = backbone_config_from(hp["backbone"], checkpoint)
    adapter = load_backbone(backbone_cfg, vision_only=False)
    # a checkpoint trained without LoRA (prompt learner and tokens only, e.g. configs/rae_phase_a_no_lora.yaml)
    # has nothing to merge: the folder is its backbone unchanged, so the phase chain stays the same
    if lora is not None:
        if not isinstance(lora, LoRASettings):
            lora = LoRASettings(**{k: v for k, v in dict(lora).items() if not k.startswith("_")})
        adapter.apply_lora(lora)
        prefix = "backbone."
        lora_state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items()
                      if k.startswith(prefix) and "lora_" in k}
        if not lora_state:
            raise CheckpointError(f"{checkpoint} holds no LoRA weights")
        missing = adapter.load_state_dict(lora_state, strict=False)
        unexpected = [k for k in missing.unexpected_keys if "lora_" in k]
        if unexpected:
            raise CheckpointError(f"{checkpoint}: LoRA weights do not match the backbone (e.g. {unexpected[0]})")
        adapter.merge_lora()
    output_dir = Path(output_dir)
    with atomic_directory(output_dir, inputs=[checkpoint, backbone_cfg.path], overwrite=True) as tmp:
        adapter.save_pretrained(tmp)
    return output_dir
