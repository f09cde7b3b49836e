"""Turning trained checkpoints into self-contained model folders for sharing and later stages.

:func:`merge_lora_checkpoint` folds a stage-2 checkpoint's LoRA into its backbone and saves a plain Hugging Face
folder (phase B trains on it; ``load_backbone`` loads it).
"""

from __future__ import annotations

import os
from pathlib import Path

from tvau_lightning.atomic import atomic_directory
from tvau_lightning.backbones.lora import LoRASettings
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.checkpoints import CheckpointError, backbone_config_from, read_checkpoint


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
    if lora is None:
        raise CheckpointError(f"{checkpoint} was trained without LoRA (lora: null); there is nothing to merge")
    backbone_cfg = backbone_config_from(hp["backbone"], checkpoint)
    if not isinstance(lora, LoRASettings):
        lora = LoRASettings(**{k: v for k, v in dict(lora).items() if not k.startswith("_")})
    adapter = load_backbone(backbone_cfg, vision_only=False)
    adapter.apply_lora(lora)
    prefix = "backbone."
    lora_state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix) and "lora_" in k}
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
