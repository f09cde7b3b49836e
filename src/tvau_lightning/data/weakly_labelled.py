"""The clip dataset shared by the weakly supervised benchmarks (UCF-Crime, XD-Violence): video files with
video-level categories for training and frame ranges for testing, no pixel masks.

Items are :class:`~tvau_lightning.data.types.ClipSample` as for every other DataModule, sampled the same way
(:mod:`tvau_lightning.data.clips`), plus two fields:

* ``video_labels`` ``(K,)`` bool — the video's categories, multi-hot, index 0 = normal (every split);
* ``frame_categories`` ``(T, K)`` bool — per-frame categories, column 0 = normal, padding all False (splits
  with temporal ground truth only; ``None`` on the training split).

``frame_labels`` are 1 inside an annotated range and 0 elsewhere on splits with temporal ground truth. On the
training split only the video label is known: frames of normal videos are 0 and frames of abnormal videos are
**-1 (unknown)** — a weak-supervision loss reads ``video_labels``; a loss that needs frame labels must not
treat them as normal. ``masks`` are all False (these datasets have no pixel ground truth) and there are no
region (RBDC/TBDC) ground-truth boxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvau_lightning.data.clips import DatasetFormatError, Sampling, VideoClipDataModule, VideoClipDataset
from tvau_lightning.data.temporal_annotations import (
    RangeConvention,
    TemporalSegment,
    frame_targets,
    video_label_vector,
)
from tvau_lightning.data.transforms import FrameResizeMode
from tvau_lightning.data.types import ClipSample
from tvau_lightning.data.video import VideoBackend, VideoReader, open_video

#: ``frame_labels`` value of a frame whose label is unknown (abnormal training videos)
UNKNOWN_FRAME_LABEL = -1


@dataclass(frozen=True)
class WeakVideo:
    """One video of a weakly labelled split, as found when the split is listed.

    Attributes:
        video_id: the file stem.
        path: the video file.
        num_frames: frame count (from the decoder).
        size: ``(H, W)`` of the frames.
        categories: the video's category keys (``("Normal",)``/``("A",)`` for normal videos).
        segments: its annotated ranges (test splits; empty otherwise).
    """

    video_id: str
    path: Path
    num_frames: int
    size: tuple[int, int]
    categories: tuple[str, ...]
    segments: tuple[TemporalSegment, ...] = ()


def probe_video(path: Path, backend: VideoBackend) -> tuple[int, tuple[int, int]]:
    """Frame count and ``(H, W)`` of a video file (the clips of a split are planned from the count)."""
    reader = open_video(path, backend, num_threads=1)
    try:
        return int(reader.num_frames), tuple(int(v) for v in reader.size)  # type: ignore[return-value]
    finally:
        del reader


class WeaklyLabelledDataset(VideoClipDataset):
    """Clips of the videos of one split of a weakly labelled benchmark (see the module docstring).

    Args:
        videos: the split's videos (listed and checked by the dataset-specific subclass).
        categories: the class keys, index 0 = normal.
        temporal_ground_truth: whether ``videos`` carry frame ranges (test split) — then frame labels and
            ``frame_categories`` come from them; otherwise abnormal videos' frame labels are -1 (unknown).
        range_convention: how the ranges are written (:mod:`tvau_lightning.data.temporal_annotations`).
        decode_threads: decoder threads per video (0 = automatic).
        clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, video_backend, sample_fps: see
            :class:`~tvau_lightning.data.clips.VideoClipDataset` (``sample_fps`` opens each video once to read
            its rate).
    """

    def __init__(
        self,
        videos: Sequence[WeakVideo],
        categories: Sequence[str],
        temporal_ground_truth: bool,
        range_convention: RangeConvention,
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        sampling: Sampling = "eval",
        clip_step: int | None = None,
        resize_mode: FrameResizeMode = "bilinear",
        decode_threads: int = 0,
        video_backend: VideoBackend = "auto",
        sample_fps: float | None = None,
    ) -> None:
        super().__init__(clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes=False,
                         video_backend=video_backend, sample_fps=sample_fps)
        self.categories = tuple(categories)
        self.temporal_ground_truth = temporal_ground_truth
        self.range_convention = range_convention
        self.decode_threads = decode_threads
        self.videos = {v.video_id: v for v in videos}
        if len(self.videos) != len(videos):
            counts = Counter(v.video_id for v in videos)
            repeated = [name for name, n in counts.items() if n > 1]
            raise DatasetFormatError(f"video(s) {repeated[:5]} are listed twice in the split; keep one entry each")
        self._video_ids = list(self.videos)
        self._category_cache: dict[str, np.ndarray] = {}
        self._build_clips()

    # ----------------------------------------------------------------- per-video accessors
    def num_frames(self, video_id: str) -> int:
        return self.videos[video_id].num_frames

    def original_size(self, video_id: str) -> tuple[int, int]:
        return self.videos[video_id].size

    def video_name(self, video_id: str) -> str:
        return str(self.videos[video_id].path)

    def video_labels(self, video_id: str) -> np.ndarray:
        """``(K,)`` bool multi-hot categories of the video (index 0 = normal)."""
        return video_label_vector(self.videos[video_id].categories, self.categories)

    def frame_categories(self, video_id: str) -> np.ndarray:
        """``(T, K)`` bool per-frame categories of a whole video (splits with temporal ground truth only)."""
        if not self.temporal_ground_truth:
            raise ValueError("this split has no temporal ground truth (training split): only video labels are known")
        if video_id not in self._category_cache:
            video = self.videos[video_id]
            _, cats = frame_targets(video.num_frames, video.segments, self.categories, self.range_convention)
            self._category_cache[video_id] = cats
        return self._category_cache[video_id]

    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        video = self.videos[video_id]
        if self.temporal_ground_truth:
            return self.frame_categories(video_id)[:, 1:].any(axis=1).astype(np.int64)
        abnormal = bool(self.video_labels(video_id)[1:].any())
        return np.full(video.num_frames, UNKNOWN_FRAME_LABEL if abnormal else 0, dtype=np.int64)

    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        return []  # no region ground truth in these benchmarks

    def _open_reader(self, video_id: str) -> VideoReader:
        return open_video(self.videos[video_id].path, self.video_backend, num_threads=self.decode_threads)

    def _check_reader(self, video_id: str, reader: VideoReader) -> None:
        video = self.videos[video_id]
        if reader.num_frames != video.num_frames:
            raise DatasetFormatError(f"{video.path} now has {reader.num_frames} frames but had {video.num_frames} "
                                     "when the split was listed; the file changed — rebuild the DataModule")

    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        height, width = self.original_size(video_id)
        return torch.zeros((len(indices), height, width), dtype=torch.bool)

    def _clip_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        height, width = self.frame_size or self.original_size(video_id)
        return torch.zeros((len(indices), height, width), dtype=torch.bool)  # no pixel ground truth here

    def _load_clip(self, video_id: str, indices: np.ndarray) -> ClipSample:
        sample = super()._load_clip(video_id, indices)
        sample.video_labels = torch.from_numpy(self.video_labels(video_id))
        if self.temporal_ground_truth:
            cats = torch.zeros((self.clip_len, len(self.categories)), dtype=torch.bool)
            cats[: len(indices)] = torch.from_numpy(self.frame_categories(video_id)[indices])
            sample.frame_categories = cats
        return sample


def check_video_files(entries: Sequence[tuple[str, Path | None]], listing: Path, root: Path) -> None:
    """Raise one FileNotFoundError naming every listed video (up to 10) that is not on disk."""
    missing = [name for name, path in entries if path is None]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(
            f"{len(missing)} video(s) listed in {listing} are not under {root}: {missing[:10]}{more}; restore them "
            "or remove them from the list"
        )


class WeaklyLabelledDataModule(VideoClipDataModule):
    """What the UCF-Crime and XD-Violence DataModules share: their splits become a
    :class:`WeaklyLabelledDataset` with the DataModule's clip settings — video-level labels for training
    (training windows), per-frame ground truth for evaluation (every frame once)."""

    def weak_dataset(self, videos: list[WeakVideo], categories: Sequence[str], *, train: bool) -> WeaklyLabelledDataset:
        return WeaklyLabelledDataset(
            videos,
            categories,
            temporal_ground_truth=not train,
            range_convention=self.range_convention,
            clip_len=self.clip_len,
            frame_stride=self.frame_stride,
            frame_size=self.frame_size,
            sampling="train" if train else "eval",
            clip_step=self.train_clip_step,
            resize_mode=self.resize_mode,
            decode_threads=self.decode_threads,
            video_backend=self.video_backend,
            sample_fps=getattr(self, "sample_fps", None),
        )
