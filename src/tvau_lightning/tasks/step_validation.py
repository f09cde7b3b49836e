"""Validation (and so checkpointing) every N *optimizer* steps under gradient accumulation (paper §4.1:
"evaluation/saving every 100 steps", counted as the Hugging Face trainer counts them).

Lightning's ``Trainer(val_check_interval=k)`` counts training *batches*: with ``accumulate_grad_batches=8``,
``val_check_interval=100`` validates every 12.5 optimizer steps. :class:`ValidateEveryOptimizerSteps` sets the
batch interval to ``N × accumulate_grad_batches`` and counts across epochs (``check_val_every_n_epoch=None``),
so validation — and a ``ModelCheckpoint(monitor="val/loss")``, which saves after each validation — happen at
optimizer steps N, 2N, …, and once more after the last step when that is not a multiple of N (so the final
weights take part in the selection, and a run shorter than N steps still validates). With several epochs whose length is not a multiple of the accumulation, Lightning
takes one extra (short) optimizer step per epoch, so later checks drift by that many steps.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class ValidateEveryOptimizerSteps(Callback):
    """Run validation every ``every_n_steps`` optimizer steps (``trainer.global_step`` N, 2N, …).

    Refuses a trainer whose ``val_check_interval`` is also set (two schedules for one thing). ``at_end``: also
    validate after the run's last optimizer step.
    """

    def __init__(self, every_n_steps: int, at_end: bool = True) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive number of optimizer steps, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.at_end = at_end

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.limit_val_batches:
            return  # no validation to schedule (limit_val_batches=0 keeps Lightning's epoch-end checkpointing)
        interval = trainer.val_check_interval
        if getattr(trainer, "_val_check_time_interval", None) is not None or not (
                isinstance(interval, float) and interval == 1.0):
            raise ValueError(
                f"val_every_n_steps={self.every_n_steps} (optimizer steps) and trainer.val_check_interval={interval} "
                "(batches) both schedule validation; remove trainer.val_check_interval from the config")
        trainer.val_check_interval = self.every_n_steps * trainer.accumulate_grad_batches
        trainer.check_val_every_n_epoch = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.at_end or not trainer.limit_val_batches:
            return
        loop = trainer.fit_loop
        max_steps_reached = 0 < loop.max_steps <= trainer.global_step
        last_epoch = loop.max_epochs is not None and loop.max_epochs >= 0 and trainer.current_epoch + 1 >= loop.max_epochs
        if max_steps_reached or (last_epoch and loop.epoch_loop._num_ready_batches_reached()):
            # the run ends after this batch: `should_stop` makes Lightning validate now (as for early stopping)
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"every_n_steps": self.every_n_steps, "at_end": self.at_end}
