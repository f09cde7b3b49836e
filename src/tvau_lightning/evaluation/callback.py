"""The Lightning callback that writes the evaluation artifacts of the stage-1 AHD task.

It reads the task's metric objects (``pl_module.val_metrics`` / ``test_metrics``: ``micro_auc``, ``macro_auc``,
``regions``) in ``on_validation_epoch_end`` / ``on_test_epoch_end``. Lightning runs a callback's epoch-end hook
**before** the LightningModule's (``_EvaluationLoop._on_evaluation_epoch_end`` calls
``_call_callback_hooks`` then ``_call_lightning_module_hook``), and the task's hook computes, logs and resets
the metrics — so the states are still complete here.

Under DDP every rank takes part in the collective steps — gathering the video names seen (hash → name,
``all_gather_object``), syncing the metric states (``Metric.sync_context``, restored afterwards so the task's
own ``compute()`` syncs as usual), resolving ``trainer.log_dir`` (a broadcast) — then only global rank 0
computes the bootstrap and writes, once. Other loggers and tasks are left alone: a module without the AHD
metrics (e.g. the RAE task) is skipped.

When files are written (``write``): ``evaluate`` (default) — at the end of ``tvau validate`` and ``tvau test``
only, never during ``tvau fit`` (a bootstrap every validation epoch would slow training); ``always`` — also
after every validation epoch of ``fit`` (into ``eval/epoch=<E>/``); ``never`` — no files. Independently,
with ``log_figures`` the ROC, RBDR/TBDR and score-timeline figures go to TensorBoard (when a logger is a
``TensorBoardLogger``) after every validation/test epoch, fit included (no bootstrap needed for them).
Sanity-check epochs are skipped.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from tvau_lightning.data.feature_cache import FeatureCacheError, dataset_video_paths
from tvau_lightning.evaluation.artifacts import evaluation_figures, write_artifacts
from tvau_lightning.evaluation.records import EvaluationRecords, records_from_metrics
from tvau_lightning.evaluation.summary import summarize
from tvau_lightning.metrics import MacroAUROC, MicroAUROC, RegionTrackDetection
from tvau_lightning.metrics.state import video_hash
from tvau_lightning.report import write_eval_report

WriteMode = Literal["evaluate", "always", "never"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


class EvaluationArtifacts(Callback):
    """Write ``eval/metrics.json`` (bootstrap CIs), per-video and per-frame CSVs, curves and plots.

    Args:
        num_resamples: bootstrap resamples of the videos (0 = point estimates only).
        seed: seed of the bootstrap's random generator (same seed and data → same intervals).
        confidence: the intervals' coverage (0.95 → 2.5 % and 97.5 % quantiles).
        out_dir: the folder to write into; ``None`` → ``<log_dir>/eval`` (the logger's ``log_dir``, else
            ``trainer.default_root_dir``).
        write: ``evaluate`` (``tvau validate``/``tvau test`` only), ``always`` (also every validation epoch of
            ``tvau fit``) or ``never``.
        log_figures: log the figures to TensorBoard when a logger is a ``TensorBoardLogger``.
        timelines: write one score-timeline PNG per video (``timelines/``).

    File formats: :mod:`tvau_lightning.evaluation.artifacts`; method: :mod:`tvau_lightning.evaluation.bootstrap`.
    """

    def __init__(
        self,
        num_resamples: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
        out_dir: str | None = None,
        write: WriteMode = "evaluate",
        log_figures: bool = True,
        timelines: bool = True,
    ) -> None:
        if num_resamples < 0:
            raise ValueError(f"eval_artifacts.num_resamples must be >= 0, got {num_resamples}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"eval_artifacts.confidence must be in (0, 1), got {confidence}")
        if write not in ("evaluate", "always", "never"):
            raise ValueError(f"eval_artifacts.write must be 'evaluate', 'always' or 'never', got {write!r}")
        self.num_resamples = int(num_resamples)
        self.seed = int(seed)
        self.confidence = float(confidence)
        self.out_dir = out_dir
        self.write = write
        self.log_figures = bool(log_figures)
        self.timelines = bool(timelines)
        self._names: dict[int, str] = {}
        #: the metrics.json of the last write (None before any), for callers and tests
        self.last_written: Path | None = None

    # ---- collecting the video names ---------------------------------------------------------------

    def _start(self) -> None:
        self._names = {}

    def _remember(self, batch: Any) -> None:
        for video in getattr(batch, "video_id", None) or ():
            self._names.setdefault(video_hash(video), str(video))

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start()

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start()

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._remember(batch)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._remember(batch)

    # ---- epoch end --------------------------------------------------------------------------------

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_end(trainer, pl_module, getattr(pl_module, "val_metrics", None), "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_end(trainer, pl_module, getattr(pl_module, "test_metrics", None), "test")

    @staticmethod
    def _ahd_metrics(metrics: Any) -> tuple[MicroAUROC, MacroAUROC | None, RegionTrackDetection] | None:
        if not isinstance(metrics, torch.nn.ModuleDict):
            return None
        found = dict(metrics.items())
        micro, macro, regions = (found.get(k) for k in ("micro_auc", "macro_auc", "regions"))
        if not isinstance(micro, MicroAUROC) or not isinstance(regions, RegionTrackDetection):
            return None
        return micro, macro if isinstance(macro, MacroAUROC) else None, regions

    def _gathered_names(self) -> dict[int, str]:
        if not _distributed():
            return dict(self._names)
        parts: list[dict[int, str] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, self._names)
        names: dict[int, str] = {}
        for part in parts:
            names.update(part or {})
        return names

    def _epoch_end(self, trainer: Trainer, pl_module: LightningModule, metrics: Any, prefix: str) -> None:
        found = self._ahd_metrics(metrics)
        if found is None or trainer.sanity_checking:
            return
        micro, macro, regions = found
        fitting = trainer.state.fn == TrainerFn.FITTING
        write = self.write == "always" or (self.write == "evaluate" and not fitting)
        tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        log = self.log_figures and tensorboard is not None
        if not (write or log):
            return
        names = self._gathered_names()  # collective: every rank
        out_dir: Path | None = None
        if write:
            base = Path(self.out_dir) if self.out_dir is not None else Path(trainer.log_dir or ".") / "eval"  # log_dir broadcasts
            out_dir = base / f"epoch={trainer.current_epoch}" if fitting else base
        records: EvaluationRecords | None = None
        with ExitStack() as stack:
            for metric in (micro, regions):  # collective: every rank syncs, the states are restored on exit
                stack.enter_context(metric.sync_context())
            if trainer.is_global_zero:
                records = records_from_metrics(micro, regions, names, macro_pad=macro.pad if macro is not None else True)
        if records is None:
            return
        if records.frame_video.size == 0:
            warnings.warn("evaluation artifacts: the metrics saw no frame; nothing written", RuntimeWarning,
                          stacklevel=2)
            return
        stage = {TrainerFn.VALIDATING: "validate", TrainerFn.TESTING: "test", TrainerFn.FITTING: "fit"}.get(
            trainer.state.fn, str(trainer.state.fn))
        summary = summarize(records, num_resamples=self.num_resamples if write else 0, seed=self.seed,
                            confidence=self.confidence)
        if write and out_dir is not None:
            info = {"split": prefix, "task": type(pl_module).__name__, "checkpoint": trainer.ckpt_path,
                    "epoch": trainer.current_epoch, "global_step": trainer.global_step}
            self.last_written = write_artifacts(summary, out_dir, stage=stage, info=info, timelines=self.timelines)
            # eval/report.html over the files just written; its `tvau analyze` lines name the video files
            write_eval_report(out_dir, video_paths=_video_paths(trainer, prefix))
        if log:
            from tvau_lightning.evaluation.plots import figure_rgb

            for name, figure in evaluation_figures(summary, title_prefix=f"{prefix}: ").items():
                tensorboard.experiment.add_image(f"{prefix}/{name}", figure_rgb(figure), trainer.global_step,
                                                 dataformats="HWC")


def _video_paths(trainer: Trainer, split: str) -> dict[str, str]:
    """Video id → file (or frame folder) of the evaluated split, when the DataModule says where its videos are
    (``dm.dataset(split)``); empty otherwise (the report then names the ids)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "dataset"):
        return {}
    try:
        paths = dataset_video_paths(datamodule.dataset(split))
    except (FeatureCacheError, ValueError, KeyError, AttributeError):
        return {}
    return {vid: str(path) for vid, path in paths.items()}
