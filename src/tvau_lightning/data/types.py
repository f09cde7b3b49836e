"""Typed clip items and batches shared by every DataModule, task and metric.

A *clip* is a run of consecutive (or strided) frames of one video. Items carry the original frame indices
so that per-frame metrics can be computed over whole videos, whatever the clip sampling was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class ClipSample:
    """One clip of one video, as returned by a dataset.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB frames, already resized to the DataModule's ``frame_size``.
        masks: ``(T, H, W)`` bool pixel anomaly masks at the same size (all False for normal frames).
        frame_labels: ``(T,)`` int64 frame-level labels, 1 = abnormal.
        frame_index: ``(T,)`` int64 indices of the frames in the original video; ``-1`` for padding.
        valid: ``(T,)`` bool, False for padding frames appended to a short last clip.
        video_id: the dataset's identifier of the video (a UBnormal video name, ``01_0014`` …).
        fps: frames per second of the source video.
        original_size: ``(H, W)`` of the source frames, for mapping boxes back to video pixels.
        gt_boxes: ``(n, 6)`` int64 rows ``(frame, track_id, x1, y1, x2, y2)`` — the RBDC/TBDC ground-truth
            regions of this clip's frames in original video pixels (inclusive), one ``track_id`` per GT
            track of the video; ``None`` when the dataset has no region ground truth.
        video_labels: ``(K,)`` bool multi-hot video-level categories (index 0 = normal) — the weak labels of
            UCF-Crime/XD-Violence; ``None`` for datasets without categories.
        frame_categories: ``(T, K)`` bool multi-hot per-frame categories (column 0 = normal; padding all
            False); ``None`` when the split has no temporal category ground truth.
    """

    frames: torch.Tensor
    masks: torch.Tensor
    frame_labels: torch.Tensor
    frame_index: torch.Tensor
    valid: torch.Tensor
    video_id: str
    fps: float
    original_size: tuple[int, int]
    gt_boxes: torch.Tensor | None = None
    video_labels: torch.Tensor | None = None
    frame_categories: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class ClipBatch:
    """A batch of clips of equal length (short clips are padded and masked by ``valid``).

    Attributes:
        frames: ``(B, T, H, W, 3)`` uint8.
        masks: ``(B, T, H, W)`` bool.
        frame_labels: ``(B, T)`` int64.
        frame_index: ``(B, T)`` int64, ``-1`` on padding.
        valid: ``(B, T)`` bool.
        video_id: ``B`` video identifiers.
        fps: ``(B,)`` float32.
        original_size: ``(B, 2)`` int64 ``(H, W)`` of the source videos.
        gt_boxes: per clip, ``(n, 6)`` rows ``(frame, track_id, x1, y1, x2, y2)`` (see :class:`ClipSample`),
            or ``None`` when the dataset has no region ground truth.
        video_labels: ``(B, K)`` bool video-level categories, or ``None`` (see :class:`ClipSample`).
        frame_categories: ``(B, T, K)`` bool per-frame categories, or ``None`` (see :class:`ClipSample`).
        extras: optional extra tensors (e.g. cached vision features).
    """

    frames: torch.Tensor
    masks: torch.Tensor
    frame_labels: torch.Tensor
    frame_index: torch.Tensor
    valid: torch.Tensor
    video_id: list[str]
    fps: torch.Tensor
    original_size: torch.Tensor
    gt_boxes: list[torch.Tensor] | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    video_labels: torch.Tensor | None = None
    frame_categories: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[3])


def collate_clips(samples: Sequence[ClipSample]) -> ClipBatch:
    """Stack clips of equal length into a :class:`ClipBatch`."""
    if not samples:
        raise ValueError("collate_clips needs at least one sample")
    lengths = {s.num_frames for s in samples}
    if len(lengths) != 1:
        raise ValueError(
            f"clips in one batch must have the same number of frames, got {sorted(lengths)}; "
            "pad short clips in the dataset (valid=False) or use batch_size=1"
        )
    return ClipBatch(
        frames=torch.stack([s.frames for s in samples]),
        masks=torch.stack([s.masks for s in samples]),
        frame_labels=torch.stack([s.frame_labels for s in samples]),
        frame_index=torch.stack([s.frame_index for s in samples]),
        valid=torch.stack([s.valid for s in samples]),
        video_id=[s.video_id for s in samples],
        fps=torch.tensor([float(s.fps) for s in samples], dtype=torch.float32),
        original_size=torch.tensor([list(s.original_size) for s in samples], dtype=torch.int64),
        gt_boxes=None if any(s.gt_boxes is None for s in samples) else [s.gt_boxes for s in samples],
        video_labels=None if any(s.video_labels is None for s in samples)
        else torch.stack([s.video_labels for s in samples]),
        frame_categories=None if any(s.frame_categories is None for s in samples)
        else torch.stack([s.frame_categories for s in samples]),
    )
