"""Typed clip items and batches shared by every DataModule, task and metric.

A *clip* is a run of consecutive (or strided) frames of one video. Items carry the original frame indices
so that per-frame metrics can be computed over whole videos, whatever the clip sampling was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class ClipSample:
    """One clip of one video, as returned by a dataset.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB frames, resized to the DataModule's ``frame_size`` — or at the source
            size when the DataModule resizes on the model's device (``resize_on: device``).
            With ``resize_on: device_yuv420``: the decoder's planar YUV 4:2:0 at the source size, packed
            ``(T, H * 3 // 2, W)`` (:mod:`tvau_lightning.data.video.yuv`), converted to RGB on the model's device.
        masks: ``(T, H, W)`` bool pixel anomaly masks at the same size (all False for normal frames).
        frame_labels: ``(T,)`` int64 frame-level labels, 1 = abnormal.
        frame_index: ``(T,)`` int64 indices of the frames in the original video; ``-1`` for padding.
        valid: ``(T,)`` bool, False for padding frames appended to a short last clip.
        video_id: the dataset's identifier of the video (a UBnormal video name, ``01_0014`` …).
        fps: frames per second of the clip's frames: the source rate divided by the clip's frame stride
            (what the backbones' ``preprocess_video(fps=…)`` expects, as for dialogue clips).
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
    #: with YUV 4:2:0 ``frames``: their colour matrix and range, FFmpeg codes ``(colorspace, color_range)``
    frames_colour: tuple[int, int] | None = None

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
    #: with YUV 4:2:0 ``frames`` ``(B, T, H * 3 // 2, W)`` (``resize_on: device_yuv420``, before the DataModule's
    #: ``on_after_batch_transfer`` converts them): their ``(colorspace, color_range)``; ``None`` for RGB
    frames_colour: tuple[int, int] | None = None

    @property
    def batch_size(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[3])

    def pin_memory(self) -> ClipBatch:
        """The batch with its tensors in page-locked memory: what ``DataLoader(pin_memory=True)`` calls (it
        leaves an object without this method unpinned). Zero-stride placeholders (cached batches) stay as they are."""

        def pin(value: object) -> object:
            if isinstance(value, torch.Tensor):
                return value if value.numel() > 1 and 0 in value.stride() else value.pin_memory()
            if isinstance(value, list):
                return [pin(v) for v in value]
            if isinstance(value, dict):
                return {k: pin(v) for k, v in value.items()}
            return value

        return dataclasses.replace(self, **{f.name: pin(getattr(self, f.name)) for f in dataclasses.fields(self)})


def stack_frames(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of equal-shape frame tensors without needless copies: one tensor becomes a view
    (``unsqueeze``); inside a DataLoader worker the stack is written into shared memory, the way the batch
    leaves the worker (as ``default_collate`` does), instead of being copied there afterwards."""
    if len(frames) == 1:
        return frames[0].unsqueeze(0)
    if torch.utils.data.get_worker_info() is not None:
        first = frames[0]
        try:
            storage = torch.UntypedStorage._new_shared(len(frames) * first.numel() * first.element_size())
            out = torch.empty(0, dtype=first.dtype).set_(storage).view(len(frames), *first.shape)
            return torch.stack(list(frames), out=out)
        except (AttributeError, RuntimeError):  # no shared allocator: a plain stack
            pass
    return torch.stack(list(frames))


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
        frames=stack_frames([s.frames for s in samples]),
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
