"""Dialogue data for stage 2 (RAE): video clips with multi-turn anomaly dialogues (SPEC §5).

Records come from the JSONL format of :mod:`tvau_lightning.data.dialogue_schema` (written by
``tvau build-dataset``). Each item is a clip of ``num_frames`` frames sampled uniformly from the record's
frame range, resized to ``frame_size``, plus its turns. Tokenisation happens in the task, through the
backbone adapter (``data/`` never imports a backbone), with the task's ``max_length``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def collate_dialogues(samples: Sequence[DialogueSample]) -> DialogueBatch:
    """Stack dialogue samples (all clips have the dataset's ``num_frames``)."""
    return DialogueBatch(
        frames=torch.stack([s.frames for s in samples]),
        turns=[list(s.turns) for s in samples],
        records=[s.record for s in samples],
        fps=torch.tensor([s.fps for s in samples], dtype=torch.float32),
        frame_index=torch.stack([s.frame_index for s in samples]),
    )


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
        num_frames: frames sampled per clip (uniformly over the record's frame range).
        frame_size: ``(H, W)`` frames are resized to.
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
    """

    def __init__(self, path: str | os.PathLike[str], num_frames: int, frame_size: tuple[int, int],
                 video_backend: VideoBackend = "auto") -> None:
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
        indices = sample_frame_indices(start, end, self.num_frames)
        frames = resize_frames(reader.read(indices.tolist()), self.frame_size)
        step = max(1.0, (end - start + 1) / self.num_frames)
        return DialogueSample(
            frames=frames,
            turns=list(record.turns),
            record=record,
            fps=float(reader.fps) / step,
            frame_index=torch.from_numpy(indices),
        )


class DialogueDataModule(VideoClipDataModule):
    """Train/val/test dialogue JSONL files → batches of :class:`DialogueBatch`.

    Args:
        train_file: JSONL for training (phase A: all-object narratives; phase B: anomaly-focused).
        val_file: JSONL for validation loss (checkpoint selection).
        test_file: JSONL for multi-turn generation and text metrics; defaults to ``val_file``.
        num_frames: frames per clip given to the LVLM (8 fits every family's context with the defaults).
        frame_size: ``(H, W)`` frames are resized to (multiples of 28 for Qwen2.5-VL).
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
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend)
        self.save_hyperparameters()
        self.files = {"train": train_file, "val": val_file, "test": test_file or val_file}
        self.num_frames = num_frames
        self.frame_size = tuple(frame_size)

    def _make_dataset(self, split: str) -> DialogueDataset:
        path = self.files.get(split)
        if path is None:
            raise ValueError(f"DialogueDataModule has no {split} file; set {split}_file")
        return DialogueDataset(path, self.num_frames, self.frame_size, self.video_backend)
