"""Stage 1 from video-level labels: the weakly supervised AHD with category prototypes (UCF-Crime, XD-Violence).

The same frozen vision tower and AHD as :class:`~tvau_lightning.tasks.ahd.AHDTask`, with ``C + 1`` text
prototypes (``normal`` + the dataset's categories; :mod:`tvau_lightning.modules.category_ahd`) and trained by
multiple-instance learning over the heatmap: a training clip is a bag labelled with its video's labels
(``ClipBatch.video_labels``) — binary top-k MIL on ``1 − p(normal)``, category MIL-alignment on the per-class
logits, optional smoothness/sparsity terms (equations and sources in the module above). Batches without
``video_labels`` (a pixel-mask dataset such as UBnormal) train on their masks instead (binary cell BCE), so
pixel supervision stays available where masks exist. Heatmaps stay pixel-level.

Validation/test log frame AUC, frame AP, fine-grained mAP@tIoU (0.1:0.5 and the average, abnormal videos) and
the category accuracy on abnormal frames (argmax over categories of the frame score, correct when the frame
carries that category), over every frame of the split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.checkpoints import IDENTITY_KEY, backbone_identity
from tvau_lightning.data.types import ClipBatch
from tvau_lightning.metrics import FrameAveragePrecision, MicroAUROC, TemporalMAP
from tvau_lightning.modules.ahd import AHDOutput, frame_scores
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel
from tvau_lightning.modules.category_ahd import (
    CategoryHeatmapDecoder,
    augment_prototypes,
    binary_mil_loss,
    category_mil_loss,
    category_sentences,
    frame_class_scores,
    temporal_regularisers,
)
from tvau_lightning.modules.grid import downsample_masks, downsample_valid, upsample_scores
from tvau_lightning.modules.prompts import PromptBank
from tvau_lightning.tasks.base import HeatmapTask


class WeakAHDTask(HeatmapTask):
    """Train and evaluate the category AHD from video-level labels.

    Args:
        backbone: the LVLM (``configs/backbones/*.yaml``); loaded vision-only and frozen.
        categories: class names in the DataModule's column order, index 0 = normal (UCF-Crime: ``Normal``,
            ``Abuse``, …; XD-Violence: ``Normal``, ``Fighting``, ``Shooting``, ``Riot``, ``Abuse``,
            ``Car accident``, ``Explosion``); the names fill the prompt templates.
        prompts: the template bank (its normal sentences and abnormal templates); ``None`` → the default bank.
        synonyms: extra words per category name for its templates.
        descriptions_file: optional JSON ``{category: [sentence, …]}`` of descriptive sentences (label
            augmentation, Ex-VAD's LAAM): the ``description_top_k`` most similar to a category's template
            prototype are averaged into it.
        description_top_k: how many descriptions are kept per category.
        text_embedding_mode: ``input_embeddings`` (no LLM needed) or ``hidden_states``.
        hidden_dim, logit_scale, learnable_scale, fusion: the decoder's (see :class:`~tvau_lightning.tasks.ahd.AHDTask`).
        k_ratio: fraction of a clip's cells in the top-k MIL means.
        category_loss_weight: weight of the category MIL-alignment loss.
        smoothness_weight: weight of the temporal smoothness term (0 = off).
        sparsity_weight: weight of the sparsity term (0 = off).
        pixel_loss_weight: weight of the mask loss on batches without video labels.
        lr, min_lr, weight_decay, warmup_ratio: AdamW with warm-up cosine.
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        categories: list[str],
        prompts: PromptBank | None = None,
        synonyms: dict[str, list[str]] | None = None,
        descriptions_file: str | None = None,
        description_top_k: int = 4,
        text_embedding_mode: Literal["input_embeddings", "hidden_states"] = "input_embeddings",
        hidden_dim: int | None = None,
        logit_scale: float = 100.0,
        learnable_scale: bool = False,
        fusion: Literal["softmax", "linear"] = "softmax",
        k_ratio: float = 0.1,
        category_loss_weight: float = 1.0,
        smoothness_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        pixel_loss_weight: float = 1.0,
        lr: float = 1e-3,
        min_lr: float = 1e-8,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if len(categories) < 2:
            raise ValueError(f"categories must list the normal class and at least one category, got {categories}")
        if not 0 < k_ratio <= 1:
            raise ValueError(f"k_ratio must be in (0, 1], got {k_ratio}")
        self.save_hyperparameters()
        self.backbone_config = backbone
        self.categories = list(categories)
        self.prompts = prompts or PromptBank()
        vision_only = text_embedding_mode == "input_embeddings"
        tower = load_backbone(backbone, vision_only=vision_only).freeze().eval()
        layers = list(tower.layers)
        decoder = CategoryHeatmapDecoder([tower.vision_hidden_size] * len(layers), tower.text_hidden_size,
                                         num_classes=len(categories), hidden_dim=hidden_dim, logit_scale=logit_scale,
                                         learnable_scale=learnable_scale, fusion=fusion)
        self.adopt_heatmap_model(AnomalyHeatmapModel(tower, decoder, layers, class_names=self.categories))
        decoder.set_prototypes(self.compute_prototypes())
        if not vision_only:
            vision = load_backbone(backbone, vision_only=True).freeze().eval()
            self.adopt_heatmap_model(AnomalyHeatmapModel(vision, decoder, layers, class_names=self.categories))
        self.val_metrics = self._make_metrics()
        self.test_metrics = self._make_metrics()

    @property
    def temporal_factor(self) -> int:
        return self.heatmap_model.temporal_factor

    @property
    def layers(self) -> list[int]:
        return self.heatmap_model.layers

    # ---- building blocks -------------------------------------------------------------------------

    def _make_metrics(self) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({"auc": MicroAUROC(), "ap": FrameAveragePrecision(),
                                    "map": TemporalMAP(num_classes=len(self.categories))})

    @torch.no_grad()
    def compute_prototypes(self) -> torch.Tensor:
        """Class prototypes ``(K, D)``: mean-pooled sentence embeddings averaged per class, then (optionally)
        augmented with the most similar descriptions."""
        mode = self.hparams.text_embedding_mode
        rows = category_sentences(self.prompts, self.categories, self.hparams.synonyms)
        prototypes = torch.stack([self.backbone.embed_text(s, mode=mode).float().mean(0) for s in rows])
        if self.hparams.descriptions_file:
            path = Path(self.hparams.descriptions_file)
            try:
                table = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"descriptions_file {path}: {error}; expected JSON {{category: [sentence, …]}}") from None
            unknown = sorted(set(table) - set(self.categories))
            if unknown:
                raise ValueError(f"descriptions_file {path} names unknown categories {unknown}; known: {self.categories}")
            described = [self.backbone.embed_text(table[c], mode=mode).float() if table.get(c) else None
                         for c in self.categories]
            prototypes = augment_prototypes(prototypes, described, self.hparams.description_top_k)
        return prototypes

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        columns = getattr(datamodule, "categories", None)
        if columns is not None and len(columns) != len(self.categories):
            raise ValueError(f"the task has {len(self.categories)} categories {self.categories} but the DataModule's "
                             f"labels have {len(columns)} columns {list(columns)}; list one name per column, in order")

    def forward(self, frames: torch.Tensor) -> AHDOutput:
        """Outputs for uint8 clips ``(B, T, H, W, 3)``: ``heatmap = 1 − p(normal)``, ``logits (B, T', K, H', W')``."""
        return self.heatmap_model(frames)

    def frame_class_scores(self, out: AHDOutput, num_frames: int) -> torch.Tensor:
        """Per-frame class scores ``(B, T, K)``: the spatial max of ``p_k`` for categories, ``1 − max heatmap``
        for normal (:func:`~tvau_lightning.modules.category_ahd.frame_class_scores`, which ``tvau analyze`` uses
        too)."""
        return frame_class_scores(out, temporal_factor=self.temporal_factor, num_frames=num_frames)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[IDENTITY_KEY] = backbone_identity(self.backbone, self.layers)

    # ---- training --------------------------------------------------------------------------------

    def loss(self, out: AHDOutput, batch: ClipBatch) -> torch.Tensor:
        """The weak losses when the batch has video labels, else the mask loss (module docstring)."""
        step_valid = downsample_valid(batch.valid, temporal_factor=self.temporal_factor)
        hp = self.hparams
        if batch.video_labels is None:
            grid = tuple(out.heatmap.shape[1:])
            target = downsample_masks(batch.masks, grid, temporal_factor=self.temporal_factor)
            weight = step_valid[..., None, None].expand_as(out.heatmap).float()
            cell = F.binary_cross_entropy_with_logits(out.scores, target.float(), reduction="none")
            return hp.pixel_loss_weight * (cell * weight).sum() / weight.sum().clamp(min=1.0)
        labels = batch.video_labels.to(out.logits.device)
        abnormal = labels[:, 1:].any(dim=1)
        loss = binary_mil_loss(out, step_valid, abnormal, hp.k_ratio)
        if hp.category_loss_weight > 0:
            loss = loss + hp.category_loss_weight * category_mil_loss(out, step_valid, labels, hp.k_ratio)
        if hp.smoothness_weight > 0 or hp.sparsity_weight > 0:
            smooth, sparse = temporal_regularisers(out, step_valid, abnormal)
            loss = loss + hp.smoothness_weight * smooth + hp.sparsity_weight * sparse
        return loss

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.heatmap_model(batch.frames), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    # ---- evaluation ------------------------------------------------------------------------------

    def _evaluate(self, batch: ClipBatch, metrics: torch.nn.ModuleDict) -> AHDOutput:
        out = self.heatmap_model(batch.frames)
        index = batch.frame_index.masked_fill(~batch.valid, -1)
        maps = upsample_scores(out.scores, num_frames=batch.num_frames, frame_size=batch.frame_size,
                               temporal_factor=self.temporal_factor)
        scores = frame_scores(maps)
        labels = batch.frame_labels
        if bool((labels[batch.valid] >= 0).all()):  # a split with frame ground truth
            metrics["auc"].update(scores, labels, batch.video_id, index)
            metrics["ap"].update(scores, labels, batch.video_id, index)
        if batch.frame_categories is not None:
            class_scores = self.frame_class_scores(out, batch.num_frames)
            metrics["map"].update(class_scores, batch.frame_categories, batch.video_id, index)  # + category accuracy
        return out

    def _log_epoch_metrics(self, metrics: torch.nn.ModuleDict, stage: str) -> dict[str, float]:
        values: dict[str, torch.Tensor] = {f"{stage}/frame_auc": metrics["auc"].compute(),
                                           f"{stage}/frame_ap": metrics["ap"].compute()}
        values |= {f"{stage}/{k}": v for k, v in metrics["map"].compute().items()}
        values = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}
        self.log_dict(values, prog_bar=False)
        for m in metrics.values():
            m.reset()
        return {k: float(v) for k, v in values.items()}

    def validation_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics, "val")

    def test_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics, "test")

    def predict_step(self, batch: ClipBatch, batch_idx: int) -> dict[str, Any]:
        """Per clip: grid heatmaps, per-frame anomaly scores and class scores, and their frame indices."""
        out = self.heatmap_model(batch.frames)
        return {
            "video_id": batch.video_id,
            "frame_index": batch.frame_index.masked_fill(~batch.valid, -1).cpu(),
            "frame_scores": frame_scores(upsample_scores(out.scores, num_frames=batch.num_frames,
                                                         frame_size=batch.frame_size,
                                                         temporal_factor=self.temporal_factor)).float().cpu(),
            "frame_class_scores": self.frame_class_scores(out, batch.num_frames).float().cpu(),
            "heatmap": out.heatmap.float().cpu(),
            "temporal_factor": self.temporal_factor,
            "original_size": batch.original_size.cpu(),
        }
