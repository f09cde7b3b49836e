"""Dialogue data for stage 2 (RAE): video clips with multi-turn anomaly dialogues (SPEC §5).

Records come from the JSONL format of :mod:`tvau_lightning.data.dialogue_schema` (written by
``tvau build-dataset``). Each item is a clip of the record's frame range, resized to ``frame_size``, plus its
turns. Frames are taken at a fixed rate — ``sample_fps`` frames per second of the source, or every
``frame_stride``-th frame: the same description as the stage-1 clip DataModules, so the frozen AHD sees what it
was trained on (:meth:`DialogueDataModule.sampling`) — or, with neither set, ``num_frames`` frames spread
uniformly over the record (the rate then depends on the record's length). A record that lists its sampled
frames (``frame_index``, written by ``tvau build-dataset --record-fps``) is fed exactly those frames. Tokenisation happens in the task, through the
backbone adapter (``data/`` never imports a backbone), with the task's ``max_length``.

Splits: by default each split is its own file (``record_split="files"``; the builder splits ShanghaiTech and
UBnormal by video, so no video is on two sides). ``record_split="records"`` is the paper's clip-level
re-partition instead (§3.3: ShanghaiTech's 5,136 clips → 4,108 training / 1,028 validation): one pooled file is
split record by record (:func:`split_records`), so clips of one video sit on both sides — a leak that flatters
validation and test numbers; use it only to compare with the paper.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from tvau_lightning.data.clips import VideoClipDataModule, stride_for_rate
from tvau_lightning.data.dialogue_schema import DialogueRecord, Turn, load_dialogues
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import VideoBackend, open_video, resolve_backend

#: how the dialogue DataModule gets its train/val records: one file per split, or one pool split by record
RecordSplit = Literal["files", "records"]


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


def check_record_split_args(record_split: str, train_file: str | None, val_file: str | None,
                            val_fraction: float) -> None:
    """ValueError for a split description that contradicts itself."""
    if record_split not in ("files", "records"):
        raise ValueError(f"record_split must be 'files' or 'records', got {record_split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if record_split == "records":
        if train_file is None:
            raise ValueError("record_split='records' splits train_file into train and val records; set train_file "
                             "to the pooled JSONL")
        if val_file is not None:
            raise ValueError(f"val_file={val_file!r} contradicts record_split='records' (the val records come from "
                             "train_file); set val_file to null, or record_split to 'files'")


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


def record_split_sizes(num_records: int, val_fraction: float, what: str = "the pool") -> tuple[int, int]:
    """``(train, val)`` record counts of a record-level split: val gets ``ceil(val_fraction × N)`` records (5,136
    × 0.2 = 1,027.2 → 1,028, the paper's 4,108 / 1,028), train the rest. ValueError naming ``what`` when the
    fraction is outside (0, 1) or a side would be empty."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    num_val = math.ceil(val_fraction * num_records - 1e-9)  # the tolerance keeps 0.1 × 30 at 3, not 4
    if num_val < 1 or num_val >= num_records:
        raise ValueError(f"{what}: val_fraction={val_fraction} of {num_records} record(s) leaves "
                         f"{'the val' if num_val < 1 else 'the train'} side empty; pool more records or change "
                         "val_fraction")
    return num_records - num_val, num_val


def split_records(records: Sequence[DialogueRecord], val_fraction: float, seed: int,
                  what: str = "the pool") -> tuple[list[int], list[int]]:
    """Seeded record-level split of a pool into ``(train, val)`` record indices (each sorted; disjoint; together
    every index once), sizes from :func:`record_split_sizes`.

    The order is a seeded permutation: records sorted by a keyed hash (BLAKE2b, key = ``seed``) of their clip
    (``dataset``, ``video_id``, ``frame_range``), ties by position; the first ``val`` records are the val side.
    It depends on the file's content and the seed alone (never on the process, so every DDP rank and worker gets
    the same split), and a clip's rank does not depend on the other records: phase A and phase B pools built
    from the same videos put (nearly) the same clips on the val side, so phase B rarely validates on a clip that
    phase A trained on.
    """
    _, num_val = record_split_sizes(len(records), val_fraction, what)
    key = str(int(seed)).encode()

    def rank(i: int) -> tuple[bytes, int]:
        r = records[i]
        span = "" if r.frame_range is None else f"{int(r.frame_range[0])}-{int(r.frame_range[1])}"
        clip = f"{r.dataset}\0{r.video_id}\0{span}".encode()
        return hashlib.blake2b(clip, digest_size=16, key=key).digest(), i

    order = sorted(range(len(records)), key=rank)
    return sorted(order[num_val:]), sorted(order[:num_val])


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
        sample_fps: take frames at this many per second of the source — every ``round(fps / sample_fps)``-th
            frame, the stride the stage-1 datasets use (``None``: see ``frame_stride``).
        frame_stride: take every this-many-th frame (``1``: every frame) when ``sample_fps`` is ``None``.
        min_frames: at a fixed rate, shorter records repeat their last frame up to this many frames.
        max_frames: at a fixed rate, a record with more frames is an error (rebuild with shorter windows).
        subset: keep only these records of the file (0-based, in the file's order; :func:`split_records`);
            ``None``: all of them.
    """

    def __init__(self, path: str | os.PathLike[str], num_frames: int, frame_size: tuple[int, int],
                 video_backend: VideoBackend = "auto", sample_fps: float | None = None,
                 frame_stride: int | None = None, min_frames: int = 1, max_frames: int | None = None,
                 subset: Sequence[int] | None = None) -> None:
        check_rate_args(sample_fps, frame_stride, min_frames, max_frames)
        self.sample_fps, self.frame_stride = sample_fps, frame_stride
        self.min_frames, self.max_frames = min_frames, max_frames
        resolve_backend(video_backend)
        self.video_backend: VideoBackend = video_backend
        self.path = Path(path)
        self.records = load_dialogues(self.path)
        if subset is not None:
            outside = [i for i in subset if not 0 <= i < len(self.records)]
            if outside:
                raise IndexError(f"{self.path} has {len(self.records)} records; subset index {outside[0]} is outside")
            self.records = [self.records[i] for i in subset]
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
            # the stage-1 datasets' per-video stride, round(fps / sample_fps): both stages take the same frames
            step = float(stride_for_rate(float(reader.fps), self.sample_fps, f"{self.path}: record {record.video_id!r} "
                                         f"({video_path})") if self.sample_fps is not None else self.frame_stride)
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
        train_file: JSONL for training (phase A: all-object narratives; phase B: anomaly-focused); with
            ``record_split="records"`` the pool that is split into train and val.
        val_file: JSONL for validation loss (checkpoint selection); must be ``None`` with ``record_split="records"``.
        test_file: JSONL for multi-turn generation and text metrics; defaults to ``val_file`` (with
            ``record_split="records"``: to the val records of the pool).
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
        num_workers: DataLoader workers (``None``: the usable cores, at most 8; 0: the main process).
        pin_memory: pin batches in page-locked memory (faster copies to a GPU; ``None``: when CUDA is available).
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
        record_split: ``files`` (default): each split is its own file — the builder's split by video, leak-free.
            ``records``: the paper's clip-level re-partition — ``train_file`` is one pool split record by record
            into train and val (:func:`split_records`), so clips of one video can be on both sides (a leak; only
            to compare with the paper's numbers).
        val_fraction: ``records``: the fraction of the pool's records held out for validation (val gets
            ``ceil(val_fraction × N)``: 0.2 of 5,136 → 1,028, the paper's count).
        split_seed: ``records``: the seed of the record-level split.
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
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        video_backend: VideoBackend = "auto",
        sample_fps: float | None = None,
        frame_stride: int | None = None,
        min_frames: int = 1,
        max_frames: int | None = None,
        record_split: RecordSplit = "files",
        val_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend)
        check_rate_args(sample_fps, frame_stride, min_frames, max_frames)
        check_record_split_args(record_split, train_file, val_file, val_fraction)
        self.save_hyperparameters()  # the split (record_split, val_fraction, split_seed) is saved in checkpoints
        self.record_split: RecordSplit = record_split
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self._record_parts: dict[str, list[int]] | None = None
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

    def record_parts(self) -> dict[str, list[int]]:
        """With ``record_split="records"``: the pool's record indices of ``train`` and ``val`` (computed once)."""
        if self.record_split != "records":
            raise ValueError("record_parts needs record_split='records'")
        if self._record_parts is None:
            pool = self.files["train"]
            train, val = split_records(load_dialogues(pool), self.val_fraction, self.split_seed, what=str(pool))
            self._record_parts = {"train": train, "val": val}
        return self._record_parts

    def _make_dataset(self, split: str) -> DialogueDataset:
        path, subset = self.files.get(split), None
        if self.record_split == "records" and (split in ("train", "val") or path is None):
            path, subset = self.files["train"], self.record_parts()["train" if split == "train" else "val"]
        if path is None:
            raise ValueError(f"DialogueDataModule has no {split} file; set {split}_file")
        return DialogueDataset(path, self.num_frames, self.frame_size, self.video_backend, self.sample_fps,
                               self.frame_stride, self.min_frames, self.max_frames, subset=subset)
