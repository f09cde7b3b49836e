"""Learning-rate schedules shared by the tasks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(optimizer: Optimizer, *, total_steps: int, warmup_ratio: float, peak_lr: float,
                  min_lr: float) -> LambdaLR:
    """Linear warm-up from ~0 to ``peak_lr`` over ``warmup_ratio`` of the steps, then cosine decay to
    ``min_lr`` at ``total_steps`` (paper §4.1: 10 % warm-up, 1e-3 peak, 1e-8 floor). The optimizer's base
    learning rate must be ``peak_lr``; the schedule steps once per optimizer step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    warmup = int(round(total_steps * warmup_ratio))
    floor = min_lr / peak_lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def adamw_warmup_cosine(params: Iterable[torch.nn.Parameter], *, total_steps: int, lr: float, weight_decay: float,
                        warmup_ratio: float, min_lr: float) -> dict[str, Any]:
    """AdamW on the trainable ``params`` with :func:`warmup_cosine` stepped per optimizer step — the
    ``configure_optimizers`` return value of the stage-1 tasks."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("nothing to train: no parameter requires a gradient")
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    scheduler = warmup_cosine(optimizer, total_steps=max(1, int(total_steps)), warmup_ratio=warmup_ratio,
                              peak_lr=lr, min_lr=min_lr)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
