"""Frame-level average precision as a torchmetric (XD-Violence's coarse-grained metric).

Accumulates one row per real frame like :class:`~tvau_lightning.metrics.MicroAUROC` (each ``(video, frame)``
counted once, whatever the clip sampling or ``DistributedSampler`` repetition), then calls
:func:`~tvau_lightning.metrics.functional.frame_ap.frame_average_precision` — equal to scikit-learn's
``average_precision_score`` over the concatenated frames.
"""

from __future__ import annotations

import warnings

import torch

from tvau_lightning.metrics.frame_auc import _FrameScoreMetric
from tvau_lightning.metrics.functional.frame_ap import APInterpolation, frame_average_precision


class FrameAveragePrecision(_FrameScoreMetric):
    """Frame AP over all frames of all videos; ``update(scores, labels, video_ids, frame_index)`` as
    :class:`~tvau_lightning.metrics.MicroAUROC`.

    Args:
        interpolation: ``step`` (sklearn's ``average_precision_score``, VadCLIP's reported AP) or
            ``trapezoid`` (``auc(recall, precision)``, XD-Violence's original evaluation).

    ``compute()`` returns a float32 scalar tensor; NaN with a warning when no abnormal frame was seen.
    """

    def __init__(self, interpolation: APInterpolation = "step", **kwargs: object) -> None:
        super().__init__(**kwargs)
        if interpolation not in ("step", "trapezoid"):
            raise ValueError(f"unknown interpolation {interpolation!r}; use 'step' or 'trapezoid'")
        self.interpolation: APInterpolation = interpolation

    @property
    def log_name(self) -> str:
        """``frame_ap`` (``frame_ap_trapezoid`` for the trapezoidal variant)."""
        return "frame_ap" if self.interpolation == "step" else "frame_ap_trapezoid"

    def compute(self) -> torch.Tensor:
        _, score, label = self._frames()
        if not label.any():
            warnings.warn(f"frame AP is undefined on {label.size} frames without an abnormal one; returning NaN",
                          RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        return torch.tensor(frame_average_precision(score, label, self.interpolation), dtype=torch.float32)
