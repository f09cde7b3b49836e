"""Clip sampling and the clip dataset/DataModule base shared by UBnormal and ShanghaiTech (SPEC §5).

Two sampling plans:

* ``train`` — windows of ``clip_len`` frames taken every ``frame_stride`` frames, a new window every
  ``clip_step`` frames (default: half a window, the author's 24-frame/12-step prototype), plus one window
  ending on the last frame so the tail of every video is seen.
* ``eval`` — every frame of every video exactly once. A video is cut into blocks of ``clip_len *
  frame_stride`` frames; a block gives ``frame_stride`` clips, clip ``o`` holding frames ``o, o + stride,
  …`` of the block, so clips keep the training frame spacing and no frame is skipped or repeated. The last
  block is shorter; its clips are padded by repeating their last frame, with ``valid=False`` and
  ``frame_index=-1`` on the padding.

``sample_fps`` (instead of ``frame_stride``) takes frames at that rate from each video's own frame rate: the
video's stride is ``round(video fps / sample_fps)`` and both plans use it as above (a 30 fps video at
``sample_fps=1`` gets stride 30, a 25 fps one stride 25; evaluation still covers every frame once, ``stride``
interleaved 1-fps clips per block). The clip frames are then ``fps / stride`` apart, which is the rate
``ClipSample.fps`` reports; when ``fps / sample_fps`` is far from an integer that rate differs from
``sample_fps`` (by more than 1 %: one warning names the videos).

Subclasses (one per dataset format) list their videos and implement how frames, masks, labels and region
ground truth are read; :class:`VideoClipDataset` turns that into :class:`~tvau_lightning.data.types.ClipSample`
items, resized to ``frame_size`` (frames anti-aliased, masks nearest).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset

from tvau_lightning.data.decode_threads import ThreadedEvaluationClips
from tvau_lightning.data.feature_cache import CachedClipDataset, collate_cached_clips
from tvau_lightning.data.loader import ForkSafeDataLoader
from tvau_lightning.data.transforms import FrameResizeMode, resize_frames, resize_masks
from tvau_lightning.data.types import ClipBatch, ClipSample, collate_clips
from tvau_lightning.data.video import VideoBackend, VideoReader, resolve_backend
from tvau_lightning.data.video.yuv import YUVColour, is_yuv420, yuv420_to_rgb
from tvau_lightning.modules.grid import pad_last

Sampling = Literal["train", "eval"]
#: where a clip DataModule resizes frames to ``frame_size``: ``data`` in the dataset (DataLoader workers),
#: ``device`` after the batch reached the model's device (``on_after_batch_transfer``), ``device_yuv420`` as
#: ``device`` but the workers ship the decoder's YUV 4:2:0 planes (half the bytes of RGB), which the device
#: converts to RGB before resizing, ``auto``: ``device`` when CUDA is available, else ``data``
ResizeOn = Literal["auto", "data", "device", "device_yuv420"]
RESIZE_ON: tuple[str, ...] = ("auto", "data", "device", "device_yuv420")
#: how a clip DataModule's evaluation loaders read in parallel: ``threads`` of the main process (default) or
#: DataLoader worker ``processes``; ``num_workers`` of either (:class:`VideoClipDataModule`)
EvalLoading = Literal["threads", "processes"]
EVAL_LOADING: tuple[str, ...] = ("threads", "processes")
#: what the workers ship with ``resize_on: device``: RGB frames, or packed YUV 4:2:0 (``device_yuv420``)
FramesFormat = Literal["rgb", "yuv420"]
#: readers a forked DataLoader worker inherited from its parent. They are kept referenced and never used:
#: freeing a copied ffmpeg decoder in the child aborts the process (its decoding threads exist only in the
#: parent), and workers leave through ``os._exit``, so nothing is ever freed here.
_INHERITED_READERS: list[object] = []
#: the DataModule split names (``dm.dataset(split)``); ``predict`` reads the test split
SPLITS = ("train", "val", "test", "predict")


class DatasetFormatError(ValueError):
    """The data on disk does not follow the expected native layout; the message names the file and the fix."""


class DatasetWarning(UserWarning):
    """The data on disk departs from its benchmark's conventions in a way that was tolerated (``strict=False``);
    the message names every video concerned and what was done about it."""


def clip_span(clip_len: int, frame_stride: int) -> int:
    """Number of source frames a full clip spans: ``(clip_len - 1) * frame_stride + 1``."""
    return (clip_len - 1) * frame_stride + 1


def training_clips(num_frames: int, clip_len: int, frame_stride: int = 1, clip_step: int | None = None) -> list[np.ndarray]:
    """Frame indices of the training windows of a ``num_frames``-frame video.

    Windows start every ``clip_step`` frames (default ``max(1, clip_len * frame_stride // 2)``); one more window
    ends on the last frame when the regular ones miss it. A video shorter than a window gives one short clip
    (padded later). Returns a list of int64 arrays, each at most ``clip_len`` long.
    """
    _check_sampling_args(clip_len, frame_stride)
    if num_frames < 1:
        return []
    step = max(1, clip_len * frame_stride // 2) if clip_step is None else int(clip_step)
    if step < 1:
        raise ValueError(f"clip_step must be positive, got {clip_step}")
    span = clip_span(clip_len, frame_stride)
    offsets = np.arange(clip_len, dtype=np.int64) * frame_stride
    if num_frames <= span:
        return [offsets[offsets < num_frames]]
    starts = list(range(0, num_frames - span + 1, step))
    if starts[-1] != num_frames - span:
        starts.append(num_frames - span)
    return [start + offsets for start in starts]


def evaluation_clips(num_frames: int, clip_len: int, frame_stride: int = 1) -> list[np.ndarray]:
    """Clips that hold every frame of a ``num_frames``-frame video exactly once (see the module docstring).

    Returns a list of int64 arrays of frame indices, each at most ``clip_len`` long, each with constant spacing
    ``frame_stride``.
    """
    _check_sampling_args(clip_len, frame_stride)
    block = clip_len * frame_stride
    clips = []
    for block_start in range(0, num_frames, block):
        block_end = min(block_start + block, num_frames)
        for phase in range(frame_stride):
            indices = np.arange(block_start + phase, block_end, frame_stride, dtype=np.int64)
            if indices.size:
                clips.append(indices)
    return clips


def stride_for_rate(video_fps: float, sample_fps: float, what: str = "video") -> int:
    """The frame stride that takes ``sample_fps`` frames per second from a ``video_fps`` source:
    ``round(video_fps / sample_fps)`` (halves round up). Raises ValueError naming ``what`` when the video has no
    usable frame rate or ``sample_fps`` exceeds it."""
    if not video_fps or not np.isfinite(video_fps) or video_fps <= 0:
        raise ValueError(f"{what} reports no usable frame rate ({video_fps}); sample_fps needs one — re-encode the "
                         "video or use frame_stride instead of sample_fps")
    if sample_fps > video_fps * (1 + 1e-6):
        raise ValueError(f"{what} runs at {video_fps:g} fps, below sample_fps={sample_fps:g}; lower sample_fps to at "
                         f"most {video_fps:g} (or null for every frame)")
    return max(1, int(np.floor(video_fps / sample_fps + 0.5)))


def _check_sampling_args(clip_len: int, frame_stride: int) -> None:
    if clip_len < 1:
        raise ValueError(f"clip_len must be positive, got {clip_len}")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be positive, got {frame_stride}")


def check_clip_args(
    clip_len: int, frame_stride: int, frame_size: tuple[int, int] | None, clip_step: int | None = None,
    sample_fps: float | None = None,
) -> None:
    """Validate the clip arguments of a dataset or DataModule (raises ValueError naming the argument)."""
    _check_sampling_args(clip_len, frame_stride)
    if sample_fps is not None:
        if not sample_fps > 0 or not np.isfinite(sample_fps):
            raise ValueError(f"sample_fps must be positive (frames per second taken from the source) or null, got "
                             f"{sample_fps}")
        if frame_stride != 1:
            raise ValueError(f"sample_fps={sample_fps:g} and frame_stride={frame_stride} both set the sampling rate; "
                             "set one of them (frame_stride: 1 with sample_fps, or sample_fps: null)")
    if frame_size is not None and (len(frame_size) != 2 or min(int(v) for v in frame_size) < 1):
        raise ValueError(f"frame_size must be (H, W) with positive sides or None, got {frame_size!r}")
    if clip_step is not None and clip_step < 1:
        raise ValueError(f"clip_step must be positive (or None for half a window), got {clip_step}")


def boxes_of_clip(tracks: Sequence[np.ndarray], frame_index: np.ndarray) -> torch.Tensor:
    """The rows of ``tracks`` that fall on the clip's frames, as ``(n, 6)`` int64 ``(frame, track_id, x1, y1, x2, y2)``.

    ``tracks[k]`` is the ``(m, 5)`` array ``(frame, x1, y1, x2, y2)`` of track ``k``; ``track_id`` is ``k``.
    """
    frames = np.asarray(frame_index)
    frames = frames[frames >= 0]
    rows = []
    for track_id, track in enumerate(tracks):
        track = np.asarray(track, dtype=np.int64).reshape(-1, 5)
        keep = track[np.isin(track[:, 0], frames)]
        if keep.size:
            rows.append(np.concatenate([keep[:, :1], np.full((len(keep), 1), track_id), keep[:, 1:]], axis=1))
    if not rows:
        return torch.zeros((0, 6), dtype=torch.int64)
    out = np.concatenate(rows).astype(np.int64)
    return torch.from_numpy(out[np.lexsort((out[:, 1], out[:, 0]))])


class VideoClipDataset(Dataset, abc.ABC):
    """Clips of the videos of one split, as :class:`ClipSample` items.

    Subclasses set ``self._video_ids`` and call :meth:`_build_clips` at the end of their ``__init__``, and
    implement the per-video accessors. Readers are opened lazily and cached per process (DataLoader workers
    each open their own; decord readers are never shared across a fork).

    Args:
        clip_len: frames per clip.
        frame_stride: spacing of the frames of a clip in the source video.
        frame_size: ``(H, W)`` frames and masks are resized to; ``None`` keeps the source size.
        sampling: ``train`` (overlapping windows) or ``eval`` (every frame exactly once).
        clip_step: for ``train``, frames between window starts (default half a window).
        resize_mode: frame resampling filter (masks are always nearest).
        gt_boxes: attach each clip's RBDC/TBDC ground-truth boxes (``ClipSample.gt_boxes``).
        video_backend: decoder of video files (``auto``: decord if installed, else PyAV; see
            :func:`~tvau_lightning.data.video.open_video`); frame folders are always read with PIL.
        sample_fps: take frames at this rate from each video's frame rate instead of every ``frame_stride``-th
            (per-video stride ``round(fps / sample_fps)``; see the module docstring); ``None``: ``frame_stride``.
    """

    max_open_readers = 8
    #: ``data``: items carry frames resized to ``frame_size``; ``device``: frames at the source size (masks are
    #: still resized), for a DataModule that resizes them on the model's device. Set by the DataModule.
    resize_on: Literal["data", "device"] = "data"
    #: with ``resize_on: device``: ``yuv420`` items carry packed YUV 4:2:0 frames (``ClipSample.frames_colour``
    #: set) where the reader can give them (PyAV, 8-bit 4:2:0 of even size), else RGB. Set by the DataModule.
    frames_format: FramesFormat = "rgb"

    def __init__(
        self,
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        sampling: Sampling = "eval",
        clip_step: int | None = None,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        video_backend: VideoBackend = "auto",
        sample_fps: float | None = None,
    ) -> None:
        check_clip_args(clip_len, frame_stride, frame_size, clip_step, sample_fps)
        resolve_backend(video_backend)  # an unknown or missing backend fails here, not in a DataLoader worker
        if sampling not in ("train", "eval"):
            raise ValueError(f"sampling must be 'train' or 'eval', got {sampling!r}")
        self.clip_len = int(clip_len)
        self.frame_stride = int(frame_stride)
        self.sample_fps = None if sample_fps is None else float(sample_fps)
        self._strides: dict[str, int] = {}  # per video, with sample_fps (and the source rate it came from)
        self._source_fps: dict[str, float] = {}
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.sampling = sampling
        self.clip_step = clip_step
        self.resize_mode = resize_mode
        self.attach_gt_boxes = gt_boxes
        self.video_backend: VideoBackend = video_backend
        self._video_ids: list[str] = []
        self._clips: list[tuple[str, np.ndarray]] = []
        self._readers: OrderedDict[str, VideoReader] = OrderedDict()
        self._readers_pid = os.getpid()
        self._labels: dict[str, np.ndarray] = {}
        self._tracks: dict[str, list[np.ndarray]] = {}

    # ----------------------------------------------------------------- per-video accessors (subclasses)
    @property
    def video_ids(self) -> list[str]:
        """The videos of the split, in a fixed order."""
        return list(self._video_ids)

    @abc.abstractmethod
    def num_frames(self, video_id: str) -> int:
        """Number of frames of the video (every frame is covered once by ``eval`` sampling)."""

    @abc.abstractmethod
    def original_size(self, video_id: str) -> tuple[int, int]:
        """``(H, W)`` of the source frames."""

    @abc.abstractmethod
    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        """``(T,)`` int64 frame labels (1 = abnormal)."""

    @abc.abstractmethod
    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        """The video's GT tracks, each ``(n, 5)`` int64 rows ``(frame, x1, y1, x2, y2)`` (inclusive pixels)."""

    @abc.abstractmethod
    def _open_reader(self, video_id: str) -> VideoReader:
        """Open the frames of the video (called at most once per process and cached)."""

    @abc.abstractmethod
    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        """``(n, H, W)`` bool anomaly masks of the frames ``indices`` at the source size."""

    def _clip_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        """``(n, H', W')`` bool masks of the frames ``indices`` at ``frame_size`` (:meth:`_read_masks`, resized).
        Subclasses that know which frames have no anomalous pixel override it to skip reading those."""
        return resize_masks(self._read_masks(video_id, indices), self.frame_size)

    def _check_reader(self, video_id: str, reader: VideoReader) -> None:  # noqa: B027
        """Lazy consistency checks between a freshly opened reader and the annotations (override)."""

    def _clip_gt_boxes(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        """``(n, 6)`` GT boxes of the clip's frames; subclasses may compute them without the whole video."""
        return boxes_of_clip(self.gt_tracks(video_id), indices)

    def frame_labels(self, video_id: str) -> np.ndarray:
        """``(T,)`` int64 frame labels of a whole video, 1 = abnormal."""
        if video_id not in self._labels:
            self._labels[video_id] = self._compute_frame_labels(video_id)
        return self._labels[video_id]

    def gt_tracks(self, video_id: str) -> list[np.ndarray]:
        """RBDC/TBDC ground truth of a whole video: a list of ``(n, 5)`` int64 arrays ``(frame, x1, y1, x2, y2)``."""
        if video_id not in self._tracks:
            self._tracks[video_id] = self._compute_gt_tracks(video_id)
        return self._tracks[video_id]

    def total_frames(self) -> int:
        """Frames in the whole split (``N`` of the RBDC/TBDC false-positive rate)."""
        return sum(self.num_frames(v) for v in self._video_ids)

    def video_fps(self, video_id: str) -> float:
        """Frame rate of the video's source (``sample_fps`` plans from it); subclasses that learnt it when
        listing override this, the default opens the video once."""
        return float(self._open_reader(video_id).fps)

    def video_name(self, video_id: str) -> str:
        """How errors name the video (subclasses give its path)."""
        return f"video {video_id!r}"

    def frame_stride_of(self, video_id: str) -> int:
        """Spacing of a clip's frames in this video: ``frame_stride``, or with ``sample_fps`` the video's own
        ``round(fps / sample_fps)``."""
        if self.sample_fps is None:
            return self.frame_stride
        if video_id not in self._strides:
            fps = self.video_fps(video_id)
            self._strides[video_id] = stride_for_rate(fps, self.sample_fps, self.video_name(video_id))
            self._source_fps[video_id] = fps
        return self._strides[video_id]

    def _warn_inexact_rates(self) -> None:
        """One warning naming the videos whose stride gives a rate more than 1 % off ``sample_fps``."""
        if self.sample_fps is None:
            return
        off = []
        for video_id in self._video_ids:
            stride, fps = self.frame_stride_of(video_id), self._source_fps[video_id]
            if abs(fps / stride - self.sample_fps) > 0.01 * self.sample_fps:
                off.append(f"{video_id}: {fps:g} fps / stride {stride} = {fps / stride:.4g} fps")
        if off:
            more = f" … and {len(off) - 10} more" if len(off) > 10 else ""
            warnings.warn(f"sample_fps={self.sample_fps:g} is not a whole fraction of the frame rate of "
                          f"{len(off)} video(s); their clips take every round(fps / sample_fps)-th frame, so their "
                          f"actual rate differs: {'; '.join(off[:10])}{more}", UserWarning, stacklevel=3)

    # ----------------------------------------------------------------- clips
    def _build_clips(self) -> None:
        self._clips = []
        for video_id in self._video_ids:
            total = self.num_frames(video_id)
            stride = self.frame_stride_of(video_id)
            if self.sampling == "train":
                plans = training_clips(total, self.clip_len, stride, self.clip_step)
            else:
                plans = evaluation_clips(total, self.clip_len, stride)
            self._clips.extend((video_id, plan) for plan in plans)
        self._warn_inexact_rates()

    @property
    def clips(self) -> list[tuple[str, np.ndarray]]:
        """``(video_id, frame indices)`` of every item, before padding."""
        return list(self._clips)

    def __len__(self) -> int:
        return len(self._clips)

    def thread_state(self) -> threading.local:
        """What this thread alone uses of the dataset (a decoded block being served, annotation caches): evaluation
        clips may be read by several threads of one process (:class:`~tvau_lightning.data.decode_threads.
        ThreadedEvaluationClips`), each on its own videos."""
        return self.__dict__.setdefault("_thread_state", threading.local())

    @contextmanager
    def serving(self, video_id: str, reader: VideoReader) -> Iterator[None]:
        """Within the block, this thread's :meth:`reader` of ``video_id`` is ``reader`` (a decoded block)."""
        state = self.thread_state()
        previous = getattr(state, "serving", None)
        state.serving = (video_id, reader)
        try:
            yield
        finally:
            state.serving = previous

    def reader(self, video_id: str) -> VideoReader:
        """The (cached, per-process) frame reader of a video; inside :meth:`serving`, the block served to this
        thread."""
        serving = getattr(self.thread_state(), "serving", None)
        if serving is not None and serving[0] == video_id:
            return serving[1]
        if self._readers_pid != os.getpid():  # a forked worker: never reuse (nor free) the parent's decoders
            _INHERITED_READERS.extend(self._readers.values())
            self._readers = OrderedDict()
            self._readers_pid = os.getpid()
        if video_id in self._readers:
            self._readers.move_to_end(video_id)
            return self._readers[video_id]
        reader = self._open_reader(video_id)
        if self.resize_on == "device" and hasattr(reader, "shared_output"):
            reader.shared_output = True  # its frames leave the worker as decoded: decode into shared memory
        self._check_reader(video_id, reader)
        self._readers[video_id] = reader
        while len(self._readers) > self.max_open_readers:
            self._readers.popitem(last=False)
        return reader

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()  # decoders cannot be pickled (spawned DataLoader workers)
        state.pop("_thread_state", None)  # per thread of this process
        return state

    def __getitem__(self, index: int) -> ClipSample:
        video_id, indices = self._clips[index]
        try:
            return self._load_clip(video_id, indices)
        except Exception as error:
            if hasattr(error, "add_note"):
                error.add_note(f"while loading item {index}: video {video_id!r}, frames {indices.tolist()}")
            raise

    def _read_frames(self, reader: VideoReader, indices: np.ndarray) -> tuple[torch.Tensor, YUVColour | None]:
        """The frames of ``indices``: packed YUV 4:2:0 and their colour when ``frames_format`` is ``yuv420`` and
        the reader gives them, else RGB and ``None``."""
        if self.resize_on == "device" and self.frames_format == "yuv420" and hasattr(reader, "read_yuv420"):
            planes = reader.read_yuv420(indices)
            if planes is not None:
                return planes
        return reader.read(indices), None

    def _load_clip(self, video_id: str, indices: np.ndarray) -> ClipSample:
        reader = self.reader(video_id)
        frames, colour = self._read_frames(reader, indices)
        if self.resize_on != "device":
            frames = resize_frames(frames, self.frame_size, mode=self.resize_mode)
        masks = self._clip_masks(video_id, indices)
        labels = torch.from_numpy(self.frame_labels(video_id)[indices].astype(np.int64))
        count, pad = len(indices), self.clip_len - len(indices)
        frame_index = torch.full((self.clip_len,), -1, dtype=torch.int64)
        frame_index[:count] = torch.from_numpy(indices)
        valid = torch.zeros(self.clip_len, dtype=torch.bool)
        valid[:count] = True
        if pad:
            frames = pad_last(frames, self.clip_len)  # repeat the last frame, as the video processors do
            masks = torch.cat([masks, masks.new_zeros((pad, *masks.shape[1:]))])
            labels = torch.cat([labels, labels.new_zeros(pad)])
        return ClipSample(
            frames=frames.contiguous(),
            masks=masks.bool(),
            frame_labels=labels,
            frame_index=frame_index,
            valid=valid,
            video_id=video_id,
            fps=float(reader.fps) / self.frame_stride_of(video_id),  # the rate of the clip's frames
            original_size=self.original_size(video_id),
            gt_boxes=self._clip_gt_boxes(video_id, indices) if self.attach_gt_boxes else None,
            frames_colour=None if colour is None else tuple(colour),
        )


class _DecodedBlock:
    """A reader that serves frames already decoded (one block of a video: RGB, or packed YUV 4:2:0 when
    ``colour`` is given) and defers anything else to ``reader``."""

    def __init__(self, reader: VideoReader, indices: np.ndarray, frames: torch.Tensor,
                 colour: YUVColour | None = None) -> None:
        self._reader, self._frames, self._colour = reader, frames, colour
        self._position = {int(f): k for k, f in enumerate(indices)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def _rows(self, indices: Any) -> torch.Tensor | None:
        wanted = [int(f) for f in np.asarray(indices).reshape(-1)]
        if not wanted or not all(f in self._position for f in wanted):
            return None
        rows = [self._position[f] for f in wanted]
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return self._frames[rows[0] : rows[0] + len(rows)]  # the whole block (frame_stride 1): a view
        return self._frames.index_select(0, torch.tensor(rows))

    def read(self, indices: Any) -> torch.Tensor:
        frames = None if self._colour is not None else self._rows(indices)
        return self._reader.read(indices) if frames is None else frames

    def read_yuv420(self, indices: Any) -> tuple[torch.Tensor, YUVColour] | None:
        frames = None if self._colour is None else self._rows(indices)
        if frames is None:
            return self._reader.read_yuv420(indices) if hasattr(self._reader, "read_yuv420") else None
        return frames, self._colour


def shard_of_process() -> tuple[int, int, int, int]:
    """``(rank, world size, worker id, workers)`` of this process: its DDP rank and its DataLoader worker."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, world, worker, workers


class SequentialEvaluationClips(IterableDataset):
    """The evaluation clips of a dataset, read video by video from one decoder, each video once, in order.

    A map-style loader hands consecutive clips of a video to different workers, so every worker's decoder
    jumps over the frames the others read (a seek, or a decode of frames it throws away, per clip). Here whole
    videos are sharded (:func:`shard_of_process`): video ``k`` goes to DDP rank ``k mod world``, and within a
    rank its ``j``-th video to worker ``j mod workers``; each shard walks its videos front to back: the frames of one block (``clip_len ×
    frame_stride`` frames, which hold ``frame_stride`` clips) are decoded in one increasing read and cut into
    its clips, so no frame is decoded twice and the decoder never seeks. Items are those of ``dataset[i]``
    (subclass hooks included); every clip is yielded exactly once over all shards.
    """

    def __init__(self, dataset: VideoClipDataset, videos: Collection[str] | None = None) -> None:
        if dataset.sampling != "eval":
            raise ValueError("SequentialEvaluationClips reads evaluation clips (sampling='eval'); training "
                             "windows are shuffled and may seek")
        self.dataset = dataset
        self._by_video: OrderedDict[str, list[int]] = OrderedDict()
        for index, (video_id, _) in enumerate(dataset.clips):
            if videos is None or video_id in videos:  # ``videos``: only these (e.g. those a cache lacks)
                self._by_video.setdefault(video_id, []).append(index)

    def _videos_of_rank(self, rank: int, world: int) -> list[str]:
        return [v for k, v in enumerate(self._by_video) if k % world == rank]

    def __len__(self) -> int:
        """Clips of this DDP rank (over all its workers)."""
        rank, world, _, _ = shard_of_process()
        return sum(len(self._by_video[v]) for v in self._videos_of_rank(rank, world))

    def __iter__(self) -> Iterator[ClipSample]:
        return self.iter_videos(self.videos_of_shard())

    def videos_of_shard(self) -> list[str]:
        """The videos this process (DDP rank, DataLoader worker) reads, in order."""
        rank, world, worker, workers = shard_of_process()
        return self._videos_of_rank(rank, world)[worker::workers]

    def iter_videos(self, videos: Sequence[str]) -> Iterator[ClipSample]:
        """The clips of ``videos``, video by video, each decoded front to back (safe to run in several threads of
        one process on distinct videos: the decoded block is served to this thread alone)."""
        dataset = self.dataset
        clips = dataset.clips
        for video_id in videos:
            block = dataset.clip_len * dataset.frame_stride_of(video_id)
            items = self._by_video[video_id]
            reader = dataset.reader(video_id)
            start = 0
            while start < len(items):
                first = int(clips[items[start]][1][0]) // block
                end = start
                while end < len(items) and int(clips[items[end]][1][0]) // block == first:
                    end += 1
                frames_of_block = np.unique(np.concatenate([clips[i][1] for i in items[start:end]]))
                decoded = _DecodedBlock(reader, frames_of_block, *dataset._read_frames(reader, frames_of_block))
                for i in items[start:end]:
                    with dataset.serving(video_id, decoded):
                        item = dataset[i]
                    yield item
                start = end


def resolve_resize_on(resize_on: str) -> Literal["data", "device"]:
    """``auto`` → ``device`` when CUDA is available, else ``data``; ``device_yuv420`` → ``device`` (its frame
    format is :func:`frames_format_of`); other names are checked and returned."""
    if resize_on not in RESIZE_ON:
        raise ValueError(f"resize_on must be one of {', '.join(RESIZE_ON)}, got {resize_on!r}")
    if resize_on == "auto":
        return "device" if torch.cuda.is_available() else "data"
    return "device" if resize_on == "device_yuv420" else resize_on  # type: ignore[return-value]


def frames_format_of(resize_on: str) -> FramesFormat:
    """What the workers ship with ``resize_on``: ``yuv420`` for ``device_yuv420``, else ``rgb``."""
    return "yuv420" if resize_on == "device_yuv420" else "rgb"


def frames_as_rgb(frames: torch.Tensor, colour: tuple[int, int] | None) -> torch.Tensor:
    """Clip or batch frames as RGB ``(…, H, W, 3)``: packed YUV 4:2:0 ``(…, H * 3 // 2, W)`` converted on their
    device with ``colour`` (:func:`~tvau_lightning.data.video.yuv.yuv420_to_rgb`), RGB returned as it is."""
    if not is_yuv420(frames):
        return frames
    if colour is None:
        raise ValueError(f"frames of shape {tuple(frames.shape)} are packed YUV 4:2:0 but carry no colour "
                         "(frames_colour); they come from resize_on: device_yuv420 and need its collate")
    lead = frames.shape[:-2]
    rgb = yuv420_to_rgb(frames.reshape(-1, *frames.shape[-2:]), YUVColour(*colour))
    return rgb.view(*lead, *rgb.shape[1:])


def collate_mixed_sizes(
    samples: Sequence[ClipSample], collate: Any = collate_clips, frame_size: tuple[int, int] | None = None,
    resize_mode: FrameResizeMode = "bilinear",
) -> Any:
    """``collate(samples)``, after resizing the frames to ``frame_size`` on the CPU when the clips' source sizes
    differ (``resize_on: device`` batches clips of several videos; one batch tensor needs one size). A batch
    whose clips share a size is passed on at the source size, for the device to resize.

    Clips of packed YUV 4:2:0 (``resize_on: device_yuv420``) stay YUV when all of the batch's clips are YUV of one
    size and one colour (``ClipBatch.frames_colour`` says which; the device converts them); a batch mixing them
    with RGB clips, other sizes or other colours is converted to RGB here first, then treated as above."""
    colours = {getattr(s, "frames_colour", None) for s in samples}
    yuv_sizes = {tuple(s.frames.shape[1:]) for s in samples}
    if len(colours) > 1 or (None not in colours and len(yuv_sizes) > 1):
        samples = [dataclasses.replace(s, frames=frames_as_rgb(s.frames, s.frames_colour), frames_colour=None)
                   for s in samples]
        colours = {None}
    if None in colours and frame_size is not None and len({tuple(s.frames.shape[1:3]) for s in samples}) > 1:
        samples = [dataclasses.replace(s, frames=resize_frames(s.frames, frame_size, mode=resize_mode))
                   for s in samples]
    batch = collate(samples)
    colour = next(iter(colours))
    if colour is not None:
        batch.frames_colour = colour
    return batch


def default_num_workers(limit: int = 8) -> int:
    """DataLoader workers when none are set: the CPU cores this process may use, at most ``limit``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(int(limit), cores))


def _quiet_lightning_worker_hint() -> None:
    """Silence Lightning's hint that an evaluation DataLoader with ``num_workers=0`` "does not have many workers"
    (it advises raising ``num_workers``, which here is already the number of decoding threads); only for the
    val/test/predict loaders, whose parallelism is threads (:class:`ThreadedEvaluationClips`)."""
    warnings.filterwarnings("ignore", message=r"The '(val|test|predict)_dataloader' does not have many workers")


class VideoClipDataModule(LightningDataModule, abc.ABC):
    """Shared DataModule logic: one dataset per split built on first use, loaders with :attr:`collate_fn`.

    Subclasses implement :meth:`_make_dataset`; the train split uses ``train`` sampling (shuffled), the
    others ``eval`` sampling (every frame once), read through :class:`SequentialEvaluationClips` (each video
    once, front to back, videos sharded over workers and ranks). ``predict`` reads the test split.
    ``video_backend`` is the decoder of video files (``auto``: decord if installed, else PyAV).
    ``num_workers=None`` (the default) → :func:`default_num_workers` (the usable cores, at most 8);
    ``pin_memory=None`` (the default) → pin when CUDA is available. Workers persist across epochs. After
    :meth:`read_from_feature_cache`, every loader serves clips from the feature cache alone (no video opened).

    ``eval_loading`` says how the evaluation loaders (val/test/predict) use those ``num_workers``: ``threads``
    (the default) decodes in ``num_workers`` threads of the main process
    (:class:`~tvau_lightning.data.decode_threads.ThreadedEvaluationClips`: each thread reads whole videos, and the
    frames never cross into another process), ``processes`` in as many DataLoader worker processes (each batch
    copied into fresh shared memory on its way out). Measured (``benchmarks/README.md``, 1280×720 → 448×672,
    PyAV, 2 cores): threads 2.4–2.65× the frames per core of the loader before issue 17 (2.2–2.6× per
    CPU-second), processes 1.5–1.7×.
    The training loader always uses worker processes (shuffled windows seek, and a worker's copy is small
    next to a training step).

    ``resize_on`` says where frames are resized to the subclass's ``frame_size``: ``data`` in the dataset (the
    DataLoader workers), ``device`` on the model's device after the batch transfer (:meth:`on_after_batch_transfer`,
    with the same :func:`~tvau_lightning.data.transforms.resize_frames`; on the CPU the bytes are identical):
    the workers then only decode, at the source size, into one preallocated array, and the anti-aliased resize
    runs on the GPU. Masks are resized in the dataset either way (nearest), so targets never change. A batch
    whose clips come from videos of different sizes is resized on the CPU in the collate
    (:func:`collate_mixed_sizes`). ``auto``: ``device`` when CUDA is available, else ``data``. Code that
    iterates a DataModule's datasets without the Trainer applies :meth:`frames_to_size` itself (the
    feature-cache fill does).

    The default is ``data``. Measured (``benchmarks/README.md``, 1280×720 → 448×672, PyAV, DataLoader workers):
    shipping source-size frames from a worker through shared memory costs about what the resize saves (filling
    shared memory is ~2.4 ms per 720p frame of CPU, the resize ~0.9 ms, the 448×672 frame's transfer ~0.8 ms),
    so per core the two settings came out within about 25 % of each other, either way round; ``data`` also gives
    the same bytes on every device (the GPU resamples in float, within one level). ``device`` pays where the
    source is at or below ``frame_size`` (ShanghaiTech's 480×856 → 476×868) and with ``num_workers=0`` (no
    transfer: ~1.3× fewer CPU seconds per frame), and it frees CPU where the GPU has time to spare.

    ``device_yuv420`` is ``device`` with the workers shipping the decoder's planar YUV 4:2:0 (PyAV sources in
    8-bit 4:2:0 of even size; anything else is read as RGB): half the bytes of RGB into shared memory and no YUV →
    RGB conversion in the worker; :meth:`on_after_batch_transfer` converts on the model's device
    (:func:`~tvau_lightning.data.video.yuv.yuv420_to_rgb`, the frame's colour matrix and range as swscale reads
    them; within 2 levels of PyAV's RGB, half a level on average), then resizes. Measured (``benchmarks/README.md``,
    4 workers, 2 cores): 1.75–2.3× the frames/s per core of the loader before issue 17 and 2.0–2.2× per CPU-second,
    against 1.3–1.6× for ``device`` — when a GPU does the conversion: on a CPU it costs ~9–14 ms per 720p frame,
    more than it saves, so it is never chosen by ``auto``.
    """

    #: how items of this DataModule's datasets are batched
    collate_fn = staticmethod(collate_clips)

    def __init__(
        self,
        batch_size: int = 1,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        video_backend: VideoBackend = "auto",
        resize_on: ResizeOn = "data",
        eval_loading: EvalLoading = "threads",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if eval_loading not in EVAL_LOADING:
            raise ValueError(f"eval_loading must be one of {', '.join(EVAL_LOADING)}, got {eval_loading!r}")
        self.eval_loading: EvalLoading = eval_loading
        if num_workers is None:
            num_workers = default_num_workers()
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (or None for the usable cores), got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.resize_on: Literal["data", "device"] = resolve_resize_on(resize_on)
        self.frames_format: FramesFormat = frames_format_of(resize_on)
        self._feature_cache: Any | None = None
        resolve_backend(video_backend)
        self.video_backend: VideoBackend = video_backend
        self._datasets: dict[str, Dataset] = {}

    @abc.abstractmethod
    def _make_dataset(self, split: str) -> Dataset:
        """Build the dataset of ``train``, ``val`` or ``test``."""

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``, ``val``, ``test``; ``predict`` = ``test``), built on first use."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        split = "test" if split == "predict" else split
        if split not in self._datasets:
            dataset = self._make_dataset(split)
            if isinstance(dataset, VideoClipDataset):
                dataset.resize_on = self.resize_on
                dataset.frames_format = self.frames_format
            self._datasets[split] = dataset
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Build (and so validate) the datasets the stage needs."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, ("train", "val", "test")) if stage else ("train", "val", "test"):
            self.dataset(split)

    def read_from_feature_cache(self, cache: Any | None) -> None:
        """Serve every split from ``cache`` (a :class:`~tvau_lightning.data.feature_cache.FeatureCache` whose files
        hold the clips' targets): one file read per clip, no video opened. ``None`` reads the videos again."""
        self._feature_cache = cache

    def clip_collate(self) -> Any:
        """The collate function of the video loaders: :attr:`collate_fn`, which with ``resize_on: device`` first
        resizes the clips of a batch mixing source sizes (:func:`collate_mixed_sizes`)."""
        if self.resize_on != "device":
            return self.collate_fn
        return functools.partial(collate_mixed_sizes, collate=self.collate_fn, frame_size=getattr(self, "frame_size", None),
                                 resize_mode=getattr(self, "resize_mode", "bilinear"))

    def frames_to_size(self, frames: torch.Tensor, colour: tuple[int, int] | None = None) -> torch.Tensor:
        """``(B, T, H, W, 3)`` uint8 frames resized to ``frame_size`` on their device when ``resize_on`` is
        ``device`` and they are not at that size yet; otherwise returned as they are. Packed YUV 4:2:0 frames
        ``(B, T, H * 3 // 2, W)`` (``device_yuv420``; ``colour`` = the batch's ``frames_colour``) are first
        converted to RGB on their device (:func:`frames_as_rgb`)."""
        size = getattr(self, "frame_size", None)
        if is_yuv420(frames) and 0 not in frames.stride():
            frames = frames_as_rgb(frames, colour)
        if self.resize_on != "device" or size is None or tuple(frames.shape[2:4]) == tuple(size):
            return frames
        batch, steps = frames.shape[:2]
        if 0 in frames.stride():  # a placeholder without memory (cached features): keep it one
            return frames.new_zeros(()).expand(batch, steps, *size, 3)
        out = resize_frames(frames.reshape(batch * steps, *frames.shape[2:]), size,
                            mode=getattr(self, "resize_mode", "bilinear"))
        return out.view(batch, steps, *size, 3)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``resize_on: device``: resize the batch's frames to ``frame_size`` on the model's device (with
        ``device_yuv420``, converted to RGB there first)."""
        if isinstance(batch, ClipBatch):
            batch.frames = self.frames_to_size(batch.frames, batch.frames_colour)
            batch.frames_colour = None
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset, collate = self.dataset(split), self.clip_collate()
        workers = self.num_workers
        if self._feature_cache is not None:
            dataset, collate = CachedClipDataset.from_dataset(self._feature_cache, dataset), collate_cached_clips
        elif isinstance(dataset, VideoClipDataset) and dataset.sampling == "eval":
            dataset, shuffle = SequentialEvaluationClips(dataset), False
            if self.eval_loading == "threads" and workers > 0:
                dataset, workers = ThreadedEvaluationClips(dataset, threads=workers), 0
                _quiet_lightning_worker_hint()
        return ForkSafeDataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
