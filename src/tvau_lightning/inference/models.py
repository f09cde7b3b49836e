"""Loading trained models for inference: the stage-1 AHD and the stage-2 RAE, on a chosen device/dtype.

Checkpoints hold only the trained weights (``ahd.*``; ``rae.*`` + LoRA) and the hyper-parameters, including
the backbone config; the frozen backbone is rebuilt from it (files are read with
:func:`~tvau_lightning.checkpoints.read_checkpoint`, which never runs code from them). Paths stored in a
checkpoint are often relative to the folder training ran in, so a stored path that does not exist from here is
also looked up relative to the checkpoint's parent folders, and every stored path can be overridden
(``backbone=``, ``ahd_checkpoint=``). Lightning keeps the DataModule's hyper-parameters in the checkpoint too;
:func:`clip_settings` reads the frame size and clip length the model was trained with from there, and
:func:`dialogue_sampling` the whole sampling of a stage-2 checkpoint's dialogue DataModule (rate or stride,
min/max frames, frame count, frame size), which ``chat`` and ``analyze --rae-ckpt`` reuse.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tvau_lightning.backbones.base import resolve_dtype
from tvau_lightning.backbones.types import BackboneError
from tvau_lightning.checkpoints import (
    CheckpointError,
    backbone_config_from,
    check_backbone_identity,
    read_checkpoint,
    resolve_stored_path,
)
from tvau_lightning.inference.session import DialogueSampling, resolve_sampling
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel, load_ahd
from tvau_lightning.modules.category_ahd import frame_class_scores


@dataclass
class ClipSettings:
    """How clips are fed to a model, as trained.

    Attributes:
        frame_size: ``(H, W)`` frames are resized to, or ``None`` if the checkpoint does not say.
        clip_len: frames per clip (AHD: ``clip_len``; RAE: ``num_frames``), or ``None`` if unknown.
    """

    frame_size: tuple[int, int] | None
    clip_len: int | None


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


#: the dialogue DataModule's hyper-parameters that describe its sampling
_DIALOGUE_SAMPLING_KEYS = ("num_frames", "frame_size", "sample_fps", "frame_stride", "min_frames", "max_frames")


def dialogue_sampling(checkpoint: Mapping[str, Any], fallback: DialogueSampling) -> DialogueSampling | None:
    """The sampling of a stage-2 checkpoint's dialogue DataModule (``datamodule_hyper_parameters``, which an
    export folder's ``config.json`` also holds), or ``None`` when it records none. A value it lacks (a checkpoint
    from before ``sample_fps`` existed) is the DataModule's default then: no rate, so ``num_frames`` spread;
    ``fallback`` gives the frame size and frame count when those are missing too.
    """
    dm = checkpoint.get("datamodule_hyper_parameters") or {}
    if not any(dm.get(key) is not None for key in _DIALOGUE_SAMPLING_KEYS):
        return None
    size = dm.get("frame_size")
    stride = dm.get("frame_stride")
    return DialogueSampling(
        frame_size=fallback.frame_size if size is None else (int(size[0]), int(size[1])),
        num_frames=int(dm.get("num_frames") or fallback.num_frames),
        sample_fps=None if dm.get("sample_fps") is None else float(dm["sample_fps"]),
        frame_stride=None if stride is None else int(stride),
        min_frames=int(dm.get("min_frames") or 1),
        max_frames=None if dm.get("max_frames") is None else int(dm["max_frames"]),
    )


def load_ahd_model(
    checkpoint: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "auto",
    ckpt: Mapping[str, Any] | None = None,
    force_backbone: bool = False,
) -> AnomalyHeatmapModel:
    """The stage-1 :class:`AnomalyHeatmapModel` of a checkpoint, in eval mode on ``device``.

    The backbone is rebuilt vision-only from the checkpoint's config (``backbone`` overrides its path) in
    ``dtype``; the class prototypes come from the checkpoint, so the LLM is never loaded. ``ckpt`` is the
    already-read checkpoint, if the caller has it. See :func:`~tvau_lightning.modules.anomaly_model.load_ahd`.
    """
    dev = torch.device(device)
    model = load_ahd(checkpoint if ckpt is None else ckpt, backbone_path=backbone, dtype=dtype_name(dtype, dev),
                     force_backbone=force_backbone, source=checkpoint)
    return model.to(dev).eval()


def load_rae_task(
    checkpoint: str | os.PathLike[str],
    *,
    backbone: str | None = None,
    ahd_checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "auto",
    ckpt: Mapping[str, Any] | None = None,
    force_backbone: bool = False,
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
    kwargs["backbone"] = backbone_config_from(hparams["backbone"], path, path=backbone, dtype=dtype_name(dtype, dev))
    if kwargs.get("use_ahd", True):
        stored = ahd_checkpoint or kwargs.get("ahd_checkpoint")
        if stored is None:
            raise CheckpointError(f"{path} uses the AHD but names no stage-1 checkpoint; pass --ckpt AHD.ckpt")
        kwargs["ahd_checkpoint"] = str(stored) if ahd_checkpoint else resolve_stored_path(str(stored), path)
        if not Path(kwargs["ahd_checkpoint"]).exists():
            raise CheckpointError(f"{path} was trained on the stage-1 checkpoint {stored!r}, which is not found from "
                                  "here; pass it with --ckpt AHD.ckpt")
    kwargs["init_checkpoint"] = None  # its RAE weights are superseded by this checkpoint's own
    kwargs["force_backbone"] = force_backbone
    kwargs["gradient_checkpointing"] = False
    lora = kwargs.get("lora")
    if isinstance(lora, Mapping):
        from tvau_lightning.backbones.lora import LoRASettings

        kwargs["lora"] = LoRASettings(**{k: v for k, v in lora.items() if not k.startswith("_")})
    task = RAETask(**kwargs)
    check_backbone_identity(ckpt, task.backbone, source=path, force=force_backbone)
    result = task.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("rae.") or "lora_" in k]
    if result.unexpected_keys or missing:
        bad = (result.unexpected_keys or missing)[:3]
        raise CheckpointError(f"{path}: weights do not match the rebuilt RAE task (e.g. {bad}); use the backbone "
                              "and settings the checkpoint was trained with (--backbone)")
    return task.to(dev).eval()


class HeatmapPredictor:
    """Heatmaps of uint8 clips from either stage: an :class:`AnomalyHeatmapModel` (or a task holding one as
    ``heatmap_model``, e.g. the frozen AHD inside an ``RAETask``).

    Call it with clips ``(B, T, H, W, 3)`` uint8 (at the model's frame size) → heatmaps ``(B, T', H', W')``
    float32 in [0, 1]; :meth:`predict` also returns the unsaturated scores, and for a category AHD
    (:attr:`class_names` not ``None``) :meth:`predict_classes` the per-frame class scores and class maps too. One
    grid step covers :attr:`temporal_factor` frames. Tower and head run under the autocast training used: the
    backbone's dtype when it is bf16/fp16, none in fp32.
    """

    def __init__(self, model: Any) -> None:
        model = getattr(model, "heatmap_model", model)
        if not isinstance(model, AnomalyHeatmapModel):
            raise ValueError("this model has no AHD (an RAE trained with use_ahd=false); pass --ckpt AHD.ckpt")
        self.model = model
        self.backbone = model.backbone
        self.layers = list(model.layers)
        self.temporal_factor = model.temporal_factor

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def _autocast(self) -> Any:
        dtype = self.backbone.dtype
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.inference_mode()
    def predict(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(heatmap, scores)`` float32 ``(B, T', H', W')`` for uint8 clips ``(B, T, H, W, 3)``."""
        with self._autocast():
            out = self.model(frames.to(self.device))
        return out.heatmap.float(), out.scores.float()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.predict(frames)[0]

    @property
    def class_names(self) -> list[str] | None:
        """The class names (index 0 = normal) of a weakly supervised category AHD, ``None`` for the binary AHD."""
        return self.model.class_names

    @torch.inference_mode()
    def predict_classes(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a category AHD (:attr:`class_names`): ``(heatmap, scores, frame_class_scores, class_maps)`` of uint8
        clips ``(B, T, H, W, 3)``, float32 — :meth:`predict`'s two, the per-frame class scores ``(B, T, K)`` as
        ``WeakAHDTask`` scores frames (:func:`~tvau_lightning.modules.category_ahd.frame_class_scores`), and the
        class probability maps ``(B, T', K, H', W')`` (softmax over the classes per cell)."""
        if self.class_names is None:
            raise ValueError("this AHD is binary: it has no categories (use predict)")
        with self._autocast():
            out = self.model(frames.to(self.device))
        classes = frame_class_scores(out, temporal_factor=self.temporal_factor, num_frames=int(frames.shape[1]))
        return out.heatmap.float(), out.scores.float(), classes, out.logits.float().softmax(dim=2)


@dataclass
class LoadedModels:
    """The models ``analyze``/``chat`` run, and how to feed them."""

    heatmaps: HeatmapPredictor
    frame_size: tuple[int, int]
    clip_len: int
    rae: Any | None = None
    rae_frame_size: tuple[int, int] | None = None
    rae_num_frames: int | None = None
    rae_sampling: DialogueSampling | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def load_models(*, ckpt: str | None, rae_ckpt: str | None, backbone: str | None = None,
                frame_size: Sequence[int] | None = None, clip_len: int | None = None,
                device: str = "auto", dtype: str = "auto", force_backbone: bool = False,
                dialogue_overrides: Mapping[str, Any] | None = None) -> LoadedModels:
    """Load the AHD (and the RAE) for inference.

    With an RAE checkpoint, its backbone and frozen AHD make the heatmaps too (``ckpt`` then replaces the stage-1
    checkpoint it names), so one backbone is in memory. Frame size and clip length come from the stage-1
    checkpoint's DataModule unless given; they are checked before any weights are loaded. The dialogue's
    sampling (``rae_sampling``) is the RAE checkpoint's DataModule's (:func:`dialogue_sampling`) with
    ``dialogue_overrides`` (:data:`~tvau_lightning.inference.session.SAMPLING_FIELDS`, ``None`` = not given)
    applied; ``warnings`` says when they differ or when the checkpoint records none.
    """
    if ckpt is None and rae_ckpt is None:
        raise ValueError("pass --ckpt AHD.ckpt (stage 1) and/or --rae-ckpt RAE.ckpt (stage 2)")
    dev = resolve_device(device)
    info: dict[str, Any] = {"device": str(dev), "dtype": dtype_name(dtype, dev)}
    rae_raw = read_checkpoint(rae_ckpt) if rae_ckpt is not None else None
    ahd_path = ckpt
    if ahd_path is None and rae_raw is not None and rae_raw["hyper_parameters"].get("ahd_checkpoint"):
        ahd_path = resolve_stored_path(str(rae_raw["hyper_parameters"]["ahd_checkpoint"]), rae_ckpt)
    ahd_raw = read_checkpoint(ahd_path) if ahd_path is not None else None
    stored = clip_settings(ahd_raw if ahd_raw is not None else rae_raw)
    size = tuple(int(v) for v in frame_size) if frame_size else stored.frame_size
    length = clip_len or stored.clip_len
    if size is None:
        raise CheckpointError(f"{ahd_path or rae_ckpt} does not record the frame size it was trained with; pass "
                              "--frame-size H W (the training frame size)")
    if length is None:
        raise CheckpointError(f"{ahd_path or rae_ckpt} does not record its clip length; pass --clip-len N")
    rae, sampling, warnings = None, None, []
    if rae_raw is not None:  # before any weights are loaded: a bad override fails at once
        fallback = DialogueSampling(frame_size=(int(size[0]), int(size[1])), num_frames=int(length), origin="default")
        sampling, warnings = resolve_sampling(dialogue_sampling(rae_raw, fallback), fallback, dialogue_overrides,
                                              source=str(rae_ckpt))
        rae = load_rae_task(rae_ckpt, backbone=backbone, ahd_checkpoint=ckpt, device=dev, dtype=dtype, ckpt=rae_raw,
                            force_backbone=force_backbone)
        info["rae_checkpoint"] = str(rae_ckpt)
    if rae is not None and rae.ahd is not None:
        heatmaps = HeatmapPredictor(rae)
    elif ahd_raw is not None:
        heatmaps = HeatmapPredictor(load_ahd_model(ahd_path, backbone=backbone, device=dev, dtype=dtype,
                                                   ckpt=ahd_raw, force_backbone=force_backbone))
    else:
        raise CheckpointError(f"{rae_ckpt} was trained without the AHD (use_ahd: false); pass --ckpt AHD.ckpt for "
                              "the heatmaps")
    info.update({"ahd_checkpoint": None if ahd_path is None else str(ahd_path), "frame_size": list(size),
                 "clip_len": int(length), "backbone": str(heatmaps.backbone.config.path)})
    if heatmaps.class_names is not None:
        info["class_names"] = list(heatmaps.class_names)
    models = LoadedModels(heatmaps, (int(size[0]), int(size[1])), int(length), rae=rae, info=info)
    if rae is not None and sampling is not None:
        models.warnings = warnings
        models.rae_sampling = sampling
        models.rae_frame_size, models.rae_num_frames = sampling.frame_size, sampling.num_frames
        info["rae_frame_size"], info["rae_num_frames"] = list(models.rae_frame_size), models.rae_num_frames
        info["rae_sampling"] = {**sampling.to_json(), "description": sampling.describe()}
    return models
