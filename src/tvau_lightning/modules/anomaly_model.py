"""The stage-1 model as one plain ``nn.Module``: frozen backbone + the layers it reads + the AHD (SPEC §3).

``AnomalyHeatmapModel`` is the single path from uint8 clips to heatmaps: preprocess on the model's device →
frozen vision tower (``encode_video``) → the chosen intermediate layers → :class:`AnomalyHeatmapDecoder` →
:class:`AHDOutput`. The stage-1 task trains it, the stage-2 task reads its class maps, and inference runs it;
none of them repeats the chain (the anomalib ``torch_model`` / ``lightning_model`` split).

:func:`load_ahd` is the one way to rebuild it from a stage-1 checkpoint: on a backbone the caller already has
(stage 2 passes its full LVLM) or on one rebuilt vision-only from the checkpoint's stored config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.fingerprint import weights_fingerprint
from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import VideoInputs, VisionOutput
from tvau_lightning.checkpoints import (
    IDENTITY_KEY,
    CheckpointError,
    backbone_config_from,
    check_backbone_identity,
    read_checkpoint,
)
from tvau_lightning.data.feature_cache import data_fingerprint
from tvau_lightning.modules.ahd import AHDOutput, AnomalyHeatmapDecoder


class AnomalyHeatmapModel(nn.Module):
    """Frozen LVLM vision tower + AHD: uint8 clips (or cached layer grids) → :class:`AHDOutput`.

    Args:
        backbone: the backbone adapter (frozen; vision-only is enough for stage 1).
        ahd: the decoder, one projection per entry of ``layers``.
        layers: the vision layers the AHD reads, in the decoder's order.
        class_names: the name of each of the decoder's ``K`` classes (index 0 = normal) for a weakly supervised
            category AHD (``WeakAHDTask``'s ``categories``); ``None`` for the binary AHD.
    """

    def __init__(self, backbone: BackboneAdapter, ahd: AnomalyHeatmapDecoder, layers: Sequence[int],
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        layers = [int(i) for i in layers]
        if len(layers) != ahd.num_layers:
            raise ValueError(f"the AHD has {ahd.num_layers} layer projections but {len(layers)} layers were given "
                             f"({layers})")
        if class_names is not None and len(class_names) != ahd.num_classes:
            raise ValueError(f"the AHD has {ahd.num_classes} classes but {len(class_names)} class names were given "
                             f"({list(class_names)})")
        self.backbone = backbone
        self.ahd = ahd
        self.layers = layers
        #: the class names (index 0 = normal) of a category AHD, ``None`` for the binary one
        self.class_names: list[str] | None = None if class_names is None else [str(c) for c in class_names]

    @classmethod
    def build(
        cls,
        backbone: BackboneAdapter,
        *,
        layers: Sequence[int] | None = None,
        hidden_dim: int | None = None,
        logit_scale: float = 100.0,
        learnable_scale: bool = False,
        fusion: str = "softmax",
        frame_head: bool = False,
    ) -> AnomalyHeatmapModel:
        """A fresh (untrained, no prototypes yet) AHD sized for ``backbone``'s widths, reading ``layers``
        (default: the backbone config's)."""
        layers = list(backbone.layers if layers is None else layers)
        ahd = AnomalyHeatmapDecoder(
            [backbone.vision_hidden_size] * len(layers),
            backbone.text_hidden_size,
            hidden_dim=hidden_dim,
            logit_scale=logit_scale,
            learnable_scale=learnable_scale,
            fusion=fusion,
            frame_head=frame_head,
        )
        return cls(backbone, ahd, layers)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> AnomalyHeatmapModel:
        """The trained stage-1 model of a ``tvau export`` folder or a stage-1 ``.ckpt`` (:func:`load_ahd`; the
        same keyword arguments)."""
        return load_ahd(path, **kwargs)

    @property
    def temporal_factor(self) -> int:
        """Frames per grid step (2 for Qwen2.5-VL, 1 for per-frame towers)."""
        return int(self.backbone.temporal_patch_size)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def encode(
        self, frames: torch.Tensor, *, fps: Any = None, visual_tokens: bool = False
    ) -> tuple[VideoInputs, VisionOutput]:
        """One frozen-tower pass over uint8 clips ``(B, T, H, W, 3)``: the model inputs and the tower's output
        (the grids of :attr:`layers`; the LLM's visual tokens when ``visual_tokens``)."""
        inputs = self.backbone.preprocess_video(frames.to(self.device), fps=fps).to(self.device, self.backbone.dtype)
        with torch.no_grad():
            vision = self.backbone.encode_video(inputs, self.layers, visual_tokens=visual_tokens)
        return inputs, vision

    def layer_features(self, vision: VisionOutput) -> list[torch.Tensor]:
        """The grids ``(B, T', H', W', C)`` the AHD reads, in its order."""
        return [vision.layer_features[i] for i in self.layers]

    def feature_identity(self, datamodule: Any | None = None) -> dict[str, Any]:
        """What a feature cache must match to serve this model (the ``expected`` of
        :meth:`~tvau_lightning.data.feature_cache.FeatureCache.open`): the tower's weights fingerprint, the
        layers and, when a DataModule is given, its frame settings."""
        identity: dict[str, Any] = {"backbone": weights_fingerprint(self.backbone), "layers": list(self.layers)}
        if datamodule is not None:
            identity["data"] = data_fingerprint(datamodule)
        return identity

    def forward(self, frames: torch.Tensor | None = None, *, features: Sequence[torch.Tensor] | None = None) -> AHDOutput:
        """Heatmaps ``(B, T', H', W')`` (and class maps, scores) for uint8 clips ``(B, T, H, W, 3)``, or for
        ``features`` already computed (one grid per layer, e.g. from the feature cache)."""
        if features is None:
            if frames is None:
                raise ValueError("pass frames or features")
            _, vision = self.encode(frames)
            features = self.layer_features(vision)
        return self.ahd(features)


def decoder_from_state(state: Mapping[str, torch.Tensor], hparams: Mapping[str, Any]) -> AnomalyHeatmapDecoder:
    """An :class:`AnomalyHeatmapDecoder` shaped like the weights ``state`` (keys without the ``ahd.`` prefix) —
    binary, or ``C + 1`` classes for a weakly supervised category checkpoint — with the stored scale/fusion
    settings, loaded with them."""
    n_layers = sum(1 for k in state if k.startswith("projections.") and k.endswith(".0.weight"))
    first = state["projections.0.0.weight"]
    ahd = AnomalyHeatmapDecoder(
        [int(state[f"projections.{i}.0.weight"].shape[1]) for i in range(n_layers)],
        int(state["prototypes"].shape[1]),
        hidden_dim=int(first.shape[0]),
        num_classes=int(state["prototypes"].shape[0]),
        logit_scale=float(hparams.get("logit_scale", 100.0)),
        learnable_scale=bool(hparams.get("learnable_scale", False)),
        fusion=str(hparams.get("fusion", "softmax")),
        frame_head="frame_head.weight" in state,
    )
    ahd.load_state_dict(dict(state), strict=True)
    return ahd


def stored_layers(hparams: Mapping[str, Any]) -> list[int] | None:
    """The vision layers a stage-1 checkpoint's AHD reads, as its backbone config stored them (``None`` = the
    family default)."""
    config = hparams.get("backbone")
    layers = config.get("layers") if isinstance(config, Mapping) else getattr(config, "layers", None)
    return [int(i) for i in layers] if layers else None


def stored_class_names(hparams: Mapping[str, Any], num_classes: int, where: Any = "<checkpoint>") -> list[str] | None:
    """The class names (index 0 = normal) a weakly supervised category checkpoint records (``WeakAHDTask``'s
    ``categories`` hyper-parameter, which a ``tvau export`` folder's ``config.json`` keeps too), ``None`` for a
    binary AHD checkpoint."""
    names = hparams.get("categories")
    if names is None:
        return None
    names = [str(c) for c in names]
    if len(names) != num_classes:
        raise CheckpointError(f"{where} names {len(names)} categories {names} but its AHD has {num_classes} class "
                              "prototypes; the checkpoint is inconsistent")
    return names


def load_ahd(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    *,
    backbone: BackboneAdapter | None = None,
    backbone_path: str | None = None,
    dtype: str = "float32",
    force_backbone: bool = False,
    source: str | os.PathLike[str] | None = None,
) -> AnomalyHeatmapModel:
    """Rebuild the stage-1 model (AHD weights + prototypes + layers) from a stage-1 checkpoint, in eval mode.

    A weakly supervised category checkpoint gives a ``C + 1``-class decoder and its :attr:`~AnomalyHeatmapModel.class_names`
    (:func:`stored_class_names`).

    Args:
        checkpoint: the ``.ckpt`` path or a ``tvau export`` folder, or the checkpoint already read with
            :func:`~tvau_lightning.checkpoints.read_checkpoint` (then ``source`` names it in messages).
        backbone: run on this adapter (e.g. stage 2's full LVLM); else the stored backbone config is rebuilt
            vision-only, with ``backbone_path`` overriding its folder and ``dtype`` its compute dtype.
        force_backbone: run even on a backbone whose family or vision architecture differs from the one the
            checkpoint records (a warning instead of an error).
    """
    if isinstance(checkpoint, Mapping):
        ckpt, where = checkpoint, Path(source or "<checkpoint>")
    else:
        where = Path(checkpoint)
        ckpt = read_checkpoint(where)
    hparams = dict(ckpt["hyper_parameters"])
    state = {k[len("ahd."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("ahd.")}
    if not state or "prototypes" not in state or "backbone" not in hparams:
        raise CheckpointError(f"{where} holds no AHD weights ('ahd.*') or no backbone config; is it a stage-1 "
                              "AHDTask checkpoint (tvau fit --config configs/ahd.yaml)?")
    if backbone is None:
        config = backbone_config_from(hparams["backbone"], where, path=backbone_path, dtype=dtype)
        backbone = load_backbone(config, vision_only=True).freeze()
    check_backbone_identity(ckpt, backbone, source=where, force=force_backbone)
    try:
        ahd = decoder_from_state(state, hparams)
    except RuntimeError as error:
        raise CheckpointError(f"{where}: the AHD weights are inconsistent ({error}); re-save it with `tvau fit`") from None
    if not bool(ahd.has_prototypes):
        raise CheckpointError(f"{where} has no class prototypes; re-save it with a current `tvau fit`")
    if ahd.projections[0][0].weight.shape[1] != backbone.vision_hidden_size or \
            ahd.prototypes.shape[1] != backbone.text_hidden_size:
        raise CheckpointError(
            f"{where} was trained for a backbone with vision width {ahd.projections[0][0].weight.shape[1]} and LLM "
            f"width {ahd.prototypes.shape[1]}, but {backbone.config.path} has {backbone.vision_hidden_size} and "
            f"{backbone.text_hidden_size}; use the backbone the checkpoint was trained with (--backbone)")
    recorded = ckpt.get(IDENTITY_KEY)
    layers = (recorded.get("layers") if isinstance(recorded, Mapping) else None) or stored_layers(hparams) \
        or backbone.default_layers
    if len(layers) != ahd.num_layers:
        raise CheckpointError(f"{where}: the AHD has {ahd.num_layers} layer projections but its backbone config "
                              f"names the vision layers {layers}; the checkpoint is inconsistent")
    return AnomalyHeatmapModel(backbone, ahd.requires_grad_(False), layers,
                               class_names=stored_class_names(hparams, ahd.num_classes, where)).eval()
