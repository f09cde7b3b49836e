"""ShanghaiTech Campus in its native layout (SPEC §5), under two protocols.

```
<root>/training/videos/{scene:02d}_{idx:03d}.avi          normal only
<root>/testing/frames/{scene:02d}_{idx:04d}/{k:03d}.jpg   0-based frame names
<root>/testing/test_frame_mask/{video}.npy                (T,) 0/1
<root>/testing/test_pixel_mask/{video}.npy                (T, 480, 856) 0/1 — some copies are (H, W, T)
```

* ``standard``: train on the normal training videos (labels 0, empty masks); validate and test on all
  testing videos.
* ``tvau`` (the paper's supervised re-partition): the *testing* videos are split **by video** with a seeded
  permutation into train (``1 - val_fraction``) and val (``val_fraction``) — no video is in both, so no clip
  leaks (the author's prototype split by clip and leaked). ``tvau_test="held_out"`` (default) tests on the
  val videos only, an honest held-out evaluation; ``tvau_test="all"`` tests on all testing videos as the
  paper reported, which *overlaps the training videos* — use it only to compare with published numbers.

RBDC/TBDC ground truth: the literature's ShanghaiTech RBDC/TBDC numbers use the hand-made track files
published with the reference evaluation (``lilygeorgescu/AED``, ``annotations/ShanghaiTech/{video}.txt``): one
line per box, ``track_id,frame,x_min,y_min,x_max,y_max``, inclusive pixels, 0-based frames. Point
``gt_tracks_dir`` at that folder: each ``track_id`` of a video's file is one track (rows sorted by frame; a
few published files list a track's rows in two out-of-order runs), a video without a file has no tracks.
Without ``gt_tracks_dir`` the tracks are derived from the pixel masks (connected components per frame, linked
across consecutive frames by box IoU ≥ 0.1, :func:`tvau_lightning.metrics.regions.masks_to_tracks`) — touching
objects merge and a track breaks where its object splits, so such numbers are not comparable with published
ones (a warning says so once). Sources of every convention: ``docs/datasets.md``.
Pixel masks are memory-mapped; only a clip's frames are read per item.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tvau_lightning.data.clips import (
    DatasetFormatError,
    DatasetWarning,
    EvalLoading,
    ResizeOn,
    Sampling,
    VideoClipDataModule,
    VideoClipDataset,
    check_clip_args,
)
from tvau_lightning.data.transforms import FrameResizeMode
from tvau_lightning.data.video import (
    DEFAULT_FOLDER_FPS,
    FrameFolderVideo,
    VideoBackend,
    VideoReader,
    list_frame_images,
    open_video,
)

Protocol = Literal["standard", "tvau"]
MaskLayout = Literal["THW", "HWT"]
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


def pixel_mask_layout(shape: tuple[int, ...], num_frames: int, frame_size: tuple[int, int], path: Path) -> MaskLayout:
    """Whether a pixel-mask array is stored ``(T, H, W)`` or ``(H, W, T)``, from its shape and the video's.

    Raises:
        DatasetFormatError: the shape fits neither layout (or both, which cannot be told apart).
    """
    height, width = frame_size
    fits = []
    if tuple(shape) == (num_frames, height, width):
        fits.append("THW")
    if tuple(shape) == (height, width, num_frames):
        fits.append("HWT")
    if len(fits) == 1:
        return fits[0]  # type: ignore[return-value]
    if len(fits) == 2:
        raise DatasetFormatError(
            f"{path}: shape {tuple(shape)} fits both (T, H, W) and (H, W, T) for a {num_frames}-frame "
            f"{height}x{width} video; save it as (T, H, W) to remove the ambiguity"
        )
    raise DatasetFormatError(
        f"{path}: pixel mask shape {tuple(shape)} does not match the video ({num_frames} frames of "
        f"{height}x{width}); expected (T, H, W) = {(num_frames, height, width)} or (H, W, T) = "
        f"{(height, width, num_frames)} — check the mask belongs to this video and is complete"
    )


def read_track_file(path: str | os.PathLike[str]) -> list[tuple[int, np.ndarray]]:
    """The tracks of one published RBDC/TBDC track file, as ``(track_id, rows)`` sorted by ``track_id``.

    Each line is ``track_id,frame,x_min,y_min,x_max,y_max`` (non-negative integers, also accepted in float
    notation such as numpy's ``savetxt`` default writes; blank lines skipped). ``rows`` is ``(n, 5)`` int64
    ``(frame, x_min, y_min, x_max, y_max)`` sorted by frame.

    Raises:
        DatasetFormatError: a malformed line, a box whose min corner is past its max corner, or one track with
            two boxes on the same frame — naming the file, the line and the fix.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    rows: dict[int, list[list[int]]] = {}
    first_line: dict[tuple[int, int], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(parts) != 6 or len(values) != 6 or any(not np.isfinite(v) or v != int(v) or v < 0 for v in values):
            raise DatasetFormatError(
                f"{path} line {number}: expected 'track_id,frame,x_min,y_min,x_max,y_max' (six non-negative integers, "
                f"comma-separated), got {line!r}; fix the line or restore the file from the published track files"
            )
        track_id, frame, x1, y1, x2, y2 = (int(v) for v in values)
        if x1 > x2 or y1 > y2:
            raise DatasetFormatError(
                f"{path} line {number}: box ({x1}, {y1}, {x2}, {y2}) has its min corner past its max corner; the "
                "columns are track_id,frame,x_min,y_min,x_max,y_max — fix the line"
            )
        if (track_id, frame) in first_line:
            raise DatasetFormatError(
                f"{path} line {number}: track {track_id} already has a box on frame {frame} (line "
                f"{first_line[(track_id, frame)]}); one box per track and frame — remove one of the two lines"
            )
        first_line[(track_id, frame)] = number
        rows.setdefault(track_id, []).append([frame, x1, y1, x2, y2])
    out = []
    for track_id in sorted(rows):
        array = np.asarray(rows[track_id], dtype=np.int64).reshape(-1, 5)
        out.append((track_id, array[np.argsort(array[:, 0], kind="stable")]))
    return out


@dataclass(frozen=True)
class ShanghaiTechVideo:
    """Where one ShanghaiTech video lives and what was learnt about it when listing."""

    video_id: str
    part: Literal["training", "testing"]
    path: Path
    num_frames: int
    size: tuple[int, int]
    fps: float
    frame_mask_path: Path | None = None
    pixel_mask_path: Path | None = None
    mask_layout: MaskLayout = "THW"


def testing_video_ids(root: str | os.PathLike[str]) -> list[str]:
    """The testing videos (frame folders under ``testing/frames``), sorted."""
    frames = Path(root) / "testing" / "frames"
    if not frames.is_dir():
        raise FileNotFoundError(
            f"ShanghaiTech testing frames not found: {frames}; set root to the folder holding training/ and testing/"
        )
    ids = sorted(p.name for p in frames.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not ids:
        raise DatasetFormatError(f"{frames} holds no video folders ({{scene:02d}}_{{idx:04d}}/000.jpg …)")
    return ids


def training_video_paths(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The normal training videos under ``training/videos``, by id (file stem), sorted."""
    folder = Path(root) / "training" / "videos"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"ShanghaiTech training videos not found: {folder}; the standard protocol trains on them "
            "(or use protocol='tvau', which trains on testing videos)"
        )
    paths = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    if not paths:
        raise DatasetFormatError(f"{folder} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
    return paths


def split_by_video(video_ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of videos into ``(train, val)``: no video in both, at least one in each (when possible)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = sorted(video_ids)
    if len(ids) < 2:
        raise DatasetFormatError(f"the tvau protocol needs at least 2 testing videos to split, got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = min(len(ids) - 1, max(1, int(round(val_fraction * len(ids)))))
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    return train, val


class ShanghaiTechDataset(VideoClipDataset):
    """Clips of a set of ShanghaiTech videos, training (normal ``.avi``) or testing (frame folders + masks).

    Args:
        root: the dataset folder holding ``training/`` and ``testing/``.
        part: ``training`` (normal videos, labels 0, empty masks, no tracks) or ``testing``.
        video_ids: the videos to use (default: all of ``part``).
        fps: frame rate reported for testing frame folders (they carry none; the campus videos are 24 fps).
        gt_tracks_dir: the folder of published RBDC/TBDC track files (``{video}.txt``); None derives the tracks
            from the pixel masks (not comparable with published numbers; a warning says so once).
        strict: make tolerated inconsistencies of the track files (boxes on frames past the video's end, abnormal
            videos without a track file) errors instead of warnings.
        decode_threads: decoder threads per training video (0 = automatic).
        video_backend: decoder of the training videos (``auto``: decord if installed, else PyAV).
        clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes, sample_fps: see
            :class:`~tvau_lightning.data.clips.VideoClipDataset` (``sample_fps`` reads a training video's own rate
            and ``fps`` for the testing frame folders).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        part: Literal["training", "testing"] = "testing",
        video_ids: list[str] | None = None,
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (476, 868),
        sampling: Sampling = "eval",
        clip_step: int | None = None,
        fps: float = DEFAULT_FOLDER_FPS,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        decode_threads: int = 0,
        video_backend: VideoBackend = "auto",
        gt_tracks_dir: str | os.PathLike[str] | None = None,
        strict: bool = False,
        sample_fps: float | None = None,
    ) -> None:
        super().__init__(clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes,
                         video_backend=video_backend, sample_fps=sample_fps)
        self.root = Path(root)
        self.gt_tracks_dir = None if gt_tracks_dir is None else Path(gt_tracks_dir)
        self.strict = strict
        self._published: dict[str, list[np.ndarray]] = {}
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"ShanghaiTech root not found: {self.root}; set root to the folder holding training/ and testing/"
            )
        if part not in ("training", "testing"):
            raise ValueError(f"part must be 'training' or 'testing', got {part!r}")
        self.part = part
        self.fps = float(fps)
        self.decode_threads = decode_threads
        self.videos: dict[str, ShanghaiTechVideo] = {}
        if part == "training":
            available = training_video_paths(self.root)
            for video_id in self._select(video_ids, list(available)):
                self.videos[video_id] = self._describe_training(video_id, available[video_id])
        else:
            for video_id in self._select(video_ids, testing_video_ids(self.root)):
                self.videos[video_id] = self._describe_testing(video_id)
            if self.gt_tracks_dir is not None:
                self._read_published_tracks()
        self._video_ids = list(self.videos)
        self._build_clips()

    def _select(self, requested: list[str] | None, available: list[str]) -> list[str]:
        if requested is None:
            return available
        missing = [v for v in requested if v not in set(available)]
        if missing:
            where = self.root / self.part / ("videos" if self.part == "training" else "frames")
            raise FileNotFoundError(f"ShanghaiTech {self.part} video(s) {missing[:5]} not found in {where}")
        return list(requested)

    # ----------------------------------------------------------------- listing (cheap, at construction)
    def _describe_training(self, video_id: str, path: Path) -> ShanghaiTechVideo:
        reader = open_video(path, self.video_backend, num_threads=1)  # the frame count is needed to plan clips
        return ShanghaiTechVideo(video_id, "training", path, reader.num_frames, reader.size, reader.fps)

    def _describe_testing(self, video_id: str) -> ShanghaiTechVideo:
        testing = self.root / "testing"
        folder = testing / "frames" / video_id
        images = list_frame_images(folder)
        if not images:
            raise DatasetFormatError(f"{folder} holds no frame images (000.jpg, 001.jpg, …)")
        size = FrameFolderVideo(folder, fps=self.fps).size
        frame_mask_path = testing / "test_frame_mask" / f"{video_id}.npy"
        pixel_mask_path = testing / "test_pixel_mask" / f"{video_id}.npy"
        for path, what in ((frame_mask_path, "frame mask (T,) 0/1"), (pixel_mask_path, "pixel mask (T, H, W) 0/1")):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{what} not found: {path} (video {folder}); restore it from the ShanghaiTech archive"
                )
        frame_mask = self._load_npy(frame_mask_path, mmap=False)
        if frame_mask.ndim != 1 or len(frame_mask) != len(images):
            raise DatasetFormatError(
                f"{frame_mask_path}: frame mask shape {frame_mask.shape} does not match {len(images)} frames in "
                f"{folder}; expected ({len(images)},) — check the mask belongs to this video"
            )
        pixel_mask = self._load_npy(pixel_mask_path, mmap=True)  # the header only: the shape is cheap
        layout = pixel_mask_layout(pixel_mask.shape, len(images), size, pixel_mask_path)
        self._labels[video_id] = (frame_mask > 0).astype(np.int64)
        return ShanghaiTechVideo(
            video_id, "testing", folder, len(images), size, self.fps, frame_mask_path, pixel_mask_path, layout
        )

    @staticmethod
    def _load_npy(path: Path, mmap: bool) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as error:
            raise DatasetFormatError(f"cannot read {path}: {error} — the file is corrupt or not a .npy array") from error

    def _read_published_tracks(self) -> None:
        """Read ``gt_tracks_dir/{video}.txt`` of every testing video (a video without a file has no tracks)."""
        folder = self.gt_tracks_dir
        if not folder.is_dir():
            raise FileNotFoundError(
                f"gt_tracks_dir not found: {folder}; point it at the folder of published ShanghaiTech track files "
                "(annotations/ShanghaiTech of the RBDC/TBDC reference evaluation, one {video}.txt per testing video)"
            )
        late, untracked = [], []
        for video_id, video in self.videos.items():
            path = folder / f"{video_id}.txt"
            if not path.is_file():
                if self._labels[video_id].any():
                    untracked.append(f"{video_id}: no {path.name}, but its frame mask has "
                                     f"{int(self._labels[video_id].sum())} abnormal frames → no GT tracks")
                self._published[video_id] = []
                continue
            tracks = []
            for track_id, rows in read_track_file(path):
                past = rows[:, 0] >= video.num_frames
                if past.any():
                    late.append(f"{video_id}: track {track_id} of {path} has {int(past.sum())} boxes on frames "
                                f"{int(rows[past, 0].min())}…{int(rows[past, 0].max())}, past the last frame "
                                f"{video.num_frames - 1} → dropped")
                    rows = rows[~past]
                if len(rows):
                    tracks.append(rows)
            self._published[video_id] = tracks
        if untracked and not any((folder / f"{v}.txt").is_file() for v in self.videos):
            raise DatasetFormatError(
                f"gt_tracks_dir {folder} holds no track file of any of the {len(self.videos)} testing videos "
                f"(expected e.g. {folder / (next(iter(self.videos)) + '.txt')}); point it at the published "
                "ShanghaiTech track files"
            )
        for problems, title in ((late, "track boxes past the end of their video"),
                                (untracked, "abnormal testing videos without a track file")):
            if not problems:
                continue
            message = f"{title} ({len(problems)} videos):\n  " + "\n  ".join(problems)
            if self.strict:
                raise DatasetFormatError(f"{message}\nfix or restore the track files in {folder}")
            warnings.warn(f"{message}\nstrict=True makes this an error", DatasetWarning, stacklevel=3)

    # ----------------------------------------------------------------- per-video accessors
    def num_frames(self, video_id: str) -> int:
        return self.videos[video_id].num_frames

    def video_fps(self, video_id: str) -> float:
        return self.videos[video_id].fps

    def video_name(self, video_id: str) -> str:
        video = self.videos[video_id]
        return str(video.path) + (f" (frame folder, fps={video.fps:g})" if video.part == "testing" else "")

    def original_size(self, video_id: str) -> tuple[int, int]:
        return self.videos[video_id].size

    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        return np.zeros(self.num_frames(video_id), dtype=np.int64)  # training videos; testing ones are listed

    def pixel_masks(self, video_id: str, indices: np.ndarray | None = None) -> np.ndarray:
        """``(n, H, W)`` bool pixel masks of the frames ``indices`` (all frames when None), ``(T, H, W)`` order."""
        video = self.videos[video_id]
        if video.pixel_mask_path is None:
            count = video.num_frames if indices is None else len(indices)
            return np.zeros((count, *video.size), dtype=bool)
        stored = self._load_npy(video.pixel_mask_path, mmap=True)
        if indices is None:
            indices = np.arange(video.num_frames)
        if video.mask_layout == "THW":
            selected = stored[np.asarray(indices)]
        else:
            selected = np.moveaxis(stored[:, :, np.asarray(indices)], 2, 0)
        return np.asarray(selected) > 0

    #: dataset roots whose mask-derived tracks were already warned about in this process
    _warned_mask_tracks: set[str] = set()

    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        if self.videos[video_id].part == "training":
            return []
        if self.gt_tracks_dir is not None:
            return [rows.copy() for rows in self._published.get(video_id, [])]
        if self.videos[video_id].pixel_mask_path is None:
            return []
        key = str(self.root.resolve())
        if key not in ShanghaiTechDataset._warned_mask_tracks:
            ShanghaiTechDataset._warned_mask_tracks.add(key)
            warnings.warn(
                f"ShanghaiTech RBDC/TBDC ground truth of {self.root} is derived from the pixel masks (gt_tracks_dir is "
                "not set): touching objects merge into one track, so RBDC/TBDC are NOT comparable with published "
                "numbers — set gt_tracks_dir to the published track files (annotations/ShanghaiTech of the RBDC/TBDC "
                "reference evaluation; see docs/datasets.md)", DatasetWarning, stacklevel=3)
        from tvau_lightning.metrics.regions import masks_to_tracks

        masks = self.pixel_masks(video_id)
        return masks_to_tracks(masks, np.arange(len(masks)), link_iou=0.1)

    # ----------------------------------------------------------------- reading (lazy, per item)
    def _open_reader(self, video_id: str) -> VideoReader:
        video = self.videos[video_id]
        if video.part == "training":
            return open_video(video.path, self.video_backend, num_threads=self.decode_threads)
        return FrameFolderVideo(video.path, fps=self.fps)

    def _check_reader(self, video_id: str, reader: VideoReader) -> None:
        video = self.videos[video_id]
        if reader.num_frames != video.num_frames:
            raise DatasetFormatError(
                f"{video.path} now has {reader.num_frames} frames but had {video.num_frames} when the split was "
                "listed; the data changed on disk — rebuild the DataModule"
            )

    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.pixel_masks(video_id, indices)))


class ShanghaiTechDataModule(VideoClipDataModule):
    """ShanghaiTech Campus as clip batches, under the ``standard`` or the paper's ``tvau`` protocol.

    See the module docstring for what each protocol puts in train/val/test. The train split uses
    overlapping windows (shuffled); val/test/predict cover every frame of every video exactly once.

    Args:
        root: the dataset folder holding ``training/`` and ``testing/``.
        protocol: ``standard`` (train on normal training videos) or ``tvau`` (supervised, testing videos
            split by video into train/val).
        clip_len: frames per clip.
        frame_stride: spacing of a clip's frames in the source video.
        sample_fps: take frames at this many per second instead (per-video stride ``round(fps / sample_fps)``:
            24 at 1 fps for the 24 fps campus videos; the testing frame folders run at ``fps``); exclusive with
            ``frame_stride`` (leave it 1). Stage 2 reads it from the checkpoint to match its dialogue clips.
        frame_size: ``(H, W)`` frames and masks are resized to (476×868 in the author's prototype).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (``None``: the usable cores, at most 8; 0 loads in the main
            process).
        val_fraction: ``tvau``: fraction of the testing videos held out for validation.
        split_seed: ``tvau``: seed of the by-video split.
        tvau_test: ``tvau``: test on the ``held_out`` val videos (default, no overlap with training) or on
            ``all`` testing videos as the paper did (overlaps training).
        train_clip_step: frames between training window starts (default half a window).
        fps: frame rate reported for the testing frame folders.
        resize_mode: frame resampling filter (masks are always nearest).
        gt_boxes: attach each clip's RBDC/TBDC ground-truth boxes.
        decode_threads: decoder threads per training video (0 = automatic).
        pin_memory: pin batches in page-locked memory (``None``: when CUDA is available).
        resize_on: where frames are resized to ``frame_size``: ``data`` (default: in the DataLoader workers),
            ``device`` (on the model's device after the batch transfer; workers decode at the source size),
            ``device_yuv420`` (the same, workers ship YUV 4:2:0 that the device converts to RGB) or
            ``auto`` (``device`` when CUDA is available). Masks are resized in the workers either way. See
            :class:`~tvau_lightning.data.clips.VideoClipDataModule` for when ``device`` pays.
        video_backend: decoder of the training videos (``auto``: decord if installed, else PyAV).
        gt_tracks_dir: the folder of published RBDC/TBDC track files, one ``{video}.txt`` per testing video
            (``track_id,frame,x_min,y_min,x_max,y_max``); None derives tracks from the pixel masks, which is not
            comparable with published numbers (warned once).
        strict: make tolerated inconsistencies of the track files errors instead of warnings.
        eval_loading: how the evaluation loaders use ``num_workers``: ``threads`` of the main process (default:
            whole videos per thread, no copy between processes) or DataLoader worker ``processes``; training
            always uses processes. See :class:`~tvau_lightning.data.clips.VideoClipDataModule`.
    """

    def __init__(
        self,
        root: str,
        protocol: Protocol = "standard",
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (476, 868),
        batch_size: int = 1,
        num_workers: int | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        tvau_test: Literal["held_out", "all"] = "held_out",
        train_clip_step: int | None = None,
        fps: float = DEFAULT_FOLDER_FPS,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        decode_threads: int = 0,
        pin_memory: bool | None = None,
        video_backend: VideoBackend = "auto",
        gt_tracks_dir: str | None = None,
        strict: bool = False,
        sample_fps: float | None = None,
        resize_on: ResizeOn = "data",
        eval_loading: EvalLoading = "threads",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend, resize_on=resize_on, eval_loading=eval_loading)
        self.save_hyperparameters()
        if gt_tracks_dir is not None and not Path(gt_tracks_dir).is_dir():
            raise FileNotFoundError(
                f"gt_tracks_dir not found: {gt_tracks_dir}; point it at the folder of published ShanghaiTech track "
                "files (annotations/ShanghaiTech of the RBDC/TBDC reference evaluation) or leave it unset"
            )
        self.gt_tracks_dir = gt_tracks_dir
        self.strict = strict
        check_clip_args(clip_len, frame_stride, frame_size, train_clip_step, sample_fps)
        if protocol not in ("standard", "tvau"):
            raise ValueError(f"protocol must be 'standard' or 'tvau', got {protocol!r}")
        if tvau_test not in ("held_out", "all"):
            raise ValueError(f"tvau_test must be 'held_out' or 'all', got {tvau_test!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.root = root
        self.protocol = protocol
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.sample_fps = sample_fps
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.tvau_test = tvau_test
        self.train_clip_step = train_clip_step
        self.fps = fps
        self.resize_mode = resize_mode
        self.gt_boxes = gt_boxes
        self.decode_threads = decode_threads

    def split_video_ids(self, split: str) -> list[str]:
        """The video ids of ``train``, ``val`` or ``test`` under the chosen protocol (train ids are training
        videos in the standard protocol, testing videos in the tvau one)."""
        if self.protocol == "standard":
            return list(training_video_paths(self.root)) if split == "train" else testing_video_ids(self.root)
        testing = testing_video_ids(self.root)
        train, val = split_by_video(testing, self.val_fraction, self.split_seed)
        return {"train": train, "val": val, "test": val if self.tvau_test == "held_out" else testing}[split]

    def _make_dataset(self, split: str) -> ShanghaiTechDataset:
        part = "training" if self.protocol == "standard" and split == "train" else "testing"
        return ShanghaiTechDataset(
            self.root,
            part=part,
            video_ids=self.split_video_ids(split),
            clip_len=self.clip_len,
            frame_stride=self.frame_stride,
            frame_size=self.frame_size,
            sampling="train" if split == "train" else "eval",
            clip_step=self.train_clip_step,
            fps=self.fps,
            resize_mode=self.resize_mode,
            gt_boxes=self.gt_boxes,
            decode_threads=self.decode_threads,
            video_backend=self.video_backend,
            gt_tracks_dir=self.gt_tracks_dir if part == "testing" else None,
            strict=self.strict,
            sample_fps=self.sample_fps,
        )
