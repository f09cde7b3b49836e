"""UBnormal in its native layout (SPEC §5): mp4 videos, per-frame object-id pngs, tracks files, split lists.

```
<root>/Scene{s}/{video}.mp4
<root>/Scene{s}/{video}_annotations/{video}_{frame:04d}_gt.png   8-bit object ids, 0 = background (0-based frames)
<root>/Scene{s}/{video}_annotations/{video}_tracks.txt           abnormal videos: "object_id,start,end" per line,
                                                                 0-based inclusive; {video}_new_tracks.txt overrides
<split_dir>/{abnormal,normal}_{training,validation,test}_video_names.txt
```

A frame is abnormal inside any track's range. The anomaly mask of a frame holds the pixels of the objects
whose track covers that frame; every other object in the png (people walking normally) is normal. The
RBDC/TBDC ground truth is one track per tracks line: per frame of its range, the box of the object's largest
8-connected region, ``(x_min, y_min, x_max, y_max)`` inclusive, in video pixels.

Listing, split files and tracks files are checked when a dataset is built; the video's frame count and
size against its pngs are checked when the video is first read.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from tvau_lightning.data.clips import (
    DatasetFormatError,
    Sampling,
    VideoClipDataModule,
    VideoClipDataset,
    check_clip_args,
)
from tvau_lightning.data.transforms import FrameResizeMode
from tvau_lightning.data.video import DecordVideo, VideoReadError

#: split names as the DataModule arguments may spell them → the spelling in the benchmark's file names
SPLIT_ALIASES = {"train": "training", "training": "train", "val": "validation", "validation": "val"}
_SCENE = re.compile(r"scene_?(\d+)", re.IGNORECASE)
_PNG = re.compile(r"_(\d+)_gt\.png$")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Track:
    """One line of a tracks file: object ``object_id`` is abnormal in frames ``start..end`` (inclusive)."""

    object_id: int
    start: int
    end: int

    def covers(self, frame: int) -> bool:
        return self.start <= frame <= self.end


@dataclass(frozen=True)
class UBnormalVideo:
    """Where one UBnormal video and its annotations live, as found when the split is listed."""

    video_id: str
    video_path: Path
    annotation_dir: Path
    num_frames: int
    abnormal: bool
    tracks: tuple[Track, ...]
    tracks_path: Path | None

    def png_path(self, frame: int) -> Path:
        return self.annotation_dir / f"{self.video_id}_{frame:04d}_gt.png"


def parse_tracks_file(path: str | os.PathLike[str]) -> list[Track]:
    """Read a UBnormal tracks file: one ``object_id,start,end`` per line (numbers may be written as floats).

    Raises:
        DatasetFormatError: a line is not three non-negative integers with ``start <= end`` (names the line).
    """
    path = Path(path)
    tracks = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(parts) != 3 or len(values) != 3 or any(v != int(v) or v < 0 for v in values):
            raise DatasetFormatError(
                f"{path} line {number}: expected 'object_id,start,end' (three non-negative integers), got {line!r}; "
                "fix the line or restore the file from the UBnormal archive"
            )
        object_id, start, end = (int(v) for v in values)
        if start > end:
            raise DatasetFormatError(f"{path} line {number}: start {start} is after end {end} in {line!r}; fix the line")
        tracks.append(Track(object_id, start, end))
    return tracks


def read_id_map(path: Path) -> np.ndarray:
    """An object-id png as a ``(H, W)`` integer array (palette indices for 'P' images, values for 'L'/'I')."""
    try:
        with Image.open(path) as image:
            ids = np.asarray(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation png not found: {path}") from None
    except Exception as error:
        raise VideoReadError(f"cannot read annotation png {path}: {error} — the file is corrupt; replace it") from error
    if ids.ndim == 3:  # an id map saved as RGB(A) grey: all colour channels must agree
        if not (ids[..., :3] == ids[..., :1]).all():
            raise DatasetFormatError(
                f"{path} is a colour image; UBnormal annotations are single-channel object-id maps (0 = background)"
            )
        ids = ids[..., 0]
    return ids


def largest_region_box(ids: np.ndarray, object_id: int) -> tuple[int, int, int, int] | None:
    """Inclusive ``(x_min, y_min, x_max, y_max)`` of the largest 8-connected region of ``object_id``; None if absent."""
    region = ids == object_id
    if not region.any():
        return None
    labels, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
    if count > 1:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        region = labels == (int(np.argmax(sizes)) + 1)
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def scene_of(video_id: str) -> int | None:
    """The scene number in a UBnormal video name (``abnormal_scene_4_scenario_2_fog`` → 4), if there is one."""
    match = _SCENE.search(video_id)
    return int(match.group(1)) if match else None


def split_file(split_dir: Path, kind: str, split: str) -> Path:
    """``{kind}_{split}_video_names.txt`` in ``split_dir``, accepting ``train``/``training`` and ``val``/``validation``."""
    candidates = [split_dir / f"{kind}_{split}_video_names.txt"]
    if split in SPLIT_ALIASES:
        candidates.append(split_dir / f"{kind}_{SPLIT_ALIASES[split]}_video_names.txt")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"split file not found: {candidates[0]}"
        + (f" (nor {candidates[1].name})" if len(candidates) > 1 else "")
        + "; point split_dir at the folder with the benchmark's *_video_names.txt files "
        "(the 'scripts' folder of the UBnormal repository) or fix the split name"
    )


def read_split_file(path: Path) -> list[str]:
    """Video names of a split file, one per line (blank lines and ``#`` comments skipped, ``.mp4`` removed)."""
    names = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        names.append(name[:-4] if name.lower().endswith(".mp4") else name)
    return names


class UBnormalDataset(VideoClipDataset):
    """The clips of one UBnormal split (``training``, ``validation``, ``test``).

    Args:
        root: the dataset folder holding ``Scene1`` … ``Scene29``.
        split_dir: the folder with ``{abnormal,normal}_{split}_video_names.txt``.
        split: the split name as in the file names (``training``/``train``, ``validation``/``val``, ``test``).
        include_normal: add the split's normal videos (needed for frame AUC and the RBDC/TBDC false-positive rate).
        decode_threads: decord threads per video (0 = automatic).
        clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes: see
            :class:`~tvau_lightning.data.clips.VideoClipDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split_dir: str | os.PathLike[str],
        split: str = "test",
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        sampling: Sampling = "eval",
        clip_step: int | None = None,
        include_normal: bool = True,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        decode_threads: int = 0,
    ) -> None:
        super().__init__(clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes)
        self.root = Path(root)
        self.split_dir = Path(split_dir)
        self.split = split
        self.decode_threads = decode_threads
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"UBnormal root not found: {self.root}; set root to the folder holding Scene1 … Scene29"
            )
        if not self.split_dir.is_dir():
            raise FileNotFoundError(
                f"UBnormal split folder not found: {self.split_dir}; set split_dir to the folder with the "
                "*_video_names.txt files (the 'scripts' folder of the UBnormal repository)"
            )
        self._scene_index: dict[str, Path] | None = None
        self._sizes: dict[str, tuple[int, int]] = {}
        self.videos: dict[str, UBnormalVideo] = {}
        kinds = ("abnormal", "normal") if include_normal else ("abnormal",)
        for kind in kinds:
            listing = split_file(self.split_dir, kind, split)
            for name in read_split_file(listing):
                if name in self.videos:
                    continue
                self.videos[name] = self._describe(name, kind == "abnormal", listing)
        if not self.videos:
            raise DatasetFormatError(f"UBnormal split {split!r} in {self.split_dir} lists no videos")
        self._video_ids = list(self.videos)
        self._build_clips()

    # ----------------------------------------------------------------- listing (cheap, at construction)
    def _find_video(self, name: str, listing: Path) -> Path:
        scene = scene_of(name)
        if scene is not None:
            direct = self.root / f"Scene{scene}" / f"{name}.mp4"
            if direct.is_file():
                return direct
        if self._scene_index is None:  # irregular name or unusual placement: search every Scene folder once
            self._scene_index = {p.stem: p for p in sorted(self.root.glob("Scene*/*.mp4"))}
        if name in self._scene_index:
            return self._scene_index[name]
        where = f"{self.root}/Scene{scene}/{name}.mp4" if scene is not None else f"{self.root}/Scene*/{name}.mp4"
        raise FileNotFoundError(
            f"video {name!r} is listed in {listing} but not found at {where} nor in any Scene folder of {self.root}; "
            "restore the video or remove it from the split file"
        )

    def _describe(self, name: str, abnormal: bool, listing: Path) -> UBnormalVideo:
        video_path = self._find_video(name, listing)
        annotation_dir = video_path.parent / f"{name}_annotations"
        if not annotation_dir.is_dir():
            raise FileNotFoundError(
                f"annotation folder not found: {annotation_dir} (video {video_path}); every UBnormal video needs "
                "its {video}_annotations folder of per-frame *_gt.png files — restore it from the archive"
            )
        numbers = []
        for png in annotation_dir.glob(f"{name}_*_gt.png"):
            match = _PNG.search(png.name)
            if match and png.name == f"{name}_{match.group(1)}_gt.png":
                numbers.append(int(match.group(1)))
        if not numbers:
            raise DatasetFormatError(
                f"{annotation_dir} holds no {name}_XXXX_gt.png files; restore the annotations from the archive"
            )
        numbers.sort()
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
            raise DatasetFormatError(
                f"{annotation_dir}: the *_gt.png frames must be numbered 0 … N-1 without gaps; missing "
                f"{[f'{name}_{m:04d}_gt.png' for m in missing[:5]]}{' …' if len(missing) > 5 else ''} — restore them"
            )
        tracks: tuple[Track, ...] = ()
        tracks_path = None
        if abnormal:
            new_tracks = annotation_dir / f"{name}_new_tracks.txt"
            old_tracks = annotation_dir / f"{name}_tracks.txt"
            tracks_path = new_tracks if new_tracks.is_file() else old_tracks
            if not tracks_path.is_file():
                raise FileNotFoundError(
                    f"tracks file not found: {old_tracks}; abnormal video {name!r} (listed in {listing}) needs one "
                    "('object_id,start,end' per line) — restore it, or list the video as normal"
                )
            tracks = tuple(parse_tracks_file(tracks_path))
        return UBnormalVideo(name, video_path, annotation_dir, len(numbers), abnormal, tracks, tracks_path)

    # ----------------------------------------------------------------- per-video accessors
    def num_frames(self, video_id: str) -> int:
        return self.videos[video_id].num_frames

    def original_size(self, video_id: str) -> tuple[int, int]:
        if video_id not in self._sizes:
            png = self.videos[video_id].png_path(0)
            with Image.open(png) as image:
                width, height = image.size
            self._sizes[video_id] = (int(height), int(width))
        return self._sizes[video_id]

    def tracks(self, video_id: str) -> tuple[Track, ...]:
        """The tracks-file lines of the video (empty for normal videos)."""
        return self.videos[video_id].tracks

    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        labels = np.zeros(self.num_frames(video_id), dtype=np.int64)
        for track in self.tracks(video_id):
            labels[track.start : track.end + 1] = 1  # a range past the last frame is clipped
        return labels

    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        tracks = self.tracks(video_id)
        last = self.num_frames(video_id) - 1
        frames = sorted({f for t in tracks for f in range(t.start, min(t.end, last) + 1)})
        rows: list[list[list[int]]] = [[] for _ in tracks]
        for frame in frames:
            ids = read_id_map(self.videos[video_id].png_path(frame))
            for k, track in enumerate(tracks):
                box = largest_region_box(ids, track.object_id) if track.covers(frame) else None
                if box is not None:
                    rows[k].append([frame, *box])
        return [np.asarray(r, dtype=np.int64).reshape(-1, 5) for r in rows]

    def _clip_gt_boxes(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        if video_id in self._tracks:
            return super()._clip_gt_boxes(video_id, indices)
        # computed from the clip's own pngs (the whole video's tracks are not needed for a clip)
        tracks = self.tracks(video_id)
        rows = []
        for frame in indices.tolist():
            active = [(k, t) for k, t in enumerate(tracks) if t.covers(frame)]
            if not active:
                continue
            ids = self._id_map(video_id, frame)
            for k, track in active:
                box = largest_region_box(ids, track.object_id)
                if box is not None:
                    rows.append([frame, k, *box])
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 6)

    def _id_map(self, video_id: str, frame: int) -> np.ndarray:
        """The object-id map of a frame, checked against the video's size; the last clip's maps are cached
        (masks and GT boxes of one item read the same pngs)."""
        cache: OrderedDict[tuple[str, int], np.ndarray] = self.__dict__.setdefault("_id_cache", OrderedDict())
        key = (video_id, frame)
        if key in cache:
            return cache[key]
        path = self.videos[video_id].png_path(frame)
        ids = read_id_map(path)
        expected = self.original_size(video_id)
        if ids.shape != expected:
            raise DatasetFormatError(
                f"{path} is {ids.shape[0]}x{ids.shape[1]} but {self.videos[video_id].png_path(0).name} is "
                f"{expected[0]}x{expected[1]}; all annotation pngs of a video must have the video's size"
            )
        cache[key] = ids
        while len(cache) > self.clip_len:
            cache.popitem(last=False)
        return ids

    # ----------------------------------------------------------------- reading (lazy, per item)
    def _open_reader(self, video_id: str) -> DecordVideo:
        return DecordVideo(self.videos[video_id].video_path, num_threads=self.decode_threads)

    def _check_reader(self, video_id: str, reader: DecordVideo) -> None:
        video = self.videos[video_id]
        if reader.num_frames != video.num_frames:
            raise DatasetFormatError(
                f"{video.video_path} has {reader.num_frames} frames but {video.annotation_dir} holds "
                f"{video.num_frames} *_gt.png files; one png per frame is required — re-extract the video or "
                "restore the annotations"
            )
        if reader.size != self.original_size(video_id):
            h, w = self.original_size(video_id)
            raise DatasetFormatError(
                f"{video.video_path} is {reader.size[0]}x{reader.size[1]} but its annotation pngs in "
                f"{video.annotation_dir} are {h}x{w}; masks must have the video's size"
            )

    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        tracks = self.tracks(video_id)
        height, width = self.original_size(video_id)
        masks = np.zeros((len(indices), height, width), dtype=bool)
        for i, frame in enumerate(indices.tolist()):
            active = [t.object_id for t in tracks if t.covers(frame)]
            if active:  # frames no track covers are normal: their pngs need not be read
                masks[i] = np.isin(self._id_map(video_id, frame), active)
        return torch.from_numpy(masks)


class UBnormalDataModule(VideoClipDataModule):
    """UBnormal train/validation/test splits as clip batches (:class:`~tvau_lightning.data.types.ClipBatch`).

    The train split uses overlapping windows (shuffled); validation/test/predict cover every frame of every
    video exactly once. ``predict`` reads the test split.

    Args:
        root: the dataset folder holding ``Scene1`` … ``Scene29``.
        split_dir: the folder with ``{abnormal,normal}_{split}_video_names.txt`` (the UBnormal repository's
            ``scripts`` folder).
        clip_len: frames per clip.
        frame_stride: spacing of a clip's frames in the source video.
        frame_size: ``(H, W)`` frames and masks are resized to (multiples of 28 suit Qwen2.5-VL); ``None``
            keeps the source size (batch_size 1 then, UBnormal's videos differ in size).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
        train_split: split-file name of the training videos (the benchmark's files say ``training``;
            ``train`` is accepted too).
        val_split: split-file name of the validation videos.
        test_split: split-file name of the test videos.
        include_normal: train on the normal videos too (all-normal clips, empty masks).
        include_normal_eval: evaluate on the normal videos too (the published protocol does).
        train_clip_step: frames between training window starts (default half a window).
        resize_mode: frame resampling filter (masks are always nearest).
        gt_boxes: attach each clip's RBDC/TBDC ground-truth boxes.
        decode_threads: decord threads per video (0 = automatic; 1 is best with several workers).
        pin_memory: pin batches in page-locked memory (faster host→GPU copies).
    """

    def __init__(
        self,
        root: str,
        split_dir: str,
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        batch_size: int = 1,
        num_workers: int = 0,
        train_split: str = "training",
        val_split: str = "validation",
        test_split: str = "test",
        include_normal: bool = True,
        include_normal_eval: bool = True,
        train_clip_step: int | None = None,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        decode_threads: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
        self.save_hyperparameters()
        check_clip_args(clip_len, frame_stride, frame_size, train_clip_step)
        self.root = root
        self.split_dir = split_dir
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.include_normal = include_normal
        self.include_normal_eval = include_normal_eval
        self.train_clip_step = train_clip_step
        self.resize_mode = resize_mode
        self.gt_boxes = gt_boxes
        self.decode_threads = decode_threads

    def _make_dataset(self, split: str) -> UBnormalDataset:
        train = split == "train"
        return UBnormalDataset(
            self.root,
            self.split_dir,
            split=self.split_names[split],
            clip_len=self.clip_len,
            frame_stride=self.frame_stride,
            frame_size=self.frame_size,
            sampling="train" if train else "eval",
            clip_step=self.train_clip_step,
            include_normal=self.include_normal if train else self.include_normal_eval,
            resize_mode=self.resize_mode,
            gt_boxes=self.gt_boxes,
            decode_threads=self.decode_threads,
        )
