"""Frame-level micro and macro ROC-AUC as torchmetrics (SPEC §6).

Both accumulate one row per real frame ``(video hash, frame, occurrence, score, label)``; at compute each
``(video, frame)`` is counted once (its first occurrence — ``DistributedSampler`` may repeat clips), so the
result over the whole split is the same on one process or several.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from tvau_lightning.metrics.functional.frame_auc import macro_auroc, micro_auroc
from tvau_lightning.metrics.state import RowStateMetric, first_occurrence_mask, video_hashes


def _as_2d(name: str, value: torch.Tensor | np.ndarray, batch: int) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach()
    if tensor.ndim == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 2 or tensor.shape[0] != batch:
        raise ValueError(f"{name} must be (B, T) with B = {batch} video ids, got shape {tuple(tensor.shape)}")
    return tensor


class _FrameScoreMetric(RowStateMetric):
    """Shared state and update of :class:`MicroAUROC` and :class:`MacroAUROC`."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_row_state("video", torch.int64)
        self.add_row_state("frame", torch.int64)
        self.add_row_state("occurrence", torch.int64)
        self.add_row_state("score", torch.float64)
        self.add_row_state("label", torch.int64)

    def update(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        video_ids: Sequence[str],
        frame_index: torch.Tensor,
    ) -> None:
        """Add the frames of a batch of clips.

        Args:
            scores: ``(B, T)`` frame anomaly scores (``(B,)`` for one frame per sample).
            labels: ``(B, T)`` 0/1 frame labels.
            video_ids: ``B`` video identifiers.
            frame_index: ``(B, T)`` original frame numbers; ``-1`` (padding) frames are ignored.
        """
        batch = len(video_ids)
        scores = _as_2d("scores", scores, batch).to(torch.float64)
        labels = _as_2d("labels", labels, batch)
        frame_index = _as_2d("frame_index", frame_index, batch).long()
        if not scores.shape == labels.shape == frame_index.shape:
            raise ValueError(f"scores {tuple(scores.shape)}, labels {tuple(labels.shape)} and frame_index "
                             f"{tuple(frame_index.shape)} must have the same shape")
        valid = (frame_index >= 0).cpu()
        label_values = labels[valid.to(labels.device)].cpu()
        if not ((label_values == 0) | (label_values == 1)).all():
            raise ValueError(f"labels must be 0/1, found {torch.unique(label_values).tolist()[:5]}")
        if not torch.isfinite(scores[valid.to(scores.device)]).all():
            raise ValueError("scores contain NaN or infinite values")
        videos = video_hashes(video_ids)[:, None].expand_as(valid)
        occurrence = torch.from_numpy(self.take_occurrences(batch))[:, None].expand_as(valid)
        self.append_rows(
            video=videos[valid],
            frame=frame_index.cpu()[valid],
            occurrence=occurrence[valid],
            score=scores.cpu()[valid],
            label=labels.cpu()[valid].long(),
        )

    def _frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Deduplicated ``(video, score, label)`` per unique ``(video, frame)``."""
        video, frame = self.rows("video"), self.rows("frame")
        keep = first_occurrence_mask(np.stack([video, frame], axis=1), self.rows("occurrence"))
        return video[keep], self.rows("score")[keep], self.rows("label")[keep].astype(bool)


class MicroAUROC(_FrameScoreMetric):
    """Micro frame AUC: ROC-AUC over all frames of all videos concatenated.

    ``compute()`` returns a float32 scalar tensor; NaN with a warning when the frames seen are all of one
    class (e.g. Lightning's sanity check on a couple of normal clips).
    """

    log_name = "micro_auc"

    def compute(self) -> torch.Tensor:
        _, score, label = self._frames()
        if label.all() or not label.any():
            warnings.warn(f"micro AUROC is undefined on {label.size} frames of a single class; returning NaN",
                          RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        return torch.tensor(micro_auroc(score, label), dtype=torch.float32)


class MacroAUROC(_FrameScoreMetric):
    """Macro frame AUC: mean of per-video ROC-AUCs.

    Args:
        pad: True (default) = UBnormal's protocol, each video padded with a normal frame scored below and an
            abnormal frame scored above every real score (:attr:`log_name` ``macro_auc_padded``); False = single-class videos
            skipped, with a warning (``macro_auc_unpadded``).

    ``compute()`` returns a float32 scalar tensor; NaN with a warning when no video qualifies.
    """

    def __init__(self, pad: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.pad = bool(pad)

    @property
    def log_name(self) -> str:
        """Name to log the value under; says whether the UBnormal padding was applied."""
        return "macro_auc_padded" if self.pad else "macro_auc_unpadded"

    def compute(self) -> torch.Tensor:
        video, score, label = self._frames()
        if video.size == 0:
            warnings.warn("macro AUROC: no frame was seen; returning NaN", RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        order = np.argsort(video, kind="stable")
        video, score, label = video[order], score[order], label[order]
        ids, starts = np.unique(video, return_index=True)
        bounds = np.append(starts, len(video))
        scores = {int(v): score[bounds[i]:bounds[i + 1]] for i, v in enumerate(ids)}
        labels = {int(v): label[bounds[i]:bounds[i + 1]] for i, v in enumerate(ids)}
        two_class = sum(bool(y.any() and not y.all()) for y in labels.values())
        if not self.pad and two_class == 0:
            warnings.warn(f"unpadded macro AUROC: all {len(ids)} videos seen have a single class; returning NaN",
                          RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        return torch.tensor(macro_auroc(scores, labels, pad=self.pad), dtype=torch.float32)
