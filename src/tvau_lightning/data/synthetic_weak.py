"""Writers of small synthetic UCF-Crime and XD-Violence datasets in their native layouts (``docs/datasets_weak.md``).

The scenes are those of the UBnormal/ShanghaiTech writers (:mod:`tvau_lightning.data.synthetic`: a static
textured background, slow grey/blue "people"); an anomaly is an intruder present only inside its frame range,
whose **colour and shape name its category** (:data:`CATEGORY_LOOKS`: red square, orange disk, magenta
triangle, …), so a model can learn both where and which anomaly it is from video-level labels alone.

The writers know the intruders' pixels exactly. They keep them in a side folder the DataModules never read,
``<out>/synthetic_masks/<video>.npz`` (``masks``: ``(T, H, W)`` bool), for a later pixel-AUC check, and return
(and store as ``<out>/synthetic_weak_manifest.json``) every video's exact ground truth.

UCF-Crime (``write_synthetic_ucf_crime``)::

    <out>/Videos/<Category>/<Category>NNN_x264.mp4
    <out>/Videos/Training_Normal_Videos_Anomaly/Normal_VideosNNN_x264.mp4
    <out>/Videos/Testing_Normal_Videos_Anomaly/Normal_Videos_NNN_x264.mp4
    <out>/Anomaly_Detection_splits/{Anomaly_Train.txt, Anomaly_Test.txt,
                                    Temporal_Anomaly_Annotation_for_Testing_Videos.txt}   (1-based inclusive)

XD-Violence (``write_synthetic_xd_violence``)::

    <out>/train/<name>_label_<codes>.mp4, <out>/test/<name>_label_<codes>.mp4
    <out>/annotations.txt                                                      (0-based, end exclusive)

Command line: ``tvau synth-data --dataset ucf_crime|xd_violence --out DIR [--videos N --frames T --seed S]``
(:mod:`tvau_lightning.commands.synth_data`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvau_lightning.atomic import atomic_path, write_text_atomic
from tvau_lightning.data.synthetic import _normal_actors, _render, _write_video, scene_background
from tvau_lightning.data.temporal_annotations import UCF_CRIME_CATEGORIES, XD_VIOLENCE_CODES

MANIFEST_NAME = "synthetic_weak_manifest.json"
MASK_DIR = "synthetic_masks"
SHAPES = ("square", "disk", "triangle", "cross", "ring", "diamond")
_PALETTE = (
    (255, 30, 20), (255, 150, 0), (235, 40, 210), (245, 235, 20), (30, 230, 60), (0, 235, 235), (150, 60, 255),
    (255, 110, 150), (190, 255, 0), (255, 255, 255), (120, 30, 0), (0, 120, 40), (255, 200, 150),
)
#: category index (1-based, 0 = normal) → (RGB colour, shape) of its intruders; UCF-Crime's 13 and
#: XD-Violence's 6 categories each get a distinct pair.
CATEGORY_LOOKS: dict[int, tuple[tuple[int, int, int], str]] = {
    k + 1: (_PALETTE[k], SHAPES[k % len(SHAPES)]) for k in range(len(_PALETTE))
}
DEFAULT_UCF_CATEGORIES = ("Abuse", "Arson", "Explosion", "Fighting")


@dataclass
class SyntheticWeakVideo:
    """The ground truth drawn into one synthetic video.

    Attributes:
        video_id: the file stem.
        split: ``train`` or ``test``.
        categories: the video's category keys (``Normal``/``A`` for normal videos).
        num_frames: frame count.
        segments: ``(category, first, stop)`` per intruder, 0-based half-open frames.
        path: the video file.
        mask_file: the side file of its ``(T, H, W)`` bool intruder masks.
    """

    video_id: str
    split: str
    categories: tuple[str, ...]
    num_frames: int
    segments: list[tuple[str, int, int]] = field(default_factory=list)
    path: Path | None = None
    mask_file: Path | None = None

    def frame_labels(self) -> np.ndarray:
        """``(T,)`` int64, 1 inside an intruder's range."""
        labels = np.zeros(self.num_frames, dtype=np.int64)
        for _, first, stop in self.segments:
            labels[first:stop] = 1
        return labels

    def masks(self) -> np.ndarray:
        """``(T, H, W)`` bool intruder pixels (read from the side file)."""
        with np.load(self.mask_file) as data:
            return data["masks"]


@dataclass
class SyntheticWeakDataset:
    """What a writer produced: where (the DataModule arguments), and every video's exact ground truth."""

    dataset: str
    out: Path
    root: Path
    categories: tuple[str, ...]
    videos: dict[str, SyntheticWeakVideo]
    size: tuple[int, int]
    fps: float
    seed: int
    split_dir: Path | None = None
    annotation_file: Path | None = None
    tracks_dir: Path | None = None  # no region tracks in these benchmarks (read by `tvau synth-data`'s summary)

    def split(self, name: str) -> list[str]:
        """Video ids of a split, in writing order."""
        return [v for v, info in self.videos.items() if info.split == name]

    def write_manifest(self) -> Path:
        payload = {
            "dataset": self.dataset, "root": str(self.root), "split_dir": str(self.split_dir or ""),
            "annotation_file": str(self.annotation_file or ""), "categories": list(self.categories),
            "size": list(self.size), "fps": self.fps, "seed": self.seed,
            "videos": {k: {"split": v.split, "categories": list(v.categories), "num_frames": v.num_frames,
                           "segments": [list(s) for s in v.segments], "path": str(v.path),
                           "mask_file": str(v.mask_file)} for k, v in self.videos.items()},
        }
        return write_text_atomic(self.out / MANIFEST_NAME, json.dumps(payload, indent=1))


# --------------------------------------------------------------------------------------------- drawing
def shape_mask(shape: str, height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """``(H, W)`` bool pixels of ``shape`` centred at ``(cx, cy)`` with half-size ``radius``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy, r = xx - cx, yy - cy, float(radius)
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "disk":
        return dx**2 + dy**2 <= r**2
    if shape == "triangle":
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "cross":
        bar = r / 3
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= r)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= r))
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.5 * r) ** 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    raise ValueError(f"unknown shape {shape!r}; use one of {', '.join(SHAPES)}")


def _intruder_path(rng: np.random.Generator, first: int, stop: int, height: int, width: int,
                   radius: float) -> dict[int, tuple[float, float]]:
    """Centre per frame of an intruder moving fast and erratically inside the frame, over ``[first, stop)``."""
    lo_x, hi_x, lo_y, hi_y = radius + 1, width - radius - 2, radius + 1, height - radius - 2
    x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    angle, speed = rng.uniform(0, 2 * np.pi), 0.03 * width
    centres = {}
    for i, t in enumerate(range(first, stop)):
        if i and i % 4 == 0:
            angle = rng.uniform(0, 2 * np.pi)
        if i:
            x, y = x + speed * np.cos(angle), y + speed * np.sin(angle)
            if not lo_x <= x <= hi_x:
                angle, x = np.pi - angle, float(np.clip(x, lo_x, hi_x))
            if not lo_y <= y <= hi_y:
                angle, y = -angle, float(np.clip(y, lo_y, hi_y))
        centres[t] = (x, y)
    return centres


def _draw_video(
    rng: np.random.Generator, background: np.ndarray, num_frames: int,
    intruders: Sequence[tuple[int, int, int]], normal_objects: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with normal walkers and ``(category_index, first, stop)`` intruders; returns frames and masks."""
    height, width = background.shape[:2]
    normals = _normal_actors(rng, height, width, num_frames, normal_objects)
    frames, _ = _render(background, normals, [], num_frames)
    masks = np.zeros((num_frames, height, width), dtype=bool)
    radius = max(4.0, 0.12 * min(height, width))
    for category, first, stop in intruders:
        colour, shape = CATEGORY_LOOKS[category]
        for t, (cx, cy) in _intruder_path(rng, first, stop, height, width, radius).items():
            region = shape_mask(shape, height, width, cx, cy, radius)
            frames[t][region] = colour
            masks[t] |= region
    return frames, masks


def _range(rng: np.random.Generator, num_frames: int, lo: float = 0.15, hi: float = 0.85) -> tuple[int, int]:
    """A 0-based half-open range inside ``[lo, hi]`` of the video, at least a quarter of it long."""
    first = int(rng.integers(int(lo * num_frames), int((lo + hi) / 2 * num_frames) - num_frames // 4 + 1))
    stop = int(rng.integers(first + num_frames // 4, int(hi * num_frames) + 1))
    return first, stop


def _two_ranges(rng: np.random.Generator, num_frames: int) -> list[tuple[int, int]]:
    """Two disjoint ranges, one in each half of the video."""
    a = _range(rng, num_frames // 2, 0.1, 0.9)
    b = _range(rng, num_frames - num_frames // 2, 0.1, 0.9)
    return [a, (b[0] + num_frames // 2, b[1] + num_frames // 2)]


def _check(height: int, width: int, num_frames: int) -> None:
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise ValueError(f"synthetic frame size must be even and at least 32x32, got {height}x{width}")
    if num_frames < 16:
        raise ValueError(f"synthetic videos need at least 16 frames, got {num_frames}")


def _save(out: Path, video: SyntheticWeakVideo, frames: list[np.ndarray], masks: np.ndarray, fps: float) -> None:
    _write_video(video.path, frames, fps, "libx264")
    video.mask_file = out / MASK_DIR / f"{video.video_id}.npz"
    with atomic_path(video.mask_file) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, masks=masks)


# --------------------------------------------------------------------------------------------- UCF-Crime
def write_synthetic_ucf_crime(
    out: str | os.PathLike[str],
    categories: Sequence[str] = DEFAULT_UCF_CATEGORIES,
    train_per_category: int = 2,
    test_per_category: int = 1,
    normal_train: int = 3,
    normal_test: int = 2,
    num_frames: int = 48,
    height: int = 96,
    width: int = 128,
    num_scenes: int = 2,
    normal_objects: int = 2,
    fps: float = 30.0,
    seed: int = 0,
) -> SyntheticWeakDataset:
    """Write a synthetic UCF-Crime (layout in the module docstring) and return its ground truth.

    Each abnormal video holds one intruder of its category; the first abnormal test video holds two ranges
    (the annotation's second pair), the others ``-1 -1``. Normal videos hold only walkers.
    """
    _check(height, width, num_frames)
    unknown = [c for c in categories if c not in UCF_CRIME_CATEGORIES[1:]]
    if unknown or not categories:
        raise ValueError(f"categories must be UCF-Crime anomaly categories ({', '.join(UCF_CRIME_CATEGORIES[1:])}), "
                         f"got unknown {unknown}")
    out = Path(out)
    root, split_dir = out / "Videos", out / "Anomaly_Detection_splits"
    backgrounds = [scene_background(height, width, seed * 1000 + 700 + s) for s in range(num_scenes)]
    videos: dict[str, SyntheticWeakVideo] = {}
    lists: dict[str, list[str]] = {"train": [], "test": []}
    annotation_lines: list[str] = []
    plan: list[tuple[str, str, str, int]] = []  # (split, category, folder/name, number)
    for c, category in enumerate(categories):
        for k in range(train_per_category + test_per_category):
            split = "train" if k < train_per_category else "test"
            plan.append((split, category, f"{category}/{category}{k + 1:03d}_x264", c))
    for k in range(normal_train):
        plan.append(("train", "Normal", f"Training_Normal_Videos_Anomaly/Normal_Videos{k + 1:03d}_x264", -1))
    for k in range(normal_test):
        plan.append(("test", "Normal", f"Testing_Normal_Videos_Anomaly/Normal_Videos_{k + 1:03d}_x264", -1))
    first_abnormal_test = True
    for n, (split, category, entry, _) in enumerate(plan):
        rng = np.random.default_rng([seed, 11, n])
        video_id = entry.split("/")[-1]
        ranges: list[tuple[int, int]] = []
        if category != "Normal":
            two = split == "test" and first_abnormal_test
            first_abnormal_test = first_abnormal_test and split != "test"
            ranges = _two_ranges(rng, num_frames) if two else [_range(rng, num_frames)]
        index = UCF_CRIME_CATEGORIES.index(category)
        frames, masks = _draw_video(rng, backgrounds[n % num_scenes], num_frames,
                                    [(index, a, b) for a, b in ranges], normal_objects)
        video = SyntheticWeakVideo(video_id, split, (category,), num_frames,
                                   [(category, a, b) for a, b in ranges], path=root / f"{entry}.mp4")
        _save(out, video, frames, masks, fps)
        videos[video_id] = video
        lists[split].append(f"{entry}.mp4")
        if split == "test":  # the official file: two-space separated, two trailing spaces, 1-based inclusive
            pairs = [(a + 1, b) for a, b in ranges] + [(-1, -1)] * (2 - len(ranges))
            fields = [f"{video_id}.mp4", category, *(str(v) for pair in pairs for v in pair)]
            annotation_lines.append("  ".join(fields) + "  ")
    write_text_atomic(split_dir / "Anomaly_Train.txt", "".join(f"{e}\n" for e in sorted(lists["train"])))
    write_text_atomic(split_dir / "Anomaly_Test.txt", "".join(f"{e}\n" for e in sorted(lists["test"])))
    annotation_file = split_dir / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    write_text_atomic(annotation_file, "".join(f"{line}\n" for line in sorted(annotation_lines)))
    dataset = SyntheticWeakDataset("ucf_crime", out, root, UCF_CRIME_CATEGORIES, videos, (height, width), fps, seed,
                                   split_dir=split_dir, annotation_file=annotation_file)
    dataset.write_manifest()
    return dataset


# --------------------------------------------------------------------------------------------- XD-Violence
def write_synthetic_xd_violence(
    out: str | os.PathLike[str],
    codes: Sequence[str] = XD_VIOLENCE_CODES[1:],
    train_per_code: int = 1,
    test_per_code: int = 1,
    normal_train: int = 2,
    normal_test: int = 2,
    num_frames: int = 48,
    height: int = 96,
    width: int = 128,
    num_scenes: int = 2,
    normal_objects: int = 2,
    fps: float = 24.0,
    seed: int = 0,
) -> SyntheticWeakDataset:
    """Write a synthetic XD-Violence (layout in the module docstring) and return its ground truth.

    Single-label videos hold one intruder (the first test one two ranges); each split also gets one two-label
    video (``…_label_<c1>-<c2>-0``) with one intruder per category in disjoint ranges. ``annotations.txt`` has
    no per-segment categories (as the official file); its last line carries a ``.mp4`` suffix, as some official
    lines do.
    """
    _check(height, width, num_frames)
    unknown = [c for c in codes if c not in XD_VIOLENCE_CODES[1:]]
    if unknown or not codes:
        raise ValueError(f"codes must be XD-Violence violence codes ({', '.join(XD_VIOLENCE_CODES[1:])}), got {unknown}")
    out = Path(out)
    backgrounds = [scene_background(height, width, seed * 1000 + 900 + s) for s in range(num_scenes)]
    plan: list[tuple[str, tuple[str, ...]]] = []
    for split, per in (("train", train_per_code), ("test", test_per_code)):
        plan += [(split, (code,)) for code in codes for _ in range(per)]
        if len(codes) >= 2:
            plan.append((split, (codes[0], codes[1])))
    plan += [("train", ("A",))] * normal_train + [("test", ("A",))] * normal_test
    videos: dict[str, SyntheticWeakVideo] = {}
    lines: list[str] = []
    first_abnormal_test = True
    for n, (split, labels) in enumerate(plan):
        rng = np.random.default_rng([seed, 13, n])
        label = "A" if labels == ("A",) else "-".join([*labels, *["0"] * (3 - len(labels))])
        video_id = f"v=Synth{n:04d}__#1_label_{label}"
        ranges: list[tuple[str, int, int]] = []
        if labels != ("A",):
            if len(labels) == 2:
                (a0, a1), (b0, b1) = _two_ranges(rng, num_frames)
                ranges = [(labels[0], a0, a1), (labels[1], b0, b1)]
            elif split == "test" and first_abnormal_test:
                ranges = [(labels[0], a, b) for a, b in _two_ranges(rng, num_frames)]
                first_abnormal_test = False
            else:
                ranges = [(labels[0], *_range(rng, num_frames))]
        frames, masks = _draw_video(rng, backgrounds[n % num_scenes], num_frames,
                                    [(XD_VIOLENCE_CODES.index(c), a, b) for c, a, b in ranges], normal_objects)
        video = SyntheticWeakVideo(video_id, split, labels, num_frames, ranges, path=out / split / f"{video_id}.mp4")
        _save(out, video, frames, masks, fps)
        videos[video_id] = video
        if split == "test" and ranges:
            lines.append(" ".join([video_id, *(f"{a} {b}" for _, a, b in sorted(ranges, key=lambda r: r[1]))]))
    if lines:
        name, rest = lines[-1].split(" ", 1)
        lines[-1] = f"{name}.mp4 {rest}"
    annotation_file = write_text_atomic(out / "annotations.txt", "".join(f"{line}\n" for line in lines))
    dataset = SyntheticWeakDataset("xd_violence", out, out, XD_VIOLENCE_CODES, videos, (height, width), fps, seed,
                                   annotation_file=annotation_file)
    dataset.write_manifest()
    return dataset


def write_synthetic_weak(dataset: str, out: str | os.PathLike[str], num_frames: int = 48, height: int = 96,
                         width: int = 128, seed: int = 0, train_per_category: int | None = None) -> SyntheticWeakDataset:
    """``tvau synth-data --dataset ucf_crime|xd_violence``: the writer of ``dataset`` with the command's sizes
    (``--videos`` = training videos per category; default 2 for UCF-Crime, 1 for XD-Violence)."""
    if dataset == "ucf_crime":
        return write_synthetic_ucf_crime(out, num_frames=num_frames, height=height, width=width, seed=seed,
                                         train_per_category=train_per_category or 2)
    if dataset == "xd_violence":
        return write_synthetic_xd_violence(out, num_frames=num_frames, height=height, width=width, seed=seed,
                                           train_per_code=train_per_category or 1)
    raise ValueError(f"unknown weakly labelled dataset {dataset!r}; use ucf_crime or xd_violence")
