"""Dialogue data for stage 2 (RAE): video clips with multi-turn anomaly dialogues (SPEC §5).

Records come from the JSONL format of :mod:`tvau_lightning.data.dialogue_schema` (written by
``tvau build-dataset``). Each item is a clip of the record's frame range, resized to ``frame_size``, plus its
turns. Frames are taken at a fixed rate — ``sample_fps`` frames per second of the source, or every
``frame_stride``-th frame: the same description as the stage-1 clip DataModules, so the frozen AHD sees what it
was trained on (:meth:`DialogueDataModule.sampling`) — or, with neither set, ``num_frames`` frames spread
uniformly over the record (the rate then depends on the record's length). A record that lists its sampled
frames (``frame_index``, written by ``tvau build-dataset --record-fps``) is fed exactly those frames. Tokenisation happens in the task, through the
backbone adapter (``data/`` never imports a backbone), with the task's ``max_length``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tvau_lightning.data.clips import VideoClipDataModule
from tvau_lightning.data.dialogue_schema import DialogueRecord, Turn, load_dialogues
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import VideoBackend, open_video, resolve_backend


@dataclass
class DialogueSample:
    """One clip with its dialogue.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8.
        turns: the dialogue (user/assistant alternating).
        record: the source record (video id, label, references, …).
        fps: effective frames per second of the sampled clip (source fps / sampling step).
        frame_index: ``(T,)`` int64 indices of the sampled frames in the source video.
    """

    frames: torch.Tensor
    turns: list[Turn]
    record: DialogueRecord
    fps: float
    frame_index: torch.Tensor


@dataclass
class DialogueBatch:
    """A batch of dialogue samples.

    Attributes:
        frames: ``(B, T, H, W, 3)`` uint8.
        turns: ``B`` dialogues.
        records: ``B`` source records.
        fps: ``(B,)`` float32.
        frame_index: ``(B, T)`` int64.
    """

    frames: torch.Tensor
    turns: list[list[Turn]]
    records: list[DialogueRecord]
    fps: torch.Tensor
    frame_index: torch.Tensor

    @property
    def batch_size(self) -> int:
        return len(self.turns)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DialogueBatch:
        """Move the tensors (Lightning calls this; the text stays where it is)."""
        return DialogueBatch(
            frames=self.frames.to(device, non_blocking=non_blocking),
            turns=self.turns,
            records=self.records,
            fps=self.fps.to(device, non_blocking=non_blocking),
            frame_index=self.frame_index.to(device, non_blocking=non_blocking),
        )


def check_rate_args(sample_fps: float | None, frame_stride: int | None, min_frames: int,
                    max_frames: int | None) -> None:
    """ValueError for a sampling description that cannot work."""
    if sample_fps is not None and sample_fps <= 0:
        raise ValueError(f"sample_fps must be positive or null, got {sample_fps}")
    if frame_stride is not None and frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1 or null, got {frame_stride}")
    if min_frames < 1 or (max_frames is not None and max_frames < min_frames):
        raise ValueError(f"need 1 <= min_frames <= max_frames, got min_frames={min_frames}, max_frames={max_frames}")


def collate_dialogues(samples: Sequence[DialogueSample]) -> DialogueBatch:
    """Stack dialogue samples (their clips must have the same number of frames)."""
    lengths = sorted({int(s.frames.shape[0]) for s in samples})
    if len(lengths) > 1:
        raise ValueError(f"a batch of dialogue clips of {lengths} frames: at a fixed sampling rate records differ in "
                         "length; use batch_size 1 (with accumulate_grad_batches) or min_frames = max_frames")
    return DialogueBatch(
        frames=torch.stack([s.frames for s in samples]),
        turns=[list(s.turns) for s in samples],
        records=[s.record for s in samples],
        fps=torch.tensor([s.fps for s in samples], dtype=torch.float32),
        frame_index=torch.stack([s.frame_index for s in samples]),
    )


def rate_frame_indices(start: int, end: int, step: float, min_frames: int = 1, max_frames: int | None = None,
                       what: str = "record") -> np.ndarray:
    """Frames ``start, start + step, …`` (rounded) up to ``end`` inclusive; the last index repeated up to
    ``min_frames``. Raises ValueError naming ``what`` when the range holds more than ``max_frames`` frames."""
    if step < 1.0:
        raise ValueError(f"{what}: a sampling step of {step:.3g} frames is below 1 (sample_fps above the video's "
                         "frame rate); lower sample_fps")
    count = int(np.floor((end - start) / step + 1e-6)) + 1
    if max_frames is not None and count > max_frames:
        raise ValueError(f"{what}: frames [{start}, {end}] hold {count} frames at this rate, more than max_frames="
                         f"{max_frames}; rebuild the records with shorter windows or raise max_frames")
    indices = np.minimum(start + np.round(np.arange(count) * step).astype(np.int64), end)
    if count < min_frames:
        indices = np.concatenate([indices, np.full(min_frames - count, indices[-1], dtype=np.int64)])
    return indices


def sample_frame_indices(start: int, end: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread uniformly over ``[start, end]`` (inclusive), repeating frames of
    ranges shorter than ``num_frames``; each index is the centre of its equal-length segment."""
    length = end - start + 1
    if length <= 0:
        raise ValueError(f"empty frame range [{start}, {end}]")
    centres = (np.arange(num_frames) + 0.5) * length / num_frames
    return start + np.minimum(np.floor(centres).astype(np.int64), length - 1)


class DialogueDataset(Dataset):
    """Clips + dialogues from one JSONL file.

    Args:
        path: the JSONL file; relative video paths are resolved against its folder.
        num_frames: frames per clip spread uniformly over the record's range (when no rate is set).
        frame_size: ``(H, W)`` frames are resized to.
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
        sample_fps: take frames at this many per second of the source (``None``: see ``frame_stride``).
        frame_stride: take every this-many-th frame (``1``: every frame) when ``sample_fps`` is ``None``.
        min_frames: at a fixed rate, shorter records repeat their last frame up to this many frames.
        max_frames: at a fixed rate, a record with more frames is an error (rebuild with shorter windows).
    """

    def __init__(self, path: str | os.PathLike[str], num_frames: int, frame_size: tuple[int, int],
                 video_backend: VideoBackend = "auto", sample_fps: float | None = None,
                 frame_stride: int | None = None, min_frames: int = 1, max_frames: int | None = None) -> None:
        check_rate_args(sample_fps, frame_stride, min_frames, max_frames)
        self.sample_fps, self.frame_stride = sample_fps, frame_stride
        self.min_frames, self.max_frames = min_frames, max_frames
        resolve_backend(video_backend)
        self.video_backend: VideoBackend = video_backend
        self.path = Path(path)
        self.records = load_dialogues(self.path)
        if not self.records:
            raise ValueError(f"{self.path} has no dialogues")
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.num_frames = num_frames
        self.frame_size = tuple(frame_size)
        missing = [r.video for r in self.records if not r.resolve_video(self.path.parent).exists()]
        if missing:
            raise FileNotFoundError(
                f"{self.path}: {len(missing)} video(s) not found, e.g. {missing[0]!r} (paths are relative to the "
                "JSONL file's folder unless absolute) — fix the paths or rebuild with `tvau build-dataset`"
            )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> DialogueSample:
        record = self.records[index]
        video_path = record.resolve_video(self.path.parent)
        reader = open_video(video_path, self.video_backend)
        start, end = record.frame_range or (0, reader.num_frames - 1)
        if end >= reader.num_frames:
            raise ValueError(
                f"{self.path}: record {record.video_id!r} has frame_range [{start}, {end}] but {video_path} has "
                f"{reader.num_frames} frames"
            )
        if record.frame_index is not None:  # the builder's sampled frames: feed exactly those
            indices, step = self._record_indices(record, reader.num_frames, float(reader.fps), video_path)
        elif self.sample_fps is None and self.frame_stride is None:
            indices = sample_frame_indices(start, end, self.num_frames)
            step = max(1.0, (end - start + 1) / self.num_frames)
        else:
            step = float(reader.fps) / self.sample_fps if self.sample_fps is not None else float(self.frame_stride)
            indices = rate_frame_indices(start, end, step, self.min_frames, self.max_frames,
                                         what=f"{self.path}: record {record.video_id!r}")
        frames = resize_frames(reader.read(indices.tolist()), self.frame_size)
        return DialogueSample(
            frames=frames,
            turns=list(record.turns),
            record=record,
            fps=float(reader.fps) / step,
            frame_index=torch.from_numpy(indices),
        )


    def _record_indices(self, record: DialogueRecord, num_frames: int, fps: float,
                        video_path: Path) -> tuple[np.ndarray, float]:
        """A record's own ``frame_index`` (padded with its last frame up to ``min_frames``) and its step, after
        checking it against the video and this dataset's rate."""
        what = f"{self.path}: record {record.video_id!r}"
        indices = np.asarray(record.frame_index, dtype=np.int64)
        if indices[-1] >= num_frames:
            raise ValueError(f"{what} cites frame {int(indices[-1])} but {video_path} has {num_frames} frames")
        step = float(np.mean(np.diff(indices))) if len(indices) > 1 else 1.0
        rate = record.sample_fps if record.sample_fps is not None else fps / step
        wanted = self.sample_fps if self.sample_fps is not None else (
            fps / self.frame_stride if self.frame_stride is not None else None)
        if wanted is not None and abs(rate - wanted) > 0.01 * wanted:
            raise ValueError(f"{what} was sampled at {rate:.3g} fps but this DataModule takes {wanted:.3g} fps; "
                             "set sample_fps to the records' rate or rebuild them with --record-fps")
        if self.max_frames is not None and len(indices) > self.max_frames:
            raise ValueError(f"{what} holds {len(indices)} frames, more than max_frames={self.max_frames}; "
                             "rebuild the records with --max-frames or raise max_frames")
        if len(indices) < self.min_frames:
            indices = np.concatenate([indices, np.full(self.min_frames - len(indices), indices[-1], dtype=np.int64)])
        return indices, step


class DialogueDataModule(VideoClipDataModule):
    """Train/val/test dialogue JSONL files → batches of :class:`DialogueBatch`.

    Args:
        train_file: JSONL for training (phase A: all-object narratives; phase B: anomaly-focused).
        val_file: JSONL for validation loss (checkpoint selection).
        test_file: JSONL for multi-turn generation and text metrics; defaults to ``val_file``.
        num_frames: frames per clip spread over each record when no rate is set (8 fits every family's context
            with the defaults).
        frame_size: ``(H, W)`` frames are resized to (multiples of 28 for Qwen2.5-VL).
        sample_fps: frames per second taken from the source (the stage-1 DataModules' description; ``None``:
            see ``frame_stride``).
        frame_stride: every this-many-th source frame (``1``: every frame) when ``sample_fps`` is ``None``;
            with both ``None``, ``num_frames`` frames are spread over each record.
        min_frames: at a fixed rate, shorter records repeat their last frame up to this many.
        max_frames: at a fixed rate, longer records are an error.
        batch_size: clips per batch.
        num_workers: DataLoader workers.
        pin_memory: pin batches in page-locked memory (faster copies to a GPU).
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
    """

    collate_fn = staticmethod(collate_dialogues)

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        num_frames: int = 8,
        frame_size: tuple[int, int] = (336, 336),
        batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        video_backend: VideoBackend = "auto",
        sample_fps: float | None = None,
        frame_stride: int | None = None,
        min_frames: int = 1,
        max_frames: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend)
        check_rate_args(sample_fps, frame_stride, min_frames, max_frames)
        self.save_hyperparameters()
        self.files = {"train": train_file, "val": val_file, "test": test_file or val_file}
        self.num_frames = num_frames
        self.frame_size = tuple(frame_size)
        self.sample_fps, self.frame_stride = sample_fps, frame_stride
        self.min_frames, self.max_frames = min_frames, max_frames

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling description stage 2 compares with the stage-1 DataModule's (``sample_fps``,
        ``frame_stride``, ``frame_size``; a stride of ``None`` without ``sample_fps`` = spread over the record)."""
        return {"sample_fps": self.sample_fps, "frame_stride": self.frame_stride,
                "frame_size": tuple(int(v) for v in self.frame_size)}

    def _make_dataset(self, split: str) -> DialogueDataset:
        path = self.files.get(split)
        if path is None:
            raise ValueError(f"DialogueDataModule has no {split} file; set {split}_file")
        return DialogueDataset(path, self.num_frames, self.frame_size, self.video_backend, self.sample_fps,
                               self.frame_stride, self.min_frames, self.max_frames)
