"""Stage 1: the AHD task — train the Anomaly Heatmap Decoder on a frozen LVLM vision tower (SPEC §3).

Only the AHD's parameters train; the backbone is loaded vision-only (no LLM in memory) and frozen, and
checkpoints hold the AHD alone (weights + class prototypes), never the backbone. Validation and test
compute frame-level micro/macro AUC and RBDC/TBDC over every frame of every video of the split.

With ``feature_cache`` set (a folder filled by ``tvau cache-features``), every loop reads the tower's grids
from the cache instead of running the tower (into ``ClipBatch.extras``), after the cache's fingerprint was
checked against this backbone, layers and DataModule at ``setup``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.checkpoints import IDENTITY_KEY, backbone_identity
from tvau_lightning.data.feature_cache import (
    FeatureCache,
    MissingFeaturesError,
    attach_cached_features,
    feature_key,
)
from tvau_lightning.data.types import ClipBatch
from tvau_lightning.metrics import MacroAUROC, MicroAUROC, RegionTrackDetection
from tvau_lightning.modules.ahd import AHDOutput, frame_scores
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel
from tvau_lightning.modules.grid import downsample_masks, downsample_valid, upsample_heatmap, upsample_scores
from tvau_lightning.modules.prompts import PromptBank
from tvau_lightning.tasks.base import HeatmapTask


class AHDTask(HeatmapTask):
    """Train and evaluate the AHD.

    Args:
        backbone: the LVLM (``configs/backbones/*.yaml``); loaded vision-only and frozen.
        prompts: the normal/abnormal template bank; ``None`` → the default bank.
        text_embedding_mode: ``input_embeddings`` (the LLM's embedding table, no LLM needed) or
            ``hidden_states`` (runs the LLM once at start-up; loads the full model for that).
        hidden_dim: hidden width of the per-layer MLPs (``None`` → the vision width, which matches the paper's
            Table 4 parameter count: four 1280 → 1280 → 3584 MLPs ≈ 24.9 M at 7B shapes).
        logit_scale: softmax temperature on cosine similarities (100 in the author's prototype).
        learnable_scale: learn the temperature.
        fusion: ``softmax``-normalised or ``linear`` layer weights.
        frame_head: add the optional frame-level CE head (off in the paper's final loss).
        frame_loss_weight: weight of that head's loss.
        mask_downsample: how GT masks become grid targets: ``max`` (default: a cell touched by any annotated
            pixel, so no object — however small — vanishes from the targets), ``area`` (≥ 50 % of the cell;
            drops objects smaller than half a cell), ``nearest`` (the cell centre).
        lr: peak learning rate of AdamW (warm-up cosine).
        min_lr: floor of the cosine schedule.
        weight_decay: AdamW weight decay.
        warmup_ratio: fraction of optimizer steps spent warming up.
        macro_auc_padding: UBnormal's macro-AUC convention (pad each video with one normal and one
            abnormal frame); ``False`` skips single-class videos.
        log_heatmaps: number of validation clips drawn into TensorBoard each epoch (0 = none).
        feature_cache: a folder filled by ``tvau cache-features`` for this backbone, layers and data: train,
            validate, test and predict read the tower's grids from it instead of running the tower. ``None``
            (default) runs the tower on every batch.
        feature_cache_missing: what to do with a clip the cache lacks: ``error`` (default; the message says how
            to fill it) or ``compute`` (run the tower for that batch).
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        prompts: PromptBank | None = None,
        text_embedding_mode: Literal["input_embeddings", "hidden_states"] = "input_embeddings",
        hidden_dim: int | None = None,
        logit_scale: float = 100.0,
        learnable_scale: bool = False,
        fusion: Literal["softmax", "linear"] = "softmax",
        frame_head: bool = False,
        frame_loss_weight: float = 0.0,
        mask_downsample: Literal["max", "area", "nearest"] = "max",
        lr: float = 1e-3,
        min_lr: float = 1e-8,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        macro_auc_padding: bool = True,
        log_heatmaps: int = 2,
        feature_cache: str | None = None,
        feature_cache_missing: Literal["error", "compute"] = "error",
    ) -> None:
        super().__init__()
        if frame_loss_weight > 0 and not frame_head:
            raise ValueError("frame_loss_weight > 0 needs frame_head=True")
        if feature_cache_missing not in ("error", "compute"):
            raise ValueError(f"feature_cache_missing must be 'error' or 'compute', got {feature_cache_missing!r}")
        self.save_hyperparameters()
        self.backbone_config = backbone
        self.prompts = prompts or PromptBank()
        vision_only = text_embedding_mode == "input_embeddings"
        model = AnomalyHeatmapModel.build(
            load_backbone(backbone, vision_only=vision_only).freeze().eval(),
            hidden_dim=hidden_dim,
            logit_scale=logit_scale,
            learnable_scale=learnable_scale,
            fusion=fusion,
            frame_head=frame_head,
        )
        self.adopt_heatmap_model(model)
        model.ahd.set_prototypes(self.compute_prototypes())
        if not vision_only:
            # the LLM was only needed for the prototypes: drop back to a vision-only backbone
            vision = load_backbone(backbone, vision_only=True).freeze().eval()
            self.adopt_heatmap_model(AnomalyHeatmapModel(vision, model.ahd, model.layers))
        # the prototypes now live in the AHD: the ~1 GiB (7B) input-embedding table has no further use here
        self.backbone.release_input_embeddings()
        self.val_metrics = self._make_metrics()
        self.test_metrics = self._make_metrics()
        self.feature_cache = feature_cache
        self._cache: FeatureCache | None = None

    @property
    def layers(self) -> list[int]:
        """The vision layers the AHD reads."""
        return self.heatmap_model.layers

    @property
    def temporal_factor(self) -> int:
        """Frames per grid step."""
        return self.heatmap_model.temporal_factor

    # ---- building blocks -------------------------------------------------------------------------

    def _make_metrics(self) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict(
            {
                "micro_auc": MicroAUROC(),
                "macro_auc": MacroAUROC(pad=self.hparams.macro_auc_padding),
                "regions": RegionTrackDetection(),
            }
        )

    @torch.no_grad()
    def compute_prototypes(self) -> torch.Tensor:
        """Class prototypes ``(2, D)``: each sentence mean-pooled over tokens, then averaged per class."""
        normal, abnormal = self.prompts.class_sentences()
        mode = self.hparams.text_embedding_mode
        rows = [self.backbone.embed_text(sentences, mode=mode).float().mean(0) for sentences in (normal, abnormal)]
        return torch.stack(rows)

    # ---- forward ---------------------------------------------------------------------------------

    def vision_features(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        """Frozen-tower features of the AHD layers for uint8 clips ``(B, T, H, W, 3)``, and their grid."""
        inputs, vision = self.heatmap_model.encode(frames)
        return self.heatmap_model.layer_features(vision), inputs.grid

    def forward(self, frames: torch.Tensor) -> AHDOutput:
        """Heatmaps ``(B, T', H', W')`` (and class maps, scores) for uint8 clips ``(B, T, H, W, 3)``."""
        return self.heatmap_model(frames)

    def forward_batch(self, batch: ClipBatch) -> AHDOutput:
        """Heatmaps of a batch: from its cached grids (``batch.extras``, see ``feature_cache``) when present,
        else from the tower on ``batch.frames``."""
        return self.heatmap_model(batch.frames, features=self.cached_features(batch))

    # ---- feature cache ---------------------------------------------------------------------------

    def open_feature_cache(self, datamodule: Any | None = None) -> FeatureCache:
        """Open ``feature_cache``, checking that it was built for this backbone and layers (and, when given,
        ``datamodule``'s frame settings); :class:`~tvau_lightning.data.feature_cache.FeatureCacheError` says
        what differs and how to rebuild."""
        if self.feature_cache is None:
            raise ValueError("feature_cache is not set")
        self._cache = FeatureCache.open(Path(self.feature_cache), self.heatmap_model.feature_identity(datamodule))
        return self._cache

    def setup(self, stage: str) -> None:
        if self.feature_cache is None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        cache = self.open_feature_cache(datamodule)
        if datamodule is not None and hasattr(datamodule, "dataset"):
            # a video replaced since the cache was filled makes the cache stale: refuse, naming it
            splits = {"fit": ("train", "val"), "validate": ("val",)}.get(stage, ("test",))
            for split in splits:
                cache.sync_videos(datamodule.dataset(split), invalidate=False)
        if datamodule is not None and hasattr(datamodule, "read_from_feature_cache") and \
                self.hparams.feature_cache_missing == "error":
            datamodule.read_from_feature_cache(cache)  # batches come from the cache files alone: no video opened

    def cached_features(self, batch: ClipBatch) -> list[torch.Tensor] | None:
        """The batch's grids ``(B, T', H', W', C)`` per AHD layer from ``batch.extras``, read from
        ``feature_cache`` into it when missing; ``None`` when there is no cache (or, with
        ``feature_cache_missing: compute``, when a clip of the batch is not cached)."""
        keys = [feature_key(i) for i in self.layers]
        if not all(k in batch.extras for k in keys):
            if self.feature_cache is None:
                return None
            cache = self._cache if self._cache is not None else self.open_feature_cache()
            try:
                attach_cached_features(batch, cache)
            except MissingFeaturesError:
                if self.hparams.feature_cache_missing == "compute":
                    return None  # the tower runs on this batch
                raise
        features = [batch.extras[k].to(self.device, non_blocking=True) for k in keys]
        expected = self.backbone.feature_grid(batch.num_frames, batch.frame_size)
        if tuple(features[0].shape[1:4]) != tuple(expected):
            raise ValueError(
                f"cached features have the grid {tuple(features[0].shape[1:4])}, but clips of {batch.num_frames} "
                f"frames of {batch.frame_size} give {tuple(expected)}: the cache {self.feature_cache} was built for "
                "other data settings; rebuild it (`tvau cache-features ... --overwrite`)"
            )
        return features

    def frame_heatmaps(self, out: AHDOutput, batch: ClipBatch) -> torch.Tensor:
        """Heatmaps at frame resolution ``(B, T, H, W)`` (bilinear, each grid step over its frames)."""
        return upsample_heatmap(out.heatmap, num_frames=batch.num_frames, frame_size=batch.frame_size,
                                temporal_factor=self.temporal_factor)

    def frame_score_maps(self, out: AHDOutput, batch: ClipBatch) -> torch.Tensor:
        """The unsaturated scores (:attr:`AHDOutput.scores`) at frame resolution ``(B, T, H, W)``."""
        return upsample_scores(out.scores, num_frames=batch.num_frames, frame_size=batch.frame_size,
                               temporal_factor=self.temporal_factor)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the backbone this AHD was trained on (family, vision fingerprint, layers)."""
        checkpoint[IDENTITY_KEY] = backbone_identity(self.backbone, self.layers)

    # ---- training --------------------------------------------------------------------------------

    def loss(self, out: AHDOutput, batch: ClipBatch) -> torch.Tensor:
        """Pixel CE on masks downsampled to the grid (padding steps excluded), plus the optional frame CE."""
        grid = tuple(out.heatmap.shape[1:])
        target = downsample_masks(batch.masks, grid, temporal_factor=self.temporal_factor,
                                  mode=self.hparams.mask_downsample).long()
        step_valid = downsample_valid(batch.valid, temporal_factor=self.temporal_factor)
        pixel_ce = F.cross_entropy(out.logits.movedim(2, 1), target, reduction="none")  # (B, T', H', W')
        weight = step_valid[..., None, None].expand_as(pixel_ce).float()
        loss = (pixel_ce * weight).sum() / weight.sum().clamp(min=1.0)
        if out.frame_logits is not None and self.hparams.frame_loss_weight > 0:
            labels = downsample_valid(batch.frame_labels.bool() & batch.valid, temporal_factor=self.temporal_factor)
            frame_ce = F.cross_entropy(out.frame_logits[step_valid], labels[step_valid].long())
            loss = loss + self.hparams.frame_loss_weight * frame_ce
        return loss

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        out = self.forward_batch(batch)
        loss = self.loss(out, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    # ---- evaluation ------------------------------------------------------------------------------

    def _evaluate(self, batch: ClipBatch, metrics: torch.nn.ModuleDict, stage: str) -> AHDOutput:
        out = self.forward_batch(batch)
        self.log(f"{stage}/loss", self.loss(out, batch), batch_size=batch.batch_size, sync_dist=True)
        heat = self.frame_heatmaps(out, batch)
        score_maps = self.frame_score_maps(out, batch)  # frames and regions are ranked by the unsaturated logit gap
        scores = frame_scores(score_maps)
        index = batch.frame_index.masked_fill(~batch.valid, -1)
        metrics["micro_auc"].update(scores, batch.frame_labels, batch.video_id, index)
        metrics["macro_auc"].update(scores, batch.frame_labels, batch.video_id, index)
        metrics["regions"].update(heat, batch.video_id, index, batch.original_size,
                                  gt_masks=None if batch.gt_boxes is not None else batch.masks,
                                  gt_boxes=batch.gt_boxes, scores=score_maps)
        return out

    def _log_epoch_metrics(self, metrics: torch.nn.ModuleDict, stage: str) -> dict[str, float]:
        regions = metrics["regions"].compute()
        values = {
            f"{stage}/micro_auc": metrics["micro_auc"].compute(),
            f"{stage}/macro_auc": metrics["macro_auc"].compute(),
            f"{stage}/rbdc": regions["rbdc"],
            f"{stage}/tbdc": regions["tbdc"],
        }
        values = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}
        self.log_dict(values, prog_bar=True)
        for m in metrics.values():
            m.reset()
        return {k: float(v) for k, v in values.items()}

    def validation_step(self, batch: ClipBatch, batch_idx: int) -> None:
        out = self._evaluate(batch, self.val_metrics, "val")
        if batch_idx < self.hparams.log_heatmaps:
            self._log_heatmap_image(batch, out, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics(self.val_metrics, "val")

    def test_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics(self.test_metrics, "test")

    def predict_step(self, batch: ClipBatch, batch_idx: int) -> dict[str, Any]:
        """Per clip: grid heatmaps, per-frame scores and the frame indices they belong to."""
        out = self.forward_batch(batch)
        scores = frame_scores(self.frame_heatmaps(out, batch))
        return {
            "video_id": batch.video_id,
            "frame_index": batch.frame_index.masked_fill(~batch.valid, -1).cpu(),
            "frame_scores": scores.float().cpu(),
            "heatmap": out.heatmap.float().cpu(),
            "temporal_factor": self.temporal_factor,
            "original_size": batch.original_size.cpu(),
        }

    # ---- logging ---------------------------------------------------------------------------------

    def _log_heatmap_image(self, batch: ClipBatch, out: AHDOutput, batch_idx: int) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        from tvau_lightning.visualize import draw_mask_contour, overlay_heatmap, tile_frames

        logger = self.logger
        if not isinstance(logger, TensorBoardLogger) or self.global_rank != 0:
            return
        heat = self.frame_heatmaps(out, batch)[0]
        keep = batch.valid[0]
        frames = overlay_heatmap(batch.frames[0][keep].cpu(), heat[keep].cpu())
        frames = draw_mask_contour(frames, batch.masks[0][keep].cpu())
        image = tile_frames(frames[:: max(1, frames.shape[0] // 8)][:8], ncols=4)
        logger.experiment.add_image(f"val/heatmap_{batch_idx}", image, self.global_step, dataformats="HWC")

