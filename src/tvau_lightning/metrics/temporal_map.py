"""Fine-grained mAP@tIoU as a torchmetric (the UCF-Crime/XD-Violence category metric of VadCLIP and Ex-VAD).

Accumulates one row per real frame ``(video hash, frame, occurrence, K class scores, K ground-truth
categories)``; at compute each ``(video, frame)`` is counted once, each video's frames are put in order, its
ground-truth segments are the runs of each class in the per-frame categories, and
:func:`~tvau_lightning.metrics.functional.temporal_map.temporal_map` does the rest (protocol and sources in
``docs/datasets_weak.md``). The same on one process or several.

Ground truth as runs of per-frame categories merges two touching or overlapping annotated segments of one
class into one (XD-Violence has a few); a video's unseen frames (there are none with ``eval`` sampling) get
score 0 and no category, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from tvau_lightning.metrics.functional.temporal_map import (
    DEFAULT_TIOU_THRESHOLDS,
    segments_from_frame_categories,
    temporal_map,
)
from tvau_lightning.metrics.state import RowStateMetric, first_occurrence_mask, video_hashes


class TemporalMAP(RowStateMetric):
    """mAP@tIoU of per-frame class scores against per-frame categories.

    Args:
        num_classes: ``K``, columns of the scores and categories (index 0 = normal).
        thresholds: tIoU thresholds (default 0.1:0.5:0.1).
        include_normal: also evaluate normal videos and the normal class (VadCLIP's published code); default:
            abnormal videos and anomaly classes only, as the papers state.

    ``compute()`` returns ``{"map@0.1": …, …, "map@0.5": …, "map_avg": …, "category_accuracy": …}`` float32
    scalars (mAP NaN with a warning when no abnormal video was seen); ``category_accuracy`` is
    :func:`category_accuracy` over the same de-duplicated frames, so it too counts each frame once on any number
    of processes.
    """

    log_name = "map"

    def __init__(
        self, num_classes: int, thresholds: Sequence[float] = DEFAULT_TIOU_THRESHOLDS, include_normal: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (normal + one category), got {num_classes}")
        if not thresholds or any(not 0 < t <= 1 for t in thresholds):
            raise ValueError(f"tIoU thresholds must be in (0, 1], got {list(thresholds)}")
        self.num_classes = int(num_classes)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.include_normal = bool(include_normal)
        self.add_row_state("video", torch.int64)
        self.add_row_state("frame", torch.int64)
        self.add_row_state("occurrence", torch.int64)
        self.add_row_state("score", torch.float64, (self.num_classes,))
        self.add_row_state("category", torch.uint8, (self.num_classes,))  # uint8: every backend gathers it

    def update(
        self,
        class_scores: torch.Tensor,
        frame_categories: torch.Tensor,
        video_ids: Sequence[str],
        frame_index: torch.Tensor,
    ) -> None:
        """Add the frames of a batch of clips.

        Args:
            class_scores: ``(B, T, K)`` per-frame class scores (probabilities; column 0 = normal).
            frame_categories: ``(B, T, K)`` bool per-frame categories (``ClipBatch.frame_categories``).
            video_ids: ``B`` video identifiers.
            frame_index: ``(B, T)`` original frame numbers; ``-1`` (padding) frames are ignored.
        """
        batch = len(video_ids)
        scores = torch.as_tensor(class_scores).detach().to(torch.float64).cpu()
        cats = torch.as_tensor(frame_categories).detach().cpu().bool()
        index = torch.as_tensor(frame_index).detach().cpu().long()
        expected = (batch, index.shape[-1] if index.ndim == 2 else -1, self.num_classes)
        if index.ndim != 2 or index.shape[0] != batch or scores.shape != expected or cats.shape != expected:
            raise ValueError(f"class_scores {tuple(scores.shape)} and frame_categories {tuple(cats.shape)} must be "
                             f"(B, T, K) = {expected} for frame_index {tuple(index.shape)} of B = {batch} videos")
        valid = index >= 0
        if not torch.isfinite(scores[valid]).all():
            raise ValueError("class_scores contain NaN or infinite values")
        videos = video_hashes(video_ids)[:, None].expand_as(valid)
        occurrence = torch.from_numpy(self.take_occurrences(batch))[:, None].expand_as(valid)
        self.append_rows(video=videos[valid], frame=index[valid], occurrence=occurrence[valid],
                         score=scores[valid], category=cats[valid].to(torch.uint8))

    def compute(self) -> dict[str, torch.Tensor]:
        video, frame = self.rows("video"), self.rows("frame")
        keep = first_occurrence_mask(np.stack([video, frame], axis=1), self.rows("occurrence"))
        video, frame = video[keep], frame[keep]
        score, category = self.rows("score")[keep], self.rows("category")[keep].astype(bool)
        scores, truth = {}, {}
        gaps = 0
        for v in np.unique(video):
            rows = video == v
            length = int(frame[rows].max()) + 1
            gaps += length - int(rows.sum())
            s = np.zeros((length, self.num_classes))
            c = np.zeros((length, self.num_classes), dtype=bool)
            s[frame[rows]], c[frame[rows]] = score[rows], category[rows]
            scores[str(v)], truth[str(v)] = s, segments_from_frame_categories(c)
        if gaps:
            warnings.warn(f"mAP@tIoU: {gaps} frames inside the videos were never seen; scored 0 with no category",
                          RuntimeWarning, stacklevel=2)
        accuracy = torch.tensor(category_accuracy(score, category), dtype=torch.float32)
        names = [f"map@{t:.1f}" for t in self.thresholds] + ["map_avg"]
        if not any(truth.values()):
            warnings.warn("mAP@tIoU is undefined: no video with an anomalous segment was seen; returning NaN",
                          RuntimeWarning, stacklevel=2)
            return {n: torch.tensor(float("nan")) for n in names} | {"category_accuracy": accuracy}
        result = temporal_map(scores, truth, self.thresholds, include_normal=self.include_normal)
        values = {k: torch.tensor(v, dtype=torch.float32) for k, v in result.as_dict("map").items()}
        return values | {"category_accuracy": accuracy}


def category_accuracy(scores: np.ndarray, categories: np.ndarray) -> float:
    """Share of the anomalous frames (a category other than normal) whose highest-scoring anomaly class is one of
    their categories; ``scores`` ``(N, K)``, ``categories`` ``(N, K)`` bool, column 0 = normal. NaN without one."""
    abnormal = categories[:, 1:].any(axis=1)
    if not abnormal.any():
        return float("nan")
    predicted = scores[abnormal, 1:].argmax(axis=1) + 1
    return float(categories[abnormal][np.arange(int(abnormal.sum())), predicted].mean())
