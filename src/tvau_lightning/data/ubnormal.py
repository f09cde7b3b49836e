"""UBnormal in its native layout (SPEC §5): mp4 videos, per-frame object-id pngs, tracks files, split lists.

```
<root>/Scene{s}/{video}.mp4
<root>/Scene{s}/{video}_annotations/{video}_{frame:04d}_gt.png   8-bit object ids, 0 = background (0-based frames)
<root>/Scene{s}/{video}_annotations/{video}_tracks.txt           abnormal videos: "object_id,start,end" per line,
                                                                 0-based inclusive — the frame-level truth
<root>/Scene{s}/{video}_annotations/{video}_new_tracks.txt       (some videos) the region-level tracks
<split_dir>/{abnormal,normal}_{training,validation,test}_video_names.txt
```

The conventions follow the authors' own scripts (``lilygeorgescu/UBnormal``, ``scripts/``; every rule and its
source is in ``docs/datasets.md``):

* **Frame labels** (micro/macro AUC) come from ``{video}_tracks.txt`` only: a frame is abnormal inside any
  line's range (``write_frame_level_ground_truth.py``). The anomaly *masks* (training targets) follow the same
  lines: the pixels of the objects whose line covers the frame.
* **RBDC/TBDC tracks** come from ``{video}_new_tracks.txt`` when it exists, else ``{video}_tracks.txt``
  (``create_tracks_for_tbdc_rbdc.py``): one track per line, per frame of its range the box of the object's
  region with the largest *bounding rectangle*. The authors write that box as ``(x, y, x + w, y + h)`` — one
  past the last pixel — while the RBDC/TBDC reference evaluation measures boxes as inclusive; with
  ``gt_box_convention="authors"`` (the DataModule's default) the boxes are written exactly so, with
  ``"inclusive"`` they end on the object's last pixel.

The real archive is not perfectly consistent. A video whose annotation pngs and decoded frames disagree in
number, or whose png numbering has a gap, is evaluated on the frames both sides have and reported in one
warning; ground truth that contradicts itself (a tracks object id found in none of its pngs, a track starting
after the video ends, an empty tracks file for a video listed as abnormal, a video in both the abnormal and the
normal list, a BOM at the start of a split file) is reported by a warning naming the video. ``strict=True``
turns every one of these into an error.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from tvau_lightning.data.clips import (
    DatasetFormatError,
    DatasetWarning,
    EvalLoading,
    ResizeOn,
    Sampling,
    VideoClipDataModule,
    VideoClipDataset,
    check_clip_args,
    evaluation_clips,
    training_clips,
)
from tvau_lightning.data.transforms import FrameResizeMode, resize_masks
from tvau_lightning.data.video import VideoBackend, VideoReader, VideoReadError, open_video

#: split names as the DataModule arguments may spell them → the spelling in the benchmark's file names
SPLIT_ALIASES = {"train": "training", "training": "train", "val": "validation", "validation": "val"}
#: ``authors``: boxes as create_tracks_for_tbdc_rbdc.py writes them, ``(x, y, x + w, y + h)``;
#: ``inclusive``: ``(x, y, x + w - 1, y + h - 1)``, the object's first and last pixels
BoxConvention = Literal["authors", "inclusive"]
_SCENE = re.compile(r"scene_?(\d+)", re.IGNORECASE)
_PNG = re.compile(r"_(\d+)_gt\.png$")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_BOM = "\ufeff"
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f]")


@dataclass(frozen=True)
class Track:
    """One line of a tracks file: object ``object_id`` is abnormal in frames ``start..end`` (inclusive)."""

    object_id: int
    start: int
    end: int
    line: int = 0

    def covers(self, frame: int) -> bool:
        return self.start <= frame <= self.end


@dataclass(frozen=True)
class UBnormalVideo:
    """Where one UBnormal video and its annotations live, as found when the split is listed.

    Attributes:
        num_frames: frames evaluated are ``0 … num_frames-1`` minus ``missing_pngs``: the smaller of the
            decoded frame count and the png numbering's end.
        png_count: annotation pngs found; ``decoded_frames``: frames the video decodes to.
        missing_pngs: frames below ``num_frames`` without a png (a gap in the numbering); never evaluated.
        fps: the video's frame rate (``sample_fps`` plans its clips from it).
        tracks: the ``_tracks.txt`` lines (frame labels and masks); empty for normal videos.
        region_tracks: the lines the RBDC/TBDC tracks come from (``_new_tracks.txt`` if present, else ``tracks``).
    """

    video_id: str
    video_path: Path
    annotation_dir: Path
    num_frames: int
    abnormal: bool
    tracks: tuple[Track, ...]
    tracks_path: Path | None
    region_tracks: tuple[Track, ...] = ()
    region_tracks_path: Path | None = None
    png_count: int = 0
    decoded_frames: int = 0
    missing_pngs: tuple[int, ...] = ()
    fps: float = 0.0

    def png_path(self, frame: int) -> Path:
        return self.annotation_dir / f"{self.video_id}_{frame:04d}_gt.png"

    def evaluated_frames(self) -> np.ndarray:
        """The frame numbers both the video and its annotations have, ascending."""
        frames = np.arange(self.num_frames, dtype=np.int64)
        return frames[~np.isin(frames, self.missing_pngs)] if self.missing_pngs else frames


def parse_tracks_file(path: str | os.PathLike[str]) -> list[Track]:
    """Read a UBnormal tracks file: one ``object_id,start,end`` per line (numbers may be written as floats).

    Raises:
        DatasetFormatError: a line is not three non-negative integers with ``start <= end`` (names the line).
    """
    path = Path(path)
    tracks = []
    text = path.read_text(encoding="utf-8")
    for number, raw in enumerate(text.removeprefix(_BOM).splitlines(), start=1):
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
        tracks.append(Track(object_id, start, end, number))
    return tracks


def labels_from_tracks(tracks: list[Track] | tuple[Track, ...], num_frames: int) -> np.ndarray:
    """``(num_frames,)`` int64 frame labels: 1 inside any track's range, as the authors' frame-level script
    sets ``gt[start : end + 1] = 1`` (a range past the last frame is clipped)."""
    labels = np.zeros(num_frames, dtype=np.int64)
    for track in tracks:
        labels[track.start : track.end + 1] = 1
    return labels


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


def largest_region_box(
    ids: np.ndarray, object_id: int, convention: BoxConvention = "inclusive"
) -> tuple[int, int, int, int] | None:
    """The box of the 8-connected region of ``object_id`` with the largest bounding rectangle; None if absent.

    The authors' ``create_tracks_for_tbdc_rbdc.py`` takes OpenCV contours of the object's mask (outer borders of
    8-connected regions) and keeps the first contour with the largest ``boundingRect`` ``w * h``; OpenCV lists
    contours in reverse discovery order, so among equal rectangles that is the region found *last* in raster
    order (checked against OpenCV 5.1 on random masks, see ``docs/datasets.md``). Returns ``(x_min, y_min, x_max, y_max)``: the last pixel for
    ``inclusive``, one past it (``x + w``, ``y + h``, as the authors write it) for ``authors``.
    """
    region = ids == object_id
    if not region.any():
        return None
    labels, count = ndimage.label(region, structure=_EIGHT_CONNECTED)
    best, best_area = None, -1
    for rows, cols in ndimage.find_objects(labels, max_label=count):
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        if area >= best_area:  # ties: the last region in raster order, as OpenCV's contour order gives
            best, best_area = (rows, cols), area
    rows, cols = best
    extra = 0 if convention == "inclusive" else 1
    return int(cols.start), int(rows.start), int(cols.stop - 1 + extra), int(rows.stop - 1 + extra)


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


def check_video_name(name: str, source: Path, line: int) -> str:
    """A video name read from a file, refused when it could leave the dataset folder once joined into a path.

    A UBnormal video name is a bare file stem (``abnormal_scene_4_scenario_2_fog``): no path separator, no
    ``..``, no control character, not absolute.

    Raises:
        DatasetFormatError: naming ``source`` and ``line``.
    """
    if not name or ".." in name or _BAD_NAME_CHARS.search(name) or name.startswith(("~", ".")) or ":" in name:
        raise DatasetFormatError(
            f"{source} line {line}: {name!r} is not a bare video name (no '/', '\\', '..', leading '.' or '~', "
            "':' or control characters); a split file lists one name per line like 'abnormal_scene_4_scenario_2' "
            "— fix the line"
        )
    return name


def check_inside(path: Path, root: Path, source: Path, line: int) -> Path:
    """``path`` unchanged if it lies inside ``root`` once normalised (symbolic links inside the dataset are
    allowed: the check is on the names, not on where links point); else a :class:`DatasetFormatError`."""
    normal, base = Path(os.path.normpath(os.path.abspath(path))), Path(os.path.normpath(os.path.abspath(root)))
    if normal != base and base not in normal.parents:
        raise DatasetFormatError(f"{source} line {line}: the name leads to {normal}, outside the dataset root {base}; "
                                 "fix the line")
    return path


def read_split_file(path: Path, strict: bool = False) -> list[tuple[int, str]]:
    """``(line number, video name)`` of a split file, one name per line (blank lines and ``#`` comments skipped,
    ``.mp4`` removed); every name checked by :func:`check_video_name`.

    A byte-order mark at the start of the file (an editor's doing; the published files have none) is removed
    with a :class:`~tvau_lightning.data.clips.DatasetWarning`, or refused with ``strict``.
    """
    text = path.read_text(encoding="utf-8")
    if text.startswith(_BOM):
        if strict:
            raise DatasetFormatError(f"{path} starts with a byte-order mark (BOM); save it as plain UTF-8 without BOM")
        warnings.warn(f"{path} starts with a byte-order mark (BOM); it was removed — save the file as UTF-8 without "
                      "BOM", DatasetWarning, stacklevel=2)
        text = text[1:]
    names = []
    for number, raw in enumerate(text.splitlines(), start=1):
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        name = name[:-4] if name.lower().endswith(".mp4") else name
        names.append((number, check_video_name(name, path, number)))
    return names


def _report(problems: list[str], title: str, strict: bool, fix: str) -> None:
    """One warning (or, ``strict``, one error) listing every video of one kind of inconsistency."""
    if not problems:
        return
    message = f"{title} ({len(problems)} video{'s' if len(problems) > 1 else ''}):\n  " + "\n  ".join(problems)
    if strict:
        raise DatasetFormatError(f"{message}\n{fix}")
    warnings.warn(f"{message}\n{fix}; strict=True makes this an error", DatasetWarning, stacklevel=3)


class UBnormalDataset(VideoClipDataset):
    """The clips of one UBnormal split (``training``, ``validation``, ``test``).

    Args:
        root: the dataset folder holding ``Scene1`` … ``Scene29``.
        split_dir: the folder with ``{abnormal,normal}_{split}_video_names.txt``.
        split: the split name as in the file names (``training``/``train``, ``validation``/``val``, ``test``).
        include_normal: add the split's normal videos (needed for frame AUC and the RBDC/TBDC false-positive rate).
        decode_threads: decoder threads per video (0 = automatic).
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
        strict: make every tolerated inconsistency of the archive (see the module docstring) an error.
        gt_box_convention: ``inclusive`` (default here: boxes end on the object's last pixel) or ``authors``
            (one past it, as the authors' track files; the DataModule's default).
        clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes, sample_fps: see
            :class:`~tvau_lightning.data.clips.VideoClipDataset` (``sample_fps`` reads each video's own rate).
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
        video_backend: VideoBackend = "auto",
        strict: bool = False,
        gt_box_convention: BoxConvention = "inclusive",
        sample_fps: float | None = None,
    ) -> None:
        super().__init__(clip_len, frame_stride, frame_size, sampling, clip_step, resize_mode, gt_boxes,
                         video_backend=video_backend, sample_fps=sample_fps)
        if gt_box_convention not in ("authors", "inclusive"):
            raise ValueError(f"gt_box_convention must be 'authors' or 'inclusive', got {gt_box_convention!r}")
        self.root = Path(root)
        self.split_dir = Path(split_dir)
        self.split = split
        self.decode_threads = decode_threads
        self.strict = strict
        self.gt_box_convention: BoxConvention = gt_box_convention
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
        listed: dict[str, tuple[bool, Path, int]] = {}
        skipped: dict[str, tuple[bool, Path, int]] = {}  # normal videos left out (still checked against abnormal)
        in_both: list[str] = []
        for kind in ("abnormal", "normal"):
            abnormal = kind == "abnormal"
            try:
                listing = split_file(self.split_dir, kind, split)
            except FileNotFoundError:
                if not abnormal and not include_normal:
                    continue
                raise
            for line, name in read_split_file(listing, strict=strict):
                first = listed.get(name) or skipped.get(name)
                if first is not None:
                    if first[0] != abnormal:
                        in_both.append(f"{name} ({first[1].name} line {first[2]} and {listing.name} line {line}): "
                                       "treated as abnormal")
                    continue
                (listed if abnormal or include_normal else skipped)[name] = (abnormal, listing, line)
        _report(in_both, "videos listed both as abnormal and as normal", strict,
                "remove each from one of the two split files")
        self._problems: dict[str, list[str]] = {"counts": [], "empty": [], "late": [], "absent": [], "labels": []}
        for name, (abnormal, listing, line) in listed.items():
            self.videos[name] = self._describe(name, abnormal, listing, line)
        if not self.videos:
            raise DatasetFormatError(f"UBnormal split {split!r} in {self.split_dir} lists no videos")
        self._report_problems()
        self._video_ids = list(self.videos)
        self._build_clips()

    # ----------------------------------------------------------------- listing (at construction)
    def _find_video(self, name: str, listing: Path, line: int) -> Path:
        scene = scene_of(name)
        if scene is not None:
            direct = self.root / f"Scene{scene}" / f"{name}.mp4"
            if direct.is_file():
                return check_inside(direct, self.root, listing, line)
        if self._scene_index is None:  # irregular name or unusual placement: search every Scene folder once
            self._scene_index = {p.stem: p for p in sorted(self.root.glob("Scene*/*.mp4"))}
        if name in self._scene_index:
            return check_inside(self._scene_index[name], self.root, listing, line)
        where = f"{self.root}/Scene{scene}/{name}.mp4" if scene is not None else f"{self.root}/Scene*/{name}.mp4"
        raise FileNotFoundError(
            f"video {name!r} is listed in {listing} but not found at {where} nor in any Scene folder of {self.root}; "
            "restore the video or remove it from the split file"
        )

    def _describe(self, name: str, abnormal: bool, listing: Path, line: int) -> UBnormalVideo:
        video_path = self._find_video(name, listing, line)
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
        try:
            probe = open_video(video_path, self.video_backend, num_threads=1)
            decoded, fps = probe.num_frames, float(probe.fps)
            del probe
        except VideoReadError as error:
            raise VideoReadError(f"{error} (video {name!r}, listed in {listing} line {line})") from error
        num_frames = min(decoded, numbers[-1] + 1)
        missing = tuple(sorted(set(range(num_frames)) - set(numbers)))
        if len(numbers) != decoded or missing:
            gap = (f", missing pngs {[f'{m:04d}' for m in missing[:5]]}{' …' if len(missing) > 5 else ''}"
                   if missing else "")
            self._problems["counts"].append(f"{name}: {len(numbers)} annotation pngs, {decoded} decoded frames{gap} "
                                            f"→ {num_frames - len(missing)} frames evaluated")
        tracks: tuple[Track, ...] = ()
        region_tracks: tuple[Track, ...] = ()
        tracks_path = region_path = None
        if abnormal:
            old_tracks = annotation_dir / f"{name}_tracks.txt"
            new_tracks = annotation_dir / f"{name}_new_tracks.txt"
            if not old_tracks.is_file() and not new_tracks.is_file():
                raise FileNotFoundError(
                    f"tracks file not found: {old_tracks}; abnormal video {name!r} (listed in {listing} line {line}) "
                    "needs one ('object_id,start,end' per line) — restore it, or list the video as normal"
                )
            if old_tracks.is_file():
                tracks_path = old_tracks
            else:
                tracks_path = new_tracks
                self._problems["labels"].append(f"{name}: no {old_tracks.name}; frame labels taken from {new_tracks.name}")
            tracks = tuple(parse_tracks_file(tracks_path))
            region_path = new_tracks if new_tracks.is_file() else tracks_path
            region_tracks = tracks if region_path == tracks_path else tuple(parse_tracks_file(region_path))
            for path, lines in {tracks_path: tracks, region_path: region_tracks}.items():
                if not lines:
                    effect = "no abnormal frames" if path == tracks_path else "no RBDC/TBDC tracks"
                    self._problems["empty"].append(f"{name}: {path} is empty although {listing.name} lists it as "
                                                   f"abnormal → {effect}")
                for track in lines:
                    if track.start >= num_frames:
                        self._problems["late"].append(
                            f"{name}: {path.name} line {track.line} starts at frame {track.start}, after the video's "
                            f"last evaluated frame {num_frames - 1} → ignored")
        video = UBnormalVideo(name, video_path, annotation_dir, num_frames, abnormal, tracks, tracks_path,
                              region_tracks, region_path, len(numbers), decoded, missing, fps)
        self._check_objects_present(video)
        return video

    def _check_objects_present(self, video: UBnormalVideo) -> None:
        """Each tracks line's object must appear in some png of its range: the first, middle and last are read,
        and the whole range only when none of these three holds it."""
        seen: set[tuple[int, int, int]] = set()
        available = set(video.evaluated_frames().tolist())
        for path, lines in ((video.tracks_path, video.tracks), (video.region_tracks_path, video.region_tracks)):
            for track in lines:
                key = (track.object_id, track.start, track.end)
                if key in seen:
                    continue
                seen.add(key)
                frames = [f for f in range(track.start, min(track.end, video.num_frames - 1) + 1) if f in available]
                if not frames:
                    continue  # reported as starting after the video, or falls in missing pngs
                probes = sorted({frames[0], frames[len(frames) // 2], frames[-1]})
                if any((read_id_map(video.png_path(f)) == track.object_id).any() for f in probes):
                    continue
                rest = [f for f in frames if f not in probes]
                if any((read_id_map(video.png_path(f)) == track.object_id).any() for f in rest):
                    continue
                self._problems["absent"].append(
                    f"{video.video_id}: object id {track.object_id} of {Path(path).name} line {track.line} appears in "
                    f"none of the pngs of frames {track.start}–{track.end} → frames labelled abnormal without a mask "
                    "or region")

    def _report_problems(self) -> None:
        strict = self.strict
        _report(self._problems["counts"], "annotation pngs and decoded frames disagree (only the frames both sides "
                "have are evaluated)", strict, "re-extract the video or restore its *_gt.png files from the archive")
        _report(self._problems["labels"], "abnormal videos without a _tracks.txt", strict,
                "restore {video}_tracks.txt, the file the authors build frame labels from")
        _report(self._problems["empty"], "empty tracks files for videos listed as abnormal", strict,
                "restore the tracks file or list the video as normal")
        _report(self._problems["late"], "tracks that start after the video ends", strict,
                "fix the tracks line or restore the video's frames")
        _report(self._problems["absent"], "tracks whose object id is in none of its pngs", strict,
                "fix the object id in the tracks file or restore the pngs")

    # ----------------------------------------------------------------- per-video accessors
    def num_frames(self, video_id: str) -> int:
        return self.videos[video_id].num_frames

    def video_fps(self, video_id: str) -> float:
        return self.videos[video_id].fps

    def video_name(self, video_id: str) -> str:
        return str(self.videos[video_id].video_path)

    def total_frames(self) -> int:
        """Frames evaluated in the whole split (``N`` of the RBDC/TBDC false-positive rate)."""
        return sum(len(self.videos[v].evaluated_frames()) for v in self._video_ids)

    def original_size(self, video_id: str) -> tuple[int, int]:
        if video_id not in self._sizes:
            video = self.videos[video_id]
            png = video.png_path(int(video.evaluated_frames()[0]))
            with Image.open(png) as image:
                width, height = image.size
            self._sizes[video_id] = (int(height), int(width))
        return self._sizes[video_id]

    def tracks(self, video_id: str) -> tuple[Track, ...]:
        """The ``_tracks.txt`` lines of the video (frame labels and masks; empty for normal videos)."""
        return self.videos[video_id].tracks

    def region_tracks(self, video_id: str) -> tuple[Track, ...]:
        """The lines the RBDC/TBDC tracks are built from (``_new_tracks.txt`` when it exists)."""
        return self.videos[video_id].region_tracks

    def _build_clips(self) -> None:
        """Clips over the runs of consecutive evaluated frames (all of ``0 … T-1`` unless pngs are missing)."""
        self._clips = []
        for video_id in self._video_ids:
            frames = self.videos[video_id].evaluated_frames()
            if not len(frames):
                continue
            breaks = np.flatnonzero(np.diff(frames) != 1) + 1
            stride = self.frame_stride_of(video_id)
            for run in np.split(frames, breaks):
                if self.sampling == "train":
                    plans = training_clips(len(run), self.clip_len, stride, self.clip_step)
                else:
                    plans = evaluation_clips(len(run), self.clip_len, stride)
                self._clips.extend((video_id, plan + run[0]) for plan in plans)
        self._warn_inexact_rates()

    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        return labels_from_tracks(self.tracks(video_id), self.num_frames(video_id))

    def _track_frames(self, video_id: str, track: Track) -> list[int]:
        video = self.videos[video_id]
        last = min(track.end, video.num_frames - 1)
        return [f for f in range(track.start, last + 1) if f not in video.missing_pngs]

    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        tracks = self.region_tracks(video_id)
        frames = sorted({f for t in tracks for f in self._track_frames(video_id, t)})
        rows: list[list[list[int]]] = [[] for _ in tracks]
        for frame in frames:
            ids = read_id_map(self.videos[video_id].png_path(frame))
            for k, track in enumerate(tracks):
                box = largest_region_box(ids, track.object_id, self.gt_box_convention) if track.covers(frame) else None
                if box is not None:
                    rows[k].append([frame, *box])
        return [np.asarray(r, dtype=np.int64).reshape(-1, 5) for r in rows]

    def _clip_gt_boxes(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        if video_id in self._tracks:
            return super()._clip_gt_boxes(video_id, indices)
        # computed from the clip's own pngs (the whole video's tracks are not needed for a clip)
        tracks = self.region_tracks(video_id)
        rows = []
        for frame in indices.tolist():
            active = [(k, t) for k, t in enumerate(tracks) if t.covers(frame)]
            if not active:
                continue
            ids = self._id_map(video_id, frame)
            for k, track in active:
                box = largest_region_box(ids, track.object_id, self.gt_box_convention)
                if box is not None:
                    rows.append([frame, k, *box])
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 6)

    def _id_map(self, video_id: str, frame: int) -> np.ndarray:
        """The object-id map of a frame, checked against the video's size; the last clip's maps are cached, per
        thread (masks and GT boxes of one item read the same pngs)."""
        state = self.thread_state()
        if not hasattr(state, "id_cache"):
            state.id_cache = OrderedDict()
        cache: OrderedDict[tuple[str, int], np.ndarray] = state.id_cache
        key = (video_id, frame)
        if key in cache:
            return cache[key]
        path = self.videos[video_id].png_path(frame)
        ids = read_id_map(path)
        expected = self.original_size(video_id)
        if ids.shape != expected:
            raise DatasetFormatError(
                f"{path} is {ids.shape[0]}x{ids.shape[1]} but the video's other annotation pngs are "
                f"{expected[0]}x{expected[1]}; all annotation pngs of a video must have the video's size"
            )
        cache[key] = ids
        while len(cache) > self.clip_len:
            cache.popitem(last=False)
        return ids

    # ----------------------------------------------------------------- reading (lazy, per item)
    def _open_reader(self, video_id: str) -> VideoReader:
        return open_video(self.videos[video_id].video_path, self.video_backend, num_threads=self.decode_threads)

    def _check_reader(self, video_id: str, reader: VideoReader) -> None:
        video = self.videos[video_id]
        if reader.num_frames != video.decoded_frames:
            raise DatasetFormatError(
                f"{video.video_path} now decodes to {reader.num_frames} frames but had {video.decoded_frames} when "
                "the split was listed; the data changed on disk — rebuild the DataModule"
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

    def _clip_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        # zeros at frame_size for the frames no track covers; only the covered frames are read at the source
        # size and resized (most test frames are normal: no source-size allocation or resize for them)
        height, width = self.frame_size or self.original_size(video_id)
        masks = torch.zeros((len(indices), height, width), dtype=torch.bool)
        tracks = self.tracks(video_id)
        covered = [i for i, frame in enumerate(indices.tolist()) if any(t.covers(frame) for t in tracks)]
        if covered:
            masks[covered] = resize_masks(self._read_masks(video_id, indices[covered]), self.frame_size)
        return masks


class UBnormalDataModule(VideoClipDataModule):
    """UBnormal train/validation/test splits as clip batches (:class:`~tvau_lightning.data.types.ClipBatch`).

    The train split uses overlapping windows (shuffled); validation/test/predict cover every evaluated frame of
    every video exactly once. ``predict`` reads the test split. Frame labels and RBDC/TBDC ground truth follow
    the authors' scripts (module docstring; ``docs/datasets.md``).

    Args:
        root: the dataset folder holding ``Scene1`` … ``Scene29``.
        split_dir: the folder with ``{abnormal,normal}_{split}_video_names.txt`` (the UBnormal repository's
            ``scripts`` folder).
        clip_len: frames per clip.
        frame_stride: spacing of a clip's frames in the source video.
        sample_fps: take frames at this many per second of each video instead (per-video stride
            ``round(fps / sample_fps)``, e.g. 30 at 1 fps for UBnormal's 30 fps videos); exclusive with
            ``frame_stride`` (leave it 1). Stage 2 reads it from the checkpoint to match its dialogue clips.
        frame_size: ``(H, W)`` frames and masks are resized to (multiples of 28 suit Qwen2.5-VL); ``None``
            keeps the source size (batch_size 1 then, UBnormal's videos differ in size).
        batch_size: clips per batch.
        num_workers: DataLoader worker processes (``None``: the usable cores, at most 8; 0 loads in the main
            process).
        train_split: split-file name of the training videos (the benchmark's files say ``training``;
            ``train`` is accepted too).
        val_split: split-file name of the validation videos.
        test_split: split-file name of the test videos.
        include_normal: train on the normal videos too (all-normal clips, empty masks).
        include_normal_eval: evaluate on the normal videos too (the published protocol does).
        train_clip_step: frames between training window starts (default half a window).
        resize_mode: frame resampling filter (masks are always nearest).
        gt_boxes: attach each clip's RBDC/TBDC ground-truth boxes.
        decode_threads: decoder threads per video (0 = automatic; 1 is best with several workers).
        video_backend: decoder of the videos (``auto``: decord if installed, else PyAV).
        pin_memory: pin batches in page-locked memory (faster host→GPU copies; ``None``: when CUDA is available).
        resize_on: where frames are resized to ``frame_size``: ``data`` (default: in the DataLoader workers),
            ``device`` (on the model's device after the batch transfer; workers decode at the source size),
            ``device_yuv420`` (the same, workers ship YUV 4:2:0 that the device converts to RGB) or
            ``auto`` (``device`` when CUDA is available). Masks are resized in the workers either way. See
            :class:`~tvau_lightning.data.clips.VideoClipDataModule` for when ``device`` pays.
        strict: make the archive's tolerated inconsistencies (png/frame count mismatches, contradicting ground
            truth, a BOM in a split file) errors instead of warnings.
        gt_box_convention: ``authors`` (default: RBDC/TBDC boxes exactly as the authors' track files, max corner
            one past the last pixel) or ``inclusive`` (the max corner is the last pixel).
        eval_loading: how the evaluation loaders use ``num_workers``: ``threads`` of the main process (default:
            whole videos per thread, no copy between processes) or DataLoader worker ``processes``; training
            always uses processes. See :class:`~tvau_lightning.data.clips.VideoClipDataModule`.
    """

    def __init__(
        self,
        root: str,
        split_dir: str,
        clip_len: int = 16,
        frame_stride: int = 1,
        frame_size: tuple[int, int] | None = (448, 672),
        batch_size: int = 1,
        num_workers: int | None = None,
        train_split: str = "training",
        val_split: str = "validation",
        test_split: str = "test",
        include_normal: bool = True,
        include_normal_eval: bool = True,
        train_clip_step: int | None = None,
        resize_mode: FrameResizeMode = "bilinear",
        gt_boxes: bool = True,
        decode_threads: int = 0,
        pin_memory: bool | None = None,
        video_backend: VideoBackend = "auto",
        strict: bool = False,
        gt_box_convention: BoxConvention = "authors",
        sample_fps: float | None = None,
        resize_on: ResizeOn = "data",
        eval_loading: EvalLoading = "threads",
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         video_backend=video_backend, resize_on=resize_on, eval_loading=eval_loading)
        self.save_hyperparameters()
        check_clip_args(clip_len, frame_stride, frame_size, train_clip_step, sample_fps)
        if gt_box_convention not in ("authors", "inclusive"):
            raise ValueError(f"gt_box_convention must be 'authors' or 'inclusive', got {gt_box_convention!r}")
        self.root = root
        self.split_dir = split_dir
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.sample_fps = sample_fps
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.include_normal = include_normal
        self.include_normal_eval = include_normal_eval
        self.train_clip_step = train_clip_step
        self.resize_mode = resize_mode
        self.gt_boxes = gt_boxes
        self.decode_threads = decode_threads
        self.strict = strict
        self.gt_box_convention: BoxConvention = gt_box_convention

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
            video_backend=self.video_backend,
            strict=self.strict,
            gt_box_convention=self.gt_box_convention,
            sample_fps=self.sample_fps,
        )
