"""What the builder reads per video: :class:`DatasetVideoSource`, with adapters for UBnormal, ShanghaiTech (both
protocols), a plain folder of user videos, and in-memory arrays.

A source gives the frames, the exact annotations the dataset has (frame labels, per-frame anomaly masks, GT
anomaly tracks, and — UBnormal only — the boxes of every object, normal ones included), and where the video
is on disk (written into the dialogue JSONL). The dataset adapters are thin layers over the public API of
:mod:`tvau_lightning.data.ubnormal` / :mod:`tvau_lightning.data.shanghaitech`; no format is parsed twice.

**Plain folder of user videos** (:func:`folder_videos`)::

    <root>/videos/<name>.mp4            any of .mp4 .avi .mkv .mov .webm — or a folder <name>/ of numbered
                                        frame images (000.jpg, 001.jpg, …)
    <root>/masks/<name>.npy             optional: (T, H, W) anomaly mask, non-zero = anomalous pixel
    <root>/masks/<name>/<frame>.png     optional, instead of the .npy: one png per frame (the number in the
                                        name is the 0-based frame; a missing png = an empty mask)
    <root>/labels.json                  optional: {"<name>": 0 | 1 | [[start, end], ...]} — 0 = normal,
                                        a list = the abnormal frame ranges (0-based, inclusive), 1 = abnormal
                                        with the frames taken from the masks

A video's frame labels come from ``labels.json`` ranges, else from its masks (a frame is abnormal where
its mask has a pixel); a video with neither is an error unless ``unlabelled="normal"``. GT anomaly tracks
come from the masks (connected components linked by IoU ≥ 0.1, as for ShanghaiTech); without masks an
abnormal video has no anomaly track, so it gets phase A narratives but no phase B dialogue.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from tvau_lightning.data.clips import VideoClipDataset
    from tvau_lightning.data.video import VideoBackend

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
MASK_IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")


class SourceError(ValueError):
    """Input videos or annotations the builder cannot use; the message names the file and the fix."""


class DatasetVideoSource(ABC):
    """One video as the builder sees it.

    Attributes:
        video_id: unique name within the dataset.
        dataset: the dataset name written into the dialogue records (``ubnormal``, ``shanghaitech``, ``custom``).
        path: the video file or frame folder (written, relative or absolute, into the JSONL).
        fps: frames per second.
        num_frames: frame count.
        size: ``(H, W)`` of the frames.
    """

    video_id: str
    dataset: str
    path: Path
    fps: float
    num_frames: int
    size: tuple[int, int]

    @abstractmethod
    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 RGB frames."""

    @abstractmethod
    def anomaly_masks(self, indices: Sequence[int]) -> np.ndarray | None:
        """``(n, H, W)`` bool GT anomaly masks, or ``None`` when the video has no pixel annotation."""

    @abstractmethod
    def frame_labels(self) -> np.ndarray:
        """``(T,)`` int64 frame labels, 1 = abnormal."""

    @abstractmethod
    def gt_tracks(self) -> list[np.ndarray]:
        """GT anomaly tracks, each ``(n, 5)`` int64 rows ``(frame, x1, y1, x2, y2)`` (inclusive pixels)."""

    def object_tracks(self) -> dict[str, np.ndarray]:
        """Boxes of every annotated object, normal ones included (``{key: (n, 5)}``, inclusive pixels);
        empty when the dataset has no instance annotation (only UBnormal has)."""
        return {}

    @property
    def label(self) -> int:
        """1 when any frame is abnormal."""
        return int(np.asarray(self.frame_labels()).any())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset}/{self.video_id}, {self.num_frames} frames, {self.path})"


# --------------------------------------------------------------------------------------------- in memory
class ArrayVideoSource(DatasetVideoSource):
    """A video held in memory (tests, notebooks, videos decoded elsewhere).

    Args:
        video_id: the video's name.
        frames: ``(T, H, W, 3)`` uint8.
        fps: frames per second.
        path: where the video lives on disk (written into the JSONL; need not exist for the builder).
        masks: optional ``(T, H, W)`` anomaly masks.
        labels: optional ``(T,)`` frame labels (default: from ``masks``, else all normal).
        tracks: optional GT anomaly tracks (default: from ``masks``).
        objects: optional boxes of all objects, ``{key: (n, 5)}``.
        dataset: the dataset name.
    """

    def __init__(self, video_id: str, frames: np.ndarray, fps: float, path: str | os.PathLike[str],
                 masks: np.ndarray | None = None, labels: np.ndarray | None = None,
                 tracks: list[np.ndarray] | None = None, objects: dict[str, np.ndarray] | None = None,
                 dataset: str = "custom") -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        self.video_id, self.dataset, self.path, self.fps = video_id, dataset, Path(path), float(fps)
        self.num_frames, self.size = int(frames.shape[0]), (int(frames.shape[1]), int(frames.shape[2]))
        self._frames = frames
        self._masks = None if masks is None else np.asarray(masks).astype(bool)
        if self._masks is not None and self._masks.shape != frames.shape[:3]:
            raise ValueError(f"masks {self._masks.shape} do not match the frames {frames.shape[:3]}")
        if labels is None:
            labels = (self._masks.reshape(self.num_frames, -1).any(axis=1) if self._masks is not None
                      else np.zeros(self.num_frames))
        self._labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self._labels) != self.num_frames:
            raise ValueError(f"{len(self._labels)} labels for {self.num_frames} frames")
        self._tracks = tracks
        self._objects = dict(objects or {})

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        return self._frames[np.asarray(indices, dtype=np.int64)]

    def anomaly_masks(self, indices: Sequence[int]) -> np.ndarray | None:
        return None if self._masks is None else self._masks[np.asarray(indices, dtype=np.int64)]

    def frame_labels(self) -> np.ndarray:
        return self._labels

    def gt_tracks(self) -> list[np.ndarray]:
        if self._tracks is None:
            self._tracks = _tracks_from_masks(self._masks) if self._masks is not None else []
        return self._tracks

    def object_tracks(self) -> dict[str, np.ndarray]:
        return self._objects


def _tracks_from_masks(masks: np.ndarray) -> list[np.ndarray]:
    from tvau_lightning.metrics.regions import masks_to_tracks

    if not masks.any():
        return []
    return masks_to_tracks(masks, np.arange(len(masks)), link_iou=0.1)


# --------------------------------------------------------------------------------------------- datasets
class ClipDatasetVideoSource(DatasetVideoSource):
    """One video of a :class:`~tvau_lightning.data.clips.VideoClipDataset` (UBnormal, ShanghaiTech), read
    through the dataset's own reader, labels, masks and GT tracks."""

    def __init__(self, dataset: VideoClipDataset, video_id: str, dataset_name: str, path: Path) -> None:
        self._ds = dataset
        self.video_id = video_id
        self.dataset = dataset_name
        self.path = Path(path)
        self.num_frames = int(dataset.num_frames(video_id))
        self.size = tuple(int(v) for v in dataset.original_size(video_id))  # type: ignore[assignment]
        self._fps: float | None = None

    @property
    def fps(self) -> float:  # type: ignore[override]
        if self._fps is None:
            self._fps = float(self._ds.reader(self.video_id).fps)
        return self._fps

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        return self._ds.reader(self.video_id).read(list(indices)).numpy()

    def anomaly_masks(self, indices: Sequence[int]) -> np.ndarray | None:
        # the shared per-dataset mask reader of VideoClipDataset (UBnormal: tracked objects' pixels;
        # ShanghaiTech: the pixel mask; normal training videos: empty)
        return self._ds._read_masks(self.video_id, np.asarray(indices, dtype=np.int64)).numpy().astype(bool)

    def frame_labels(self) -> np.ndarray:
        return np.asarray(self._ds.frame_labels(self.video_id), dtype=np.int64)

    def gt_tracks(self) -> list[np.ndarray]:
        return [np.asarray(t, dtype=np.int64).reshape(-1, 5) for t in self._ds.gt_tracks(self.video_id)]


class UBnormalVideoSource(ClipDatasetVideoSource):
    """A UBnormal video; its object-id pngs also give every object's boxes (:meth:`object_tracks`)."""

    def __init__(self, dataset, video_id: str) -> None:
        super().__init__(dataset, video_id, "ubnormal", dataset.videos[video_id].video_path)
        self._objects: dict[str, np.ndarray] | None = None

    def object_tracks(self) -> dict[str, np.ndarray]:
        """Per object id of the pngs (normal objects too), the box of its largest region on each frame."""
        if self._objects is None:
            from tvau_lightning.data.ubnormal import largest_region_box, read_id_map

            rows: dict[int, list[list[int]]] = {}
            video = self._ds.videos[self.video_id]
            for frame in range(self.num_frames):
                ids = read_id_map(video.png_path(frame))
                for object_id in np.unique(ids):
                    if object_id == 0:
                        continue
                    box = largest_region_box(ids, int(object_id))
                    if box is not None:
                        rows.setdefault(int(object_id), []).append([frame, *box])
            self._objects = {f"object:{k}": np.asarray(v, dtype=np.int64) for k, v in sorted(rows.items())}
        return self._objects


def ubnormal_videos(root: str | os.PathLike[str], split_dir: str | os.PathLike[str], split: str = "training",
                    include_normal: bool = True, video_backend: VideoBackend = "auto") -> list[DatasetVideoSource]:
    """The videos of a UBnormal split (``training``/``validation``/``test``) in its native layout."""
    from tvau_lightning.data.ubnormal import UBnormalDataset

    dataset = UBnormalDataset(root, split_dir, split=split, clip_len=1, frame_size=None,
                              include_normal=include_normal, gt_boxes=False, decode_threads=1,
                              video_backend=video_backend)
    return [UBnormalVideoSource(dataset, v) for v in dataset.video_ids]


def shanghaitech_videos(root: str | os.PathLike[str], protocol: Literal["standard", "tvau"] = "tvau",
                        split: str = "train", val_fraction: float = 0.2, split_seed: int = 0,
                        tvau_test: Literal["held_out", "all"] = "held_out", fps: float = 24.0,
                        video_backend: VideoBackend = "auto") -> list[DatasetVideoSource]:
    """The videos of a ShanghaiTech split under a protocol (``train``/``val``/``test``; see
    :class:`~tvau_lightning.data.shanghaitech.ShanghaiTechDataModule` — ``tvau`` splits the testing videos by
    video, ``standard`` trains on the normal training videos)."""
    from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule

    if split not in ("train", "val", "test"):
        raise SourceError(f"ShanghaiTech split must be train, val or test, got {split!r}")
    module = ShanghaiTechDataModule(str(root), protocol=protocol, clip_len=1, frame_size=None,
                                    val_fraction=val_fraction, split_seed=split_seed, tvau_test=tvau_test, fps=fps,
                                    gt_boxes=False, decode_threads=1, video_backend=video_backend)
    dataset = module.dataset(split)
    return [ClipDatasetVideoSource(dataset, v, "shanghaitech", dataset.videos[v].path) for v in dataset.video_ids]


# --------------------------------------------------------------------------------------------- folder
class FolderVideoSource(DatasetVideoSource):
    """A user video from a plain folder (see the module docstring for the layout)."""

    def __init__(self, path: Path, video_id: str, mask_path: Path | None, label_entry: object,
                 labels_file: Path, unlabelled: str, fps: float | None, video_backend: VideoBackend = "auto") -> None:
        from tvau_lightning.data.video import open_video

        self.video_id, self.dataset, self.path = video_id, "custom", Path(path)
        self._reader = open_video(self.path, video_backend, fps=fps, num_threads=1)
        self.num_frames = int(self._reader.num_frames)
        self.size = tuple(int(v) for v in self._reader.size)  # type: ignore[assignment]
        self.fps = float(self._reader.fps)
        self._mask_path = mask_path
        self._mask_files: dict[int, Path] | None = None
        if mask_path is not None and mask_path.is_dir():
            from tvau_lightning.data.video import list_frame_images

            self._mask_files = {}
            for image in list_frame_images(mask_path):
                number = int(re.findall(r"\d+", image.stem)[-1])  # list_frame_images checked there is one
                if number >= self.num_frames:
                    raise SourceError(f"{image}: frame number {number} but {self.path} has {self.num_frames} "
                                      "frames; mask pngs are named by 0-based frame number")
                self._mask_files[number] = image
        self._mask_array: np.ndarray | None = None
        if mask_path is not None and mask_path.is_file():
            array = np.load(mask_path, mmap_mode="r", allow_pickle=False)
            if array.shape != (self.num_frames, *self.size):
                raise SourceError(f"{mask_path}: mask shape {array.shape} does not match the video "
                                  f"({self.num_frames} frames of {self.size[0]}x{self.size[1]}); save it as (T, H, W)")
            self._mask_array = array
        self._labels = self._resolve_labels(label_entry, labels_file, unlabelled)
        self._tracks: list[np.ndarray] | None = None

    @property
    def has_masks(self) -> bool:
        return self._mask_path is not None

    def _all_masks(self) -> np.ndarray:
        return self.anomaly_masks(range(self.num_frames))  # type: ignore[return-value]

    def _resolve_labels(self, entry: object, labels_file: Path, unlabelled: str) -> np.ndarray:
        where = f"{labels_file} entry {self.video_id!r}"
        if entry is None:
            if self.has_masks:
                return self._all_masks().reshape(self.num_frames, -1).any(axis=1).astype(np.int64)
            if unlabelled == "normal":
                return np.zeros(self.num_frames, dtype=np.int64)
            raise SourceError(
                f"video {self.path} has no labels: add \"{self.video_id}\": 0 (normal) or a list of abnormal "
                f"[start, end] frame ranges to {labels_file}, add masks/{self.video_id}.npy, or pass "
                "--unlabelled normal to treat unlabelled videos as normal"
            )
        if entry in (0, False):
            return np.zeros(self.num_frames, dtype=np.int64)
        if entry in (1, True):
            if not self.has_masks:
                raise SourceError(f"{where} is 1 (abnormal) but the video has no masks to tell which frames; "
                                  "give the abnormal frame ranges instead: [[start, end], ...]")
            labels = self._all_masks().reshape(self.num_frames, -1).any(axis=1).astype(np.int64)
            if not labels.any():
                raise SourceError(f"{where} is 1 (abnormal) but its masks are empty; fix the masks or the label")
            return labels
        if isinstance(entry, list):
            labels = np.zeros(self.num_frames, dtype=np.int64)
            for item in entry:
                if (not isinstance(item, list) or len(item) != 2
                        or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
                        or not 0 <= item[0] <= item[1] < self.num_frames):
                    raise SourceError(f"{where}: {item!r} is not a [start, end] range with 0 <= start <= end < "
                                      f"{self.num_frames} (0-based, inclusive)")
                labels[item[0]: item[1] + 1] = 1
            return labels
        raise SourceError(f"{where} must be 0, 1 or a list of [start, end] ranges, got {entry!r}")

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        return self._reader.read(list(indices)).numpy()

    def anomaly_masks(self, indices: Sequence[int]) -> np.ndarray | None:
        indices = np.asarray(list(indices), dtype=np.int64)
        if self._mask_array is not None:
            return np.asarray(self._mask_array[indices]) != 0
        if self._mask_files is None:
            return None
        from PIL import Image

        out = np.zeros((len(indices), *self.size), dtype=bool)
        for i, frame in enumerate(indices.tolist()):
            image_path = self._mask_files.get(frame)
            if image_path is None:
                continue
            with Image.open(image_path) as image:
                mask = np.asarray(image)
            if mask.ndim == 3:
                mask = mask.max(axis=2)
            if mask.shape != self.size:
                raise SourceError(f"{image_path} is {mask.shape[0]}x{mask.shape[1]} but {self.path} is "
                                  f"{self.size[0]}x{self.size[1]}; masks must have the video's size")
            out[i] = mask != 0
        return out

    def frame_labels(self) -> np.ndarray:
        return self._labels

    def gt_tracks(self) -> list[np.ndarray]:
        if self._tracks is None:
            self._tracks = _tracks_from_masks(self._all_masks()) if self.has_masks else []
        return self._tracks


def folder_videos(root: str | os.PathLike[str], fps: float | None = None,
                  unlabelled: Literal["error", "normal"] = "error",
                  video_backend: VideoBackend = "auto") -> list[DatasetVideoSource]:
    """The videos of a plain folder (layout in the module docstring), sorted by name.

    Args:
        root: the folder holding ``videos/`` (and optionally ``masks/``, ``labels.json``).
        fps: frame rate of frame-folder videos (video files know theirs); default 24.
        unlabelled: what a video without labels or masks is: an ``error`` (default) or ``normal``.
        video_backend: decoder of video files (``auto``: decord if installed, else PyAV).
    """
    root = Path(root)
    videos_dir = root / "videos"
    if not videos_dir.is_dir():
        raise SourceError(f"{videos_dir} not found; a user-video folder holds videos/<name>.mp4 (or frame folders "
                          "videos/<name>/000.jpg …), optional masks/ and labels.json — see docs/builder.md")
    if unlabelled not in ("error", "normal"):
        raise ValueError(f"unlabelled must be 'error' or 'normal', got {unlabelled!r}")
    labels_file = root / "labels.json"
    labels: dict[str, object] = {}
    if labels_file.is_file():
        try:
            labels = json.loads(labels_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SourceError(f"{labels_file} is not valid JSON ({err.msg} at line {err.lineno})") from err
        if not isinstance(labels, dict):
            raise SourceError(f"{labels_file} must be a JSON object {{\"<video name>\": 0 | 1 | [[start, end]]}}")
    entries = sorted(p for p in videos_dir.iterdir()
                     if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES))
    if not entries:
        raise SourceError(f"{videos_dir} holds no videos ({', '.join(VIDEO_SUFFIXES)}) or frame folders")
    names = [p.stem if p.is_file() else p.name for p in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceError(f"{videos_dir}: several files share the name(s) {duplicates}; keep one per name")
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise SourceError(f"{labels_file} names video(s) {unknown[:5]} that are not in {videos_dir}")
    sources: list[DatasetVideoSource] = []
    for path, name in zip(entries, names):
        mask_path = None
        for candidate in (root / "masks" / f"{name}.npy", root / "masks" / name):
            if candidate.exists():
                mask_path = candidate
                break
        sources.append(FolderVideoSource(path, name, mask_path, labels.get(name), labels_file, unlabelled, fps,
                                         video_backend))
    return sources
