"""What the stage-1 and stage-2 tasks share: a frozen backbone that checkpoints leave out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import LightningModule
from torch.nn.modules.module import _IncompatibleKeys

from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel
from tvau_lightning.tasks.schedules import adamw_warmup_cosine


class FrozenBackboneTask(LightningModule):
    """A task around a frozen :class:`BackboneAdapter` (``self.backbone``).

    Checkpoints hold only what :meth:`keeps_in_checkpoint` selects (the trained weights); the frozen
    backbone is rebuilt from its config on load, so a stage-1 checkpoint of a 7B model stays a few MB.
    Loading is strict about the selected weights and ignores the rest.
    """

    backbone: BackboneAdapter

    def adopt_heatmap_model(self, model: AnomalyHeatmapModel | None) -> None:
        """Use ``model`` (the stage-1 :class:`AnomalyHeatmapModel`) for heatmaps: its backbone and AHD become this
        task's ``backbone`` and ``ahd`` children, so checkpoint keys stay ``ahd.*`` / ``backbone.*``; the model
        itself is held as :attr:`heatmap_model` without registering the same weights twice."""
        if model is not None:
            self.backbone = model.backbone
            self.ahd = model.ahd
        else:
            self.ahd = None
        object.__setattr__(self, "heatmap_model", model)

    def keeps_in_checkpoint(self, key: str) -> bool:
        """Whether the state-dict entry ``key`` is saved (default: everything outside the backbone)."""
        return not key.startswith("backbone.")

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        return type(full)((k, v) for k, v in full.items() if self.keeps_in_checkpoint(k[len(prefix):]))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if self.keeps_in_checkpoint(k)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"checkpoint does not match {type(self).__name__}: missing {missing[:5]}, unexpected "
                f"{list(result.unexpected_keys)[:5]} — was it written by the same task and backbone family?"
            )
        return _IncompatibleKeys(missing, list(result.unexpected_keys))

    def train(self, mode: bool = True) -> FrozenBackboneTask:
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, ever (LoRA dropout is re-enabled by the tasks that use it)
        return self


class HeatmapTask(FrozenBackboneTask):
    """A stage-1 task: only the AHD (``self.ahd``) trains, with AdamW and a warm-up cosine schedule stepped per
    optimizer step, from the task's ``lr``, ``weight_decay``, ``warmup_ratio`` and ``min_lr`` hyper-parameters."""

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        return adamw_warmup_cosine(self.ahd.parameters(), total_steps=self.trainer.estimated_stepping_batches,
                                   lr=hp.lr, weight_decay=hp.weight_decay, warmup_ratio=hp.warmup_ratio,
                                   min_lr=hp.min_lr)
