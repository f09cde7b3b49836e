"""Writers of small synthetic datasets in UBnormal's and ShanghaiTech's native layouts (SPEC §5).

The scenes are seeded and deterministic: a static textured background per scene, several slow grey/blue
"people" (normal objects) and anomalies with exact ground truth — a bright red/orange object, bigger than
the people, moving fast and erratically, only within a known frame range. Colour makes the anomaly visible
to a tiny random vision tower, so a stage-1 AHD can learn to localise it (the demo and the tests rely on it).

UBnormal: one id per object in the per-frame pngs (normal objects too), tracks files covering three
cases — several tracks, a one-line file (no trailing newline) whose object is present and normal outside
its abnormal range, and a ``_new_tracks.txt`` beside the ``_tracks.txt`` (frame labels follow ``_tracks.txt``,
RBDC/TBDC tracks ``_new_tracks.txt``, as in the authors' scripts) — and an abnormal object that sometimes sheds
a small detached part of the same id (its GT box is the larger body). ShanghaiTech: normal training ``.avi``
videos, testing jpg frame folders, frame masks and pixel masks, one of them stored ``(H, W, T)`` as some public
copies are, and per-video RBDC/TBDC track files in the published format (``track_id,frame,x_min,y_min,x_max,
y_max``), where two touching anomalous objects make one connected component of the pixel mask but two tracks.

Video compression makes frame pixels approximate; masks, labels and boxes are exact. Every writer returns
the ground truth it drew (:class:`SyntheticDataset`) and stores it as ``synthetic_manifest.json``.

Command line: ``tvau synth-data --dataset ubnormal|shanghaitech --out DIR [--videos N --frames T --seed S]``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from tvau_lightning.atomic import atomic_path, write_text_atomic

UBNORMAL_SPLITS = ("training", "validation", "test")
#: how a synthetic ``_new_tracks.txt`` differs from its ``_tracks.txt`` (see :func:`write_synthetic_ubnormal`)
NewTracks = Literal["split", "narrow"]
MANIFEST_NAME = "synthetic_manifest.json"

_NORMAL_COLOURS = ((128, 128, 132), (70, 90, 160), (95, 105, 120), (60, 110, 150), (150, 150, 160), (45, 70, 120))
_ABNORMAL_COLOURS = ((255, 40, 20), (255, 140, 0), (255, 70, 110))


@dataclass
class SyntheticVideo:
    """The ground truth drawn into one synthetic video.

    Attributes:
        video_id: the video's name in the dataset.
        split: ``training``/``validation``/``test`` (UBnormal) or ``training``/``testing`` (ShanghaiTech).
        abnormal: whether any anomaly occurs.
        num_frames: frame count.
        frame_labels: ``(T,)`` int64, 1 inside an anomaly.
        tracks: per RBDC/TBDC track, ``(n, 5)`` int64 rows ``(frame, x1, y1, x2, y2)`` of the anomalous object's
            main body (inclusive pixels) — the region ground truth (UBnormal: one per line of
            ``_new_tracks.txt`` when written, else of ``_tracks.txt``; ShanghaiTech: one per object).
        track_object_ids: the png id of each track's object.
        track_ranges: the ``(start, end)`` of each track (inclusive).
        label_tracks: UBnormal: the ``(object_id, start, end)`` lines of ``_tracks.txt`` (frame labels, masks).
        normal_object_ids: png ids of the normal objects (UBnormal).
        path: the video file or frame folder.
    """

    video_id: str
    split: str
    abnormal: bool
    num_frames: int
    frame_labels: np.ndarray
    tracks: list[np.ndarray] = field(default_factory=list)
    track_object_ids: list[int] = field(default_factory=list)
    track_ranges: list[tuple[int, int]] = field(default_factory=list)
    normal_object_ids: list[int] = field(default_factory=list)
    path: Path | None = None
    label_tracks: list[tuple[int, int, int]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "abnormal": self.abnormal,
            "num_frames": self.num_frames,
            "frame_labels": self.frame_labels.tolist(),
            "tracks": [t.tolist() for t in self.tracks],
            "track_object_ids": self.track_object_ids,
            "track_ranges": [list(r) for r in self.track_ranges],
            "normal_object_ids": self.normal_object_ids,
            "path": str(self.path) if self.path else None,
            "label_tracks": [list(t) for t in self.label_tracks],
        }


@dataclass
class SyntheticDataset:
    """What a writer produced: where, and the exact ground truth of every video."""

    dataset: str
    root: Path
    videos: dict[str, SyntheticVideo]
    size: tuple[int, int]
    fps: float
    seed: int
    split_dir: Path | None = None
    tracks_dir: Path | None = None

    def split(self, name: str) -> list[str]:
        """Video ids of a split, in writing order."""
        return [v for v, info in self.videos.items() if info.split == name]

    def write_manifest(self) -> Path:
        payload = {
            "dataset": self.dataset,
            "root": str(self.root),
            "split_dir": str(self.split_dir) if self.split_dir else None,
            "tracks_dir": str(self.tracks_dir) if self.tracks_dir else None,
            "size": list(self.size),
            "fps": self.fps,
            "seed": self.seed,
            "videos": {k: v.to_json() for k, v in self.videos.items()},
        }
        return write_text_atomic(self.root / MANIFEST_NAME, json.dumps(payload, indent=1))


# --------------------------------------------------------------------------------------------- drawing
def scene_background(height: int, width: int, seed: int) -> np.ndarray:
    """A static ``(H, W, 3)`` uint8 textured scene: a soft gradient, smoothed noise, a few 'buildings' and
    a paved path, in muted greens/greys/browns (no saturated reds, which are reserved for anomalies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.array(rng.uniform([70, 90, 60], [120, 140, 110]), dtype=np.float32)
    gradient = (yy / max(height - 1, 1))[..., None] * rng.uniform(-30, 30, 3).astype(np.float32)
    noise = rng.normal(0, 1, (height // 4 + 2, width // 4 + 2, 3)).astype(np.float32)
    noise = np.kron(noise, np.ones((4, 4, 1), dtype=np.float32))[:height, :width]
    image = base + gradient + 10 * noise
    for _ in range(3):  # buildings along the top
        w = int(rng.integers(width // 8, width // 4))
        h = int(rng.integers(height // 6, height // 3))
        x = int(rng.integers(0, max(1, width - w)))
        image[:h, x : x + w] = rng.uniform(90, 150) + 8 * noise[:h, x : x + w]
    path_row = int(rng.integers(height // 2, height - height // 6))
    image[path_row : path_row + max(2, height // 12)] = np.array([150, 140, 120], dtype=np.float32)
    stripes = ((xx // max(2, width // 30)) % 2 == 0)[..., None] * 6.0
    return np.clip(image + stripes, 0, 255).astype(np.uint8)


def _texture(kind: str, height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """An object's appearance: vertical stripes for people, a checkerboard for anomalies."""
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == "abnormal":
        pattern = ((yy // 3 + xx // 3) % 2) * 35.0
    else:
        pattern = (xx % 3 == 0) * 20.0 + (yy < height // 4) * 25.0  # a lighter 'head'
    patch = np.array(colour, dtype=np.float32)[None, None] - pattern[..., None]
    return np.clip(patch, 0, 255).astype(np.uint8)


@dataclass
class _Actor:
    """One drawn object: its id, per-frame main-body box (or None when absent) and colour per frame."""

    object_id: int
    boxes: list[tuple[int, int, int, int] | None]
    abnormal_frames: set[int]
    normal_colour: tuple[int, int, int]
    abnormal_colour: tuple[int, int, int]
    satellites: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def _walk(
    rng: np.random.Generator,
    frames: range,
    size: tuple[int, int],
    band: tuple[int, int, int, int],
    speed: float,
    erratic: bool,
    start: tuple[float, float] | None = None,
) -> dict[int, tuple[int, int, int, int]]:
    """Box positions of an object of ``size = (h, w)`` walking inside ``band = (x0, y0, x1, y1)``."""
    h, w = size
    x0, y0, x1, y1 = band
    max_x, max_y = x1 - w + 1, y1 - h + 1
    x, y = start if start is not None else (rng.uniform(x0, max_x), rng.uniform(y0, max_y))
    angle = rng.uniform(0, 2 * np.pi)
    boxes = {}
    for i, frame in enumerate(frames):
        if erratic and i % int(rng.integers(3, 6)) == 0:
            angle = rng.uniform(0, 2 * np.pi)
        vx, vy = speed * np.cos(angle), speed * np.sin(angle)
        if i > 0:
            x, y = x + vx, y + vy
            if not x0 <= x <= max_x:
                angle = np.pi - angle
                x = float(np.clip(x, x0, max_x))
            if not y0 <= y <= max_y:
                angle = -angle
                y = float(np.clip(y, y0, max_y))
        xi, yi = int(round(x)), int(round(y))
        boxes[frame] = (xi, yi, xi + w - 1, yi + h - 1)
    return boxes


def _satellite(box: tuple[int, int, int, int], band: tuple[int, int, int, int], side: int) -> tuple[int, int, int, int] | None:
    """A small square of the same object detached from ``box`` by a 3-pixel gap, inside ``band``; None if no room."""
    x1, y1, x2, y2 = box
    s = max(2, (y2 - y1 + 1) // 5)
    cy = (y1 + y2) // 2
    for direction in (side, -side):
        sx = x2 + 4 if direction > 0 else x1 - 4 - s + 1
        candidate = (sx, cy, sx + s - 1, cy + s - 1)
        if candidate[0] >= band[0] and candidate[2] <= band[2] and candidate[1] >= band[1] and candidate[3] <= band[3]:
            return candidate
    return None


def _render(
    background: np.ndarray, normals: list[_Actor], abnormals: list[_Actor], num_frames: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames and object-id maps; anomalous actors are drawn last (never occluded)."""
    frames, id_maps = [], []
    for t in range(num_frames):
        image = background.copy()
        ids = np.zeros(background.shape[:2], dtype=np.uint8)
        for actor in [*normals, *abnormals]:
            box = actor.boxes[t]
            if box is None:
                continue
            abnormal = t in actor.abnormal_frames
            kind = "abnormal" if abnormal else "normal"
            colour = actor.abnormal_colour if abnormal else actor.normal_colour
            parts = [box] + ([actor.satellites[t]] if t in actor.satellites else [])
            for x1, y1, x2, y2 in parts:
                image[y1 : y2 + 1, x1 : x2 + 1] = _texture(kind, y2 - y1 + 1, x2 - x1 + 1, colour)
                ids[y1 : y2 + 1, x1 : x2 + 1] = actor.object_id
        frames.append(image)
        id_maps.append(ids)
    return frames, id_maps


def _normal_actors(
    rng: np.random.Generator, height: int, width: int, num_frames: int, count: int
) -> list[_Actor]:
    actors = []
    h, w = max(6, int(0.16 * height)), max(3, int(0.05 * width))
    for k in range(count):
        colour = _NORMAL_COLOURS[int(rng.integers(len(_NORMAL_COLOURS)))]
        walk = _walk(rng, range(num_frames), (h, w), (0, 0, width - 1, height - 1), 0.006 * width, erratic=False)
        actors.append(_Actor(k + 1, [walk[t] for t in range(num_frames)], set(), colour, colour))
    return actors


def _abnormal_range(rng: np.random.Generator, num_frames: int) -> tuple[int, int]:
    start = int(rng.integers(int(0.15 * num_frames), int(0.4 * num_frames) + 1))
    end = int(rng.integers(int(0.6 * num_frames), int(0.9 * num_frames) + 1))
    return start, max(start + 1, min(end, num_frames - 1))


def _bands(height: int, width: int, count: int) -> list[tuple[int, int, int, int]]:
    """Disjoint horizontal bands, one per anomalous object, so anomalies never touch or occlude each other."""
    edges = np.linspace(0, height, count + 1).astype(int)
    return [(0, int(edges[i]) + (1 if i else 0), width - 1, int(edges[i + 1]) - 1) for i in range(count)]


def _abnormal_actor(
    rng: np.random.Generator,
    object_id: int,
    height: int,
    width: int,
    num_frames: int,
    band: tuple[int, int, int, int],
    abnormal: tuple[int, int],
    present: tuple[int, int],
    satellites: bool,
) -> _Actor:
    """An object present in frames ``present`` (inclusive) and anomalous (red, big, fast, erratic) in ``abnormal``."""
    band_h = band[3] - band[1] + 1
    h = min(band_h - 2, max(8, int(0.26 * height)))
    w = max(6, int(0.11 * width))
    boxes: list[tuple[int, int, int, int] | None] = [None] * num_frames
    start, end = abnormal
    if present[0] < start:  # a normal walk first, ending where the anomaly starts
        before = _walk(rng, range(present[0], start), (h, w), band, 0.006 * width, erratic=False)
        for t, b in before.items():
            boxes[t] = b
        origin = (float(before[start - 1][0]), float(before[start - 1][1]))
    else:
        origin = None
    wild = _walk(rng, range(start, end + 1), (h, w), band, 0.03 * width, erratic=True, start=origin)
    for t, b in wild.items():
        boxes[t] = b
    if present[1] > end:
        last = boxes[end]
        after = _walk(rng, range(end, present[1] + 1), (h, w), band, 0.006 * width, erratic=False,
                      start=(float(last[0]), float(last[1])))
        for t, b in after.items():
            if t > end:
                boxes[t] = b
    colour = _ABNORMAL_COLOURS[int(rng.integers(len(_ABNORMAL_COLOURS)))]
    actor = _Actor(object_id, boxes, set(range(start, end + 1)), (118, 118, 124), colour)
    if satellites:  # a detached small part (a thrown object) every few frames of the anomaly
        for t in range(start, end + 1):
            if (t - start) % 6 in (2, 3):
                part = _satellite(boxes[t], band, side=1 if t % 2 else -1)
                if part is not None:
                    actor.satellites[t] = part
    return actor


def _track_rows(actor: _Actor, start: int, end: int) -> np.ndarray:
    rows = [[t, *actor.boxes[t]] for t in range(start, end + 1) if actor.boxes[t] is not None]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


def _write_video(path: Path, frames: Sequence[np.ndarray], fps: float, codec: str) -> None:
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"video frames must have even sides for yuv420p, got {height}x{width}")
    params = ["-crf", "18"] if codec == "libx264" else ["-q:v", "2"]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=fps, codec=codec, pix_fmt_out="yuv420p", quality=None,
            macro_block_size=1, output_params=params, ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def _write_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp)


def _check_size(height: int, width: int, num_frames: int) -> None:
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise ValueError(f"synthetic frame size must be even and at least 32x32, got {height}x{width}")
    if num_frames < 12:
        raise ValueError(f"synthetic videos need at least 12 frames, got {num_frames}")


# --------------------------------------------------------------------------------------------- UBnormal
def _new_tracks_lines(lines: list[tuple[int, int, int]], mode: NewTracks) -> list[tuple[int, int, int]]:
    """The ``_new_tracks.txt`` lines written beside ``lines`` (see :func:`write_synthetic_ubnormal`)."""
    out = []
    for object_id, start, end in lines:
        if mode == "split" and end > start:
            middle = (start + end) // 2
            out += [(object_id, start, middle), (object_id, middle + 1, end)]
        elif mode == "narrow" and end - start >= 4:
            out.append((object_id, start + 2, end - 2))
        else:
            out.append((object_id, start, end))
    return out


def write_synthetic_ubnormal(
    out: str | os.PathLike[str],
    videos_per_split: int = 3,
    abnormal_per_split: int = 2,
    num_frames: int = 48,
    height: int = 120,
    width: int = 180,
    num_scenes: int = 2,
    normal_objects: int = 3,
    fps: float = 30.0,
    seed: int = 0,
    new_tracks: NewTracks = "split",
) -> SyntheticDataset:
    """Write a synthetic UBnormal (``Scene{s}/…``, split files in ``out/scripts``) and return its ground truth.

    Each split gets ``abnormal_per_split`` abnormal and ``videos_per_split - abnormal_per_split`` normal videos.
    Abnormal videos cycle through three cases: two anomalous intruders with their own ranges (two tracks
    lines), an object that walks normally and turns anomalous (a one-line tracks file without a trailing
    newline; its id is in the pngs outside the range too), and a ``_new_tracks.txt`` that differs from the
    ``_tracks.txt``: ``new_tracks="split"`` cuts each line's range in two tracks (same frames, so frame labels
    agree either way), ``"narrow"`` shortens each range by 2 frames at both ends (frame labels from it would
    differ). One video name carries an irregular ``_fog`` suffix.
    """
    if new_tracks not in ("split", "narrow"):
        raise ValueError(f"new_tracks must be 'split' or 'narrow', got {new_tracks!r}")
    _check_size(height, width, num_frames)
    if not 0 <= abnormal_per_split <= videos_per_split or videos_per_split < 1:
        raise ValueError(f"need 0 <= abnormal_per_split <= videos_per_split (>= 1), got "
                         f"{abnormal_per_split}, {videos_per_split}")
    root = Path(out)
    split_dir = root / "scripts"
    backgrounds = {s: scene_background(height, width, seed * 1000 + s) for s in range(1, num_scenes + 1)}
    scenarios: dict[tuple[int, str], int] = {}
    videos: dict[str, SyntheticVideo] = {}
    abnormal_count = 0
    for split_no, split in enumerate(UBNORMAL_SPLITS):
        names: dict[str, list[str]] = {"abnormal": [], "normal": []}
        for k in range(videos_per_split):
            abnormal = k < abnormal_per_split
            kind = "abnormal" if abnormal else "normal"
            scene = (split_no + k) % num_scenes + 1
            scenario = scenarios[(scene, kind)] = scenarios.get((scene, kind), 0) + 1
            case = abnormal_count % 3 if abnormal else -1
            name = f"{kind}_scene_{scene}_scenario_{scenario}" + ("_fog" if case == 1 and abnormal_count == 1 else "")
            rng = np.random.default_rng([seed, split_no, k])
            normals = _normal_actors(rng, height, width, num_frames, normal_objects)
            abnormals: list[_Actor] = []
            lines: list[tuple[int, int, int]] = []
            if abnormal:
                count = 2 if case == 0 else 1
                for j, band in enumerate(_bands(height, width, count)):
                    rng_range = _abnormal_range(rng, num_frames)
                    present = (0, num_frames - 1) if case == 1 else rng_range
                    object_id = 10 + j if case != 1 else 12
                    actor = _abnormal_actor(rng, object_id, height, width, num_frames, band, rng_range, present,
                                            satellites=True)
                    abnormals.append(actor)
                    lines.append((object_id, *rng_range))
                abnormal_count += 1
            frames, id_maps = _render(backgrounds[scene], normals, abnormals, num_frames)
            folder = root / f"Scene{scene}"
            video_path = folder / f"{name}.mp4"
            _write_video(video_path, frames, fps, "libx264")
            annotations = folder / f"{name}_annotations"
            for t, ids in enumerate(id_maps):
                _write_png(annotations / f"{name}_{t:04d}_gt.png", ids)
            region_lines = lines
            if abnormal:
                text = "\n".join(f"{o},{s},{e}" for o, s, e in lines)
                write_text_atomic(annotations / f"{name}_tracks.txt", text if case == 1 else text + "\n")
                if case == 2:  # frame labels follow _tracks.txt, RBDC/TBDC tracks follow _new_tracks.txt
                    region_lines = _new_tracks_lines(lines, new_tracks)
                    write_text_atomic(annotations / f"{name}_new_tracks.txt",
                                      "".join(f"{o},{s},{e}\n" for o, s, e in region_lines))
            actors = {a.object_id: a for a in abnormals}
            labels = np.zeros(num_frames, dtype=np.int64)
            for _, s, e in lines:
                labels[s : e + 1] = 1
            videos[name] = SyntheticVideo(
                video_id=name,
                split=split,
                abnormal=abnormal,
                num_frames=num_frames,
                frame_labels=labels,
                tracks=[_track_rows(actors[o], s, e) for o, s, e in region_lines],
                track_object_ids=[o for o, _, _ in region_lines],
                track_ranges=[(s, e) for _, s, e in region_lines],
                normal_object_ids=[a.object_id for a in normals],
                path=video_path,
                label_tracks=list(lines),
            )
            names[kind].append(name)
        for kind, listed in names.items():
            write_text_atomic(split_dir / f"{kind}_{split}_video_names.txt", "".join(f"{n}\n" for n in listed))
    dataset = SyntheticDataset("ubnormal", root, videos, (height, width), fps, seed, split_dir=split_dir)
    dataset.write_manifest()
    return dataset


# --------------------------------------------------------------------------------------------- ShanghaiTech
def _glued_actor(actor: _Actor, object_id: int, width: int) -> _Actor:
    """An object ``width`` pixels wide touching ``actor``'s right edge on every frame (its lower two thirds)."""
    boxes: list[tuple[int, int, int, int] | None] = []
    for box in actor.boxes:
        if box is None:
            boxes.append(None)
            continue
        x1, y1, x2, y2 = box
        boxes.append((x2 + 1, y1 + (y2 - y1 + 1) // 3, x2 + width, y2))
    return _Actor(object_id, boxes, set(actor.abnormal_frames), actor.normal_colour, (255, 175, 30))


def _write_track_file(path: Path, tracks: list[np.ndarray], out_of_order: bool = False) -> None:
    """One published-format RBDC/TBDC track file: ``track_id,frame,x_min,y_min,x_max,y_max`` per line."""
    lines = []
    for track_id, rows in enumerate(tracks):
        rows = np.asarray(rows)
        if out_of_order and track_id == 0 and len(rows) > 3:
            half = len(rows) // 2
            rows = np.concatenate([rows[half:], rows[:half]])
        lines += [f"{track_id}," + ",".join(str(int(v)) for v in row) for row in rows]
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


def write_synthetic_shanghaitech(
    out: str | os.PathLike[str],
    train_videos: int = 3,
    test_videos: int = 5,
    abnormal_test_videos: int = 4,
    num_frames: int = 48,
    height: int = 120,
    width: int = 180,
    num_scenes: int = 2,
    normal_objects: int = 3,
    fps: float = 24.0,
    hwt_masks: int = 1,
    seed: int = 0,
    touching: bool = True,
    track_files: bool = True,
) -> SyntheticDataset:
    """Write a synthetic ShanghaiTech Campus (``training/videos``, ``testing/{frames,test_frame_mask,test_pixel_mask}``).

    Testing videos ``0 … abnormal_test_videos-1`` hold one or two anomalous intruders (binary pixel masks,
    frame masks); the rest are normal. The first ``hwt_masks`` abnormal videos store their pixel mask as
    ``(H, W, T)``. Testing videos get ``num_frames + 2 * index`` frames so lengths differ. With ``touching``,
    the last abnormal video's first intruder pushes a second anomalous object glued to its right side: the
    pixel mask holds one connected component where the ground truth has two tracks. With ``track_files``,
    ``out/annotations/ShanghaiTech/{video}.txt`` holds the tracks of every abnormal testing video in the
    published format (``track_id,frame,x_min,y_min,x_max,y_max``, inclusive pixels, 0-based frames; the
    first video's first track written in two out-of-order runs, as a few published files are), next to a
    ``readme.txt`` like the published folder's (:attr:`SyntheticDataset.tracks_dir`).
    """
    _check_size(height, width, num_frames)
    if not 0 <= abnormal_test_videos <= test_videos:
        raise ValueError(f"need 0 <= abnormal_test_videos <= test_videos, got {abnormal_test_videos}, {test_videos}")
    root = Path(out)
    tracks_dir = root / "annotations" / "ShanghaiTech"
    backgrounds = {s: scene_background(height, width, seed * 1000 + 500 + s) for s in range(1, num_scenes + 1)}
    videos: dict[str, SyntheticVideo] = {}
    for k in range(train_videos):
        scene = k % num_scenes + 1
        name = f"{scene:02d}_{k // num_scenes + 1:03d}"
        rng = np.random.default_rng([seed, 7, k])
        normals = _normal_actors(rng, height, width, num_frames, normal_objects)
        frames, _ = _render(backgrounds[scene], normals, [], num_frames)
        path = root / "training" / "videos" / f"{name}.avi"
        _write_video(path, frames, fps, "mpeg4")
        videos[name] = SyntheticVideo(name, "training", False, num_frames, np.zeros(num_frames, np.int64), path=path)
    for k in range(test_videos):
        scene = k % num_scenes + 1
        name = f"{scene:02d}_{k // num_scenes + 1:04d}"
        length = num_frames + 2 * k
        rng = np.random.default_rng([seed, 8, k])
        normals = _normal_actors(rng, height, width, length, normal_objects)
        abnormals: list[_Actor] = []
        ranges: list[tuple[int, int]] = []
        if k < abnormal_test_videos:
            count = 2 if k % 2 else 1
            glued = touching and k == abnormal_test_videos - 1
            for j, band in enumerate(_bands(height, width, count)):
                span = _abnormal_range(rng, length)
                side = max(4, int(0.06 * width)) if glued and j == 0 else 0
                walk_band = (band[0], band[1], band[2] - side, band[3])
                actor = _abnormal_actor(rng, 10 + j, height, width, length, walk_band, span, span, satellites=False)
                abnormals.append(actor)
                ranges.append(span)
                if side:  # a second object touching the first one's right edge: one mask component, two tracks
                    abnormals.append(_glued_actor(actor, 20, side))
                    ranges.append(span)
        frames, id_maps = _render(backgrounds[scene], normals, abnormals, length)
        folder = root / "testing" / "frames" / name
        for t, frame in enumerate(frames):
            with atomic_path(folder / f"{t:03d}.jpg") as tmp:
                Image.fromarray(frame).save(tmp, quality=95)
        abnormal_ids = [a.object_id for a in abnormals]
        pixel = np.stack([np.isin(ids, abnormal_ids) for ids in id_maps]).astype(np.uint8)
        labels = pixel.reshape(length, -1).max(axis=1).astype(np.int64)
        stored = np.ascontiguousarray(pixel.transpose(1, 2, 0)) if k < min(hwt_masks, abnormal_test_videos) else pixel
        with atomic_path(root / "testing" / "test_pixel_mask" / f"{name}.npy") as tmp:
            np.save(tmp, stored)
        with atomic_path(root / "testing" / "test_frame_mask" / f"{name}.npy") as tmp:
            np.save(tmp, labels)
        videos[name] = SyntheticVideo(
            video_id=name,
            split="testing",
            abnormal=bool(abnormals),
            num_frames=length,
            frame_labels=labels,
            tracks=[_track_rows(a, s, e) for a, (s, e) in zip(abnormals, ranges)],
            track_object_ids=abnormal_ids,
            track_ranges=ranges,
            normal_object_ids=[a.object_id for a in normals],
            path=folder,
        )
        if track_files and abnormals:
            _write_track_file(tracks_dir / f"{name}.txt", videos[name].tracks, out_of_order=k == 0)
    if track_files:
        write_text_atomic(tracks_dir / "readme.txt",
                          "The files have the following format:\n\ntrack_id,frame_idx,x_min,y_min,x_max,y_max\n")
    dataset = SyntheticDataset("shanghaitech", root, videos, (height, width), fps, seed,
                               tracks_dir=tracks_dir if track_files else None)
    dataset.write_manifest()
    return dataset


# --------------------------------------------------------------------------------------------- CLI
def synth_data_main(argv: Sequence[str] | None = None) -> int:
    """``tvau synth-data``: write a synthetic dataset in a native layout."""
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau synth-data",
        description="Write a small synthetic dataset in UBnormal's or ShanghaiTech's native on-disk layout "
        "(seeded; red/orange erratic anomalies with exact masks, labels and tracks).",
    )
    parser.add_argument("--dataset", choices=("ubnormal", "shanghaitech"), required=True)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--videos", type=int, default=None,
                        help="UBnormal: videos per split (default 3); ShanghaiTech: testing videos (default 5)")
    parser.add_argument("--abnormal", type=int, default=None,
                        help="UBnormal: abnormal videos per split (default 2); ShanghaiTech: abnormal testing videos (default 4)")
    parser.add_argument("--train-videos", type=int, default=3, help="ShanghaiTech: normal training videos")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=180)
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.dataset == "ubnormal":
            videos = 3 if args.videos is None else args.videos
            data = write_synthetic_ubnormal(
                args.out, videos_per_split=videos, abnormal_per_split=min(videos, 2) if args.abnormal is None else args.abnormal,
                num_frames=args.frames, height=args.height, width=args.width, num_scenes=args.scenes, seed=args.seed,
            )
        else:
            videos = 5 if args.videos is None else args.videos
            data = write_synthetic_shanghaitech(
                args.out, train_videos=args.train_videos, test_videos=videos,
                abnormal_test_videos=min(videos, 4) if args.abnormal is None else args.abnormal,
                num_frames=args.frames, height=args.height, width=args.width, num_scenes=args.scenes, seed=args.seed,
            )
    except ValueError as error:
        parser.error(str(error))
    extra = f", split files in {data.split_dir}" if data.split_dir else ""
    extra += f", RBDC/TBDC track files in {data.tracks_dir}" if data.tracks_dir else ""
    print(f"wrote synthetic {data.dataset}: {len(data.videos)} videos of {data.size[0]}x{data.size[1]} in {data.root}{extra}")
    return 0
