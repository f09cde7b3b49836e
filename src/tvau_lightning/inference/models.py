"""Loading trained checkpoints for inference: the stage-1 AHD and the stage-2 RAE, on a chosen device/dtype.

Checkpoints hold only the trained weights (``ahd.*``; ``rae.*`` + LoRA) and the hyper-parameters, including
the backbone config; the frozen backbone is rebuilt from it. Paths stored in a checkpoint are often relative
to the folder training ran in, so a stored path that does not exist from here is also looked up relative to
the checkpoint's parent folders, and every stored path can be overridden (``backbone=``, ``ahd_checkpoint=``).
Lightning keeps the DataModule's hyper-parameters in the checkpoint too; :func:`clip_settings` reads the frame
size and clip length the model was trained with from there.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.backbones.base import BackboneConfig, BackboneError, resolve_dtype


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for inference; the message names the file and the fix."""


@dataclass
class ClipSettings:
    """How clips are fed to a model, as trained.

    Attributes:
        frame_size: ``(H, W)`` frames are resized to, or ``None`` if the checkpoint does not say.
        clip_len: frames per clip (AHD: ``clip_len``; RAE: ``num_frames``), or ``None`` if unknown.
    """

    frame_size: tuple[int, int] | None
    clip_len: int | None


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a Lightning checkpoint on the CPU, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as error:  # pickle/zip errors of every kind
        raise CheckpointError(f"cannot read checkpoint {path}: {error} — is it a Lightning .ckpt file?") from error
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint with hyper-parameters (no 'state_dict' / "
                              "'hyper_parameters'); use a .ckpt written by `tvau fit`")
    return dict(ckpt)


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


def resolve_device(device: str) -> torch.device:
    """``auto`` → the first CUDA GPU if there is one, else the CPU; anything else as torch spells it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    return dev


def dtype_name(dtype: str, device: torch.device) -> str:
    """The backbone dtype for ``device``: ``auto`` → ``bfloat16`` on a bf16-capable GPU, else ``float32``."""
    try:
        resolved = resolve_dtype(dtype, device)
    except BackboneError as error:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from error
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[resolved]


def _backbone_config(stored: Any, checkpoint: Path, override: str | None, dtype: str) -> BackboneConfig:
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
        raise CheckpointError(f"{checkpoint}: cannot rebuild the backbone config from {values}: {error}") from error
    config.path = override if override is not None else resolve_stored_path(config.path, checkpoint)
    config.dtype = dtype
    if config.input_size is not None:
        config.input_size = tuple(config.input_size)
    return config


def _init_kwargs(cls: type, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters that are arguments of ``cls.__init__`` (drops LightningCLI's ``_class_path`` …)."""
    names = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: v for k, v in hparams.items() if k in names}


def clip_settings(checkpoint: Mapping[str, Any]) -> ClipSettings:
    """Frame size and clip length of a checkpoint's DataModule (``datamodule_hyper_parameters``), if stored.

    AHD DataModules store ``clip_len``; the dialogue DataModule ``num_frames``.
    """
    dm = checkpoint.get("datamodule_hyper_parameters") or {}
    size = dm.get("frame_size")
    clip = dm.get("clip_len", dm.get("num_frames"))
    return ClipSettings(
        frame_size=None if size is None else (int(size[0]), int(size[1])),
        clip_len=None if clip is None else int(clip),
    )


def load_ahd_task(
    checkpoint: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "auto",
    ckpt: Mapping[str, Any] | None = None,
) -> Any:
    """An ``AHDTask`` from a stage-1 checkpoint, in eval mode on ``device``.

    The backbone is rebuilt vision-only from the checkpoint's config (``backbone`` overrides its path) in
    ``dtype``; the AHD head stays float32 (it costs ~1 % of the tower). The class prototypes come from the
    checkpoint, so the LLM is never loaded. ``ckpt`` is the already-read checkpoint, if the caller has it.
    """
    from tvau_lightning.tasks.ahd import AHDTask

    path = Path(checkpoint)
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    hparams = dict(ckpt["hyper_parameters"])
    state = {k[len("ahd."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("ahd.")}
    if not state or "backbone" not in hparams:
        raise CheckpointError(f"{path} holds no AHD weights ('ahd.*') or no backbone config; is it a stage-1 "
                              "AHDTask checkpoint (tvau fit --config configs/ahd.yaml)?")
    dev = torch.device(device)
    kwargs = _init_kwargs(AHDTask, hparams)
    kwargs["backbone"] = _backbone_config(hparams["backbone"], path, backbone, dtype_name(dtype, dev))
    kwargs["prompts"] = None  # the prototypes are in the checkpoint; the bank only seeds them
    kwargs["text_embedding_mode"] = "input_embeddings"  # never load the LLM just to recompute prototypes
    kwargs["log_heatmaps"] = 0
    if "feature_cache" in kwargs:
        kwargs["feature_cache"] = None  # a training-data cache says nothing about the videos analyzed here
    task = AHDTask(**kwargs)
    try:
        task.ahd.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the AHD weights do not fit the backbone {kwargs['backbone'].path} "
                              f"({error}); use the backbone the checkpoint was trained with (--backbone)") from error
    if not bool(task.ahd.has_prototypes):
        raise CheckpointError(f"{path} has no class prototypes; re-save it with a current `tvau fit`")
    return task.to(dev).eval()


def load_rae_task(
    checkpoint: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    ahd_checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "auto",
    ckpt: Mapping[str, Any] | None = None,
) -> Any:
    """An ``RAETask`` from a stage-2 checkpoint (RAE + LoRA weights), in eval mode on ``device``.

    ``backbone`` overrides the stored backbone path (for phase B: the merged phase-A folder) and
    ``ahd_checkpoint`` the stored stage-1 checkpoint; both are otherwise resolved as in
    :func:`resolve_stored_path`.
    """
    from tvau_lightning.tasks.rae import RAETask

    path = Path(checkpoint)
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    hparams = dict(ckpt["hyper_parameters"])
    state = dict(ckpt["state_dict"])
    if "backbone" not in hparams or not any(k.startswith("rae.") or "lora_" in k for k in state):
        raise CheckpointError(f"{path} holds no RAE/LoRA weights or no backbone config; is it a stage-2 RAETask "
                              "checkpoint?")
    dev = torch.device(device)
    kwargs = _init_kwargs(RAETask, hparams)
    kwargs["backbone"] = _backbone_config(hparams["backbone"], path, backbone, dtype_name(dtype, dev))
    if kwargs.get("use_ahd", True):
        stored = ahd_checkpoint or kwargs.get("ahd_checkpoint")
        if stored is None:
            raise CheckpointError(f"{path} uses the AHD but names no stage-1 checkpoint; pass --ckpt AHD.ckpt")
        kwargs["ahd_checkpoint"] = str(stored) if ahd_checkpoint else resolve_stored_path(str(stored), path)
        if not Path(kwargs["ahd_checkpoint"]).is_file():
            raise CheckpointError(f"{path} was trained on the stage-1 checkpoint {stored!r}, which is not found from "
                                  "here; pass it with --ckpt AHD.ckpt")
    kwargs["init_checkpoint"] = None  # its RAE weights are superseded by this checkpoint's own
    kwargs["gradient_checkpointing"] = False
    lora = kwargs.get("lora")
    if isinstance(lora, Mapping):
        from tvau_lightning.backbones.base import LoRASettings

        kwargs["lora"] = LoRASettings(**{k: v for k, v in lora.items() if not k.startswith("_")})
    task = RAETask(**kwargs)
    result = task.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("rae.") or "lora_" in k]
    if result.unexpected_keys or missing:
        bad = (result.unexpected_keys or missing)[:3]
        raise CheckpointError(f"{path}: weights do not match the rebuilt RAE task (e.g. {bad}); use the backbone "
                              "and settings the checkpoint was trained with (--backbone)")
    return task.to(dev).eval()


class HeatmapPredictor:
    """Heatmaps of uint8 clips from either stage: an ``AHDTask`` or the frozen AHD inside an ``RAETask``.

    Call it with clips ``(B, T, H, W, 3)`` uint8 (at the model's frame size) → heatmaps ``(B, T', H', W')``
    float32 in [0, 1]; one grid step covers :attr:`temporal_factor` frames.
    """

    def __init__(self, task: Any) -> None:
        ahd = getattr(task, "ahd", None)
        if ahd is None:
            raise ValueError("this model has no AHD (an RAE trained with use_ahd=false); pass --ckpt AHD.ckpt")
        self.task = task
        self.backbone = task.backbone
        self.ahd = ahd
        self.layers = list(task.layers)
        self.temporal_factor = int(self.backbone.temporal_patch_size)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        inputs = self.backbone.preprocess_video(frames.to(self.device)).to(self.device, self.backbone.dtype)
        out = self.backbone.encode_video(inputs, self.layers, visual_tokens=False)
        return self.ahd([out.layer_features[i] for i in self.layers]).heatmap.float()
