"""Exact trajectory and temporal-anchor text from geometry (paper §3.3, SPEC §5 "Dataset builder").

Everything here is deterministic: the same track gives the same words. A track is a sequence of boxes
``(x1, y1, x2, y2)`` in continuous pixel coordinates (a ground-truth box with inclusive corners
``(x1, y1, x2, y2)`` covers ``[x1, x2 + 1) × [y1, y2 + 1)``; see :func:`inclusive_to_continuous`) at
increasing frame numbers, which need not be consecutive (an annotator samples frames).

What a trajectory sentence says, and how each part is computed (thresholds in :class:`GeometrySettings`):

* **grid cells** — the frame is cut into a 3×3 grid; a box is in the cell that holds its centre
  (:data:`GRID_CELLS`: ``top-left`` … ``center`` … ``bottom-right``).
* **entry** — ``starts`` (visible on the clip's first frame), ``enters`` (first seen touching a frame
  border, within ``border_fraction`` of the frame side) or ``appears`` (first seen inside the frame).
* **exit** — ``ends`` (visible on the clip's last frame), ``leaves`` (last seen touching a border) or
  ``disappears`` (last seen inside).
* **main direction** — the net displacement of the smoothed centre path, 8-way (``right``, ``up-right``,
  ``up``, …; image ``y`` grows downward, so ``up`` is toward the top of the frame). A net displacement
  below ``min_move_fraction`` of the frame diagonal is ``stationary``: "stays in place" when its speed class
  is ``slow``, else "moves around … within a small area" (back-and-forth or erratic motion).
* **speed class** — length of the smoothed path per second, relative to the frame diagonal:
  ``slow`` below ``slow_below`` (0.05 diagonals/s), ``fast`` from ``fast_from`` (0.15 diagonals/s),
  ``moderate`` in between.
* **turns** — the smoothed path is simplified with Ramer–Douglas–Peucker (tolerance
  ``simplify_fraction`` of the diagonal); a vertex where the heading changes by more than ``turn_angle``
  degrees between two segments (each at least ``min_segment_fraction`` of the diagonal long) is a turn,
  named by the new 8-way heading and the frame of the vertex. More than ``max_listed_turns`` turns read
  "changing direction N times".
* **temporal anchors** — frame ranges with seconds, ``from frame 12 to frame 40 (0.4 s–1.3 s)``.

Frame numbers in the text are relative to the clip the dialogue is about: the pipeline passes tracks already
mapped to the record's own sampled-frame index (0 = the record's first sampled frame, ``fps`` = the record's
sampling rate), so that they mean what a model shown only those frames sees; ``frame_offset`` serves callers
with source-frame tracks. ``time_reference="seconds"`` writes times (``3.0 s``) instead of frame numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# box conventions are defined once, in metrics/boxes.py; re-exported for the builder modules
from tvau_lightning.metrics.boxes import inclusive_to_continuous as inclusive_to_continuous

#: 3×3 grid cell names, row-major (row 0 = top of the frame)
GRID_CELLS: tuple[tuple[str, str, str], ...] = (
    ("top-left", "top-center", "top-right"),
    ("middle-left", "center", "middle-right"),
    ("bottom-left", "bottom-center", "bottom-right"),
)
#: 8-way directions counter-clockwise from "right" (angles 0°, 45°, …, with y pointing up)
DIRECTIONS: tuple[str, ...] = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
#: how a direction reads in a sentence ("moves up and to the right")
DIRECTION_PHRASES: dict[str, str] = {
    "right": "to the right",
    "up-right": "up and to the right",
    "up": "upward",
    "up-left": "up and to the left",
    "left": "to the left",
    "down-left": "down and to the left",
    "down": "downward",
    "down-right": "down and to the right",
}
SPEED_CLASSES: tuple[str, ...] = ("slow", "moderate", "fast")
SPEED_PHRASES: dict[str, str] = {"slow": "slowly", "moderate": "at a moderate speed", "fast": "quickly"}
EDGES: tuple[str, ...] = ("left", "right", "top", "bottom")

EntryKind = Literal["starts", "enters", "appears"]
ExitKind = Literal["ends", "leaves", "disappears"]


@dataclass(frozen=True)
class GeometrySettings:
    """Thresholds of the geometry text (see the module docstring). Fractions are of the frame diagonal
    unless said otherwise."""

    min_move_fraction: float = 0.05
    slow_below: float = 0.05
    fast_from: float = 0.15
    smooth_seconds: float = 0.5
    simplify_fraction: float = 0.04
    min_segment_fraction: float = 0.05
    turn_angle: float = 45.0
    max_listed_turns: int = 3
    border_fraction: float = 0.02

    def __post_init__(self) -> None:
        if not 0 <= self.slow_below <= self.fast_from:
            raise ValueError(f"speed thresholds must satisfy 0 <= slow_below <= fast_from, got "
                             f"{self.slow_below}, {self.fast_from}")
        if not 0 < self.turn_angle < 180:
            raise ValueError(f"turn_angle must be in (0, 180) degrees, got {self.turn_angle}")


@dataclass(frozen=True)
class TurnPoint:
    """A heading change: from ``frame`` on, the target moves toward ``direction``."""

    frame: int
    direction: str


@dataclass
class TrajectoryFacts:
    """What the geometry says about one target within one clip (frames are absolute video frames).

    Attributes:
        first_frame, last_frame: first and last observed frame inside the clip.
        num_observations: boxes inside the clip.
        entry, entry_edge, entry_cell: how and where the target comes into view.
        exit, exit_edge, exit_cell: how and where it goes out of view (or ends).
        main_direction: 8-way net direction, ``None`` when stationary.
        initial_direction: 8-way heading of the first straight segment (``None`` when stationary).
        speed: smoothed path length per second in frame diagonals (0 for a single observation).
        speed_class: ``slow``/``moderate``/``fast``.
        turns: heading changes in time order.
    """

    first_frame: int
    last_frame: int
    num_observations: int
    entry: EntryKind
    entry_edge: str | None
    entry_cell: str
    exit: ExitKind
    exit_edge: str | None
    exit_cell: str
    main_direction: str | None
    initial_direction: str | None
    speed: float
    speed_class: str
    turns: list[TurnPoint] = field(default_factory=list)

    @property
    def stationary(self) -> bool:
        return self.main_direction is None


# --------------------------------------------------------------------------------------------- boxes
def box_centers(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` boxes → ``(n, 2)`` centres ``(x, y)``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def grid_cell(x: float, y: float, frame_size: tuple[int, int]) -> str:
    """Name of the 3×3 grid cell holding point ``(x, y)`` of a frame of ``frame_size`` ``(H, W)``."""
    height, width = frame_size
    col = min(2, max(0, int(math.floor(3 * x / width))))
    row = min(2, max(0, int(math.floor(3 * y / height))))
    return GRID_CELLS[row][col]


def direction_of(dx: float, dy: float) -> str:
    """8-way name of an image-space displacement (``dy`` > 0 points down the frame)."""
    angle = math.degrees(math.atan2(-dy, dx)) % 360.0
    return DIRECTIONS[int(((angle + 22.5) % 360.0) // 45.0)]


def direction_distance(a: str, b: str) -> int:
    """Steps of 45° between two 8-way directions (0 … 4)."""
    i, j = DIRECTIONS.index(a), DIRECTIONS.index(b)
    d = abs(i - j) % 8
    return min(d, 8 - d)


def touched_edge(box: np.ndarray, frame_size: tuple[int, int], fraction: float) -> str | None:
    """The frame edge a box touches (within ``fraction`` of the frame side, at least 1 px), or ``None``.

    When it touches several (a corner), the one it is closest to wins, in the order left, right, top,
    bottom on ties.
    """
    height, width = frame_size
    x1, y1, x2, y2 = (float(v) for v in box)
    gaps = {
        "left": (x1, max(1.0, fraction * width)),
        "right": (width - x2, max(1.0, fraction * width)),
        "top": (y1, max(1.0, fraction * height)),
        "bottom": (height - y2, max(1.0, fraction * height)),
    }
    touching = [(gap / margin, EDGES.index(edge), edge) for edge, (gap, margin) in gaps.items() if gap <= margin]
    return min(touching)[2] if touching else None


# --------------------------------------------------------------------------------------------- paths
def smooth_path(times: np.ndarray, points: np.ndarray, window_seconds: float) -> np.ndarray:
    """Centred moving average of ``(n, 2)`` points over ``±window_seconds / 2`` (times in seconds)."""
    times = np.asarray(times, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if window_seconds <= 0 or len(points) < 3:
        return points.copy()
    half = window_seconds / 2
    out = np.empty_like(points)
    for i, t in enumerate(times):
        near = np.abs(times - t) <= half + 1e-9
        out[i] = points[near].mean(axis=0)
    # the ends keep their raw position so that entry/exit are not pulled inward
    out[0], out[-1] = points[0], points[-1]
    return out


def simplify_path(points: np.ndarray, tolerance: float) -> list[int]:
    """Indices of the Ramer–Douglas–Peucker simplification of an ``(n, 2)`` polyline (ends always kept)."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n <= 2:
        return list(range(n))
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        a, b = points[start], points[end]
        seg = b - a
        inner = points[start + 1 : end]
        # distance to the segment (not the infinite line), so that a reversal along one line is a vertex
        denom = float(seg @ seg)
        t = np.clip(((inner - a) @ seg) / denom, 0.0, 1.0) if denom > 0 else np.zeros(len(inner))
        nearest = a + t[:, None] * seg
        dist = np.hypot(inner[:, 0] - nearest[:, 0], inner[:, 1] - nearest[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            mid = start + 1 + k
            keep[mid] = True
            stack.extend([(start, mid), (mid, end)])
    return np.flatnonzero(keep).tolist()


def _heading(vec: np.ndarray) -> float:
    return math.degrees(math.atan2(-vec[1], vec[0]))


def _angle_between(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def find_turns(
    frames: np.ndarray, path: np.ndarray, diagonal: float, settings: GeometrySettings
) -> tuple[str | None, list[TurnPoint]]:
    """The initial 8-way heading and the turns of a smoothed ``(n, 2)`` path observed at ``frames`` (see the
    module docstring). The initial heading is ``None`` when the path has no segment long enough."""
    vertices = simplify_path(path, settings.simplify_fraction * diagonal)
    min_len = settings.min_segment_fraction * diagonal
    # drop vertices that make too-short segments (keep both ends), so jitter does not read as turns
    kept = [vertices[0]]
    for v in vertices[1:-1]:
        if np.hypot(*(path[v] - path[kept[-1]])) >= min_len:
            kept.append(v)
    if len(vertices) > 1:
        if len(kept) > 1 and np.hypot(*(path[vertices[-1]] - path[kept[-1]])) < min_len:
            kept.pop()
        kept.append(vertices[-1])
    turns: list[TurnPoint] = []
    first_segment = path[kept[1]] - path[kept[0]] if len(kept) > 1 else np.zeros(2)
    if np.hypot(*first_segment) < min_len:
        return None, turns
    initial = direction_of(float(first_segment[0]), float(first_segment[1]))
    for i in range(1, len(kept) - 1):
        before = path[kept[i]] - path[kept[i - 1]]
        after = path[kept[i + 1]] - path[kept[i]]
        if _angle_between(_heading(before), _heading(after)) > settings.turn_angle:
            new_direction = direction_of(float(after[0]), float(after[1]))
            if new_direction == direction_of(float(before[0]), float(before[1])):
                continue  # a change above the angle that still reads as the same 8-way heading
            turns.append(TurnPoint(int(frames[kept[i]]), new_direction))
    return initial, turns


def speed_class(speed: float, settings: GeometrySettings) -> str:
    """``slow`` / ``moderate`` / ``fast`` for a speed in frame diagonals per second."""
    if speed < settings.slow_below:
        return "slow"
    if speed < settings.fast_from:
        return "moderate"
    return "fast"


def trajectory_facts(
    frames: Sequence[int] | np.ndarray,
    boxes: np.ndarray,
    frame_size: tuple[int, int],
    fps: float,
    clip_range: tuple[int, int] | None = None,
    *,
    frame_tolerance: int = 0,
    settings: GeometrySettings | None = None,
) -> TrajectoryFacts | None:
    """Compute the :class:`TrajectoryFacts` of a track inside a clip.

    Args:
        frames: ``(n,)`` increasing frame numbers of the observations.
        boxes: ``(n, 4)`` continuous boxes ``(x1, y1, x2, y2)`` at those frames.
        frame_size: ``(H, W)`` of the video.
        fps: frames per second (speed is per second).
        clip_range: ``(start, end)`` inclusive frames of the clip; default the track's own span.
        frame_tolerance: a first (last) observation within this many frames of the clip's start (end)
            counts as present at the start (end) — use the sampling step for sampled tracks.
        settings: thresholds (defaults documented in the module docstring).

    Returns:
        ``None`` when the track has no observation inside the clip.
    """
    settings = settings or GeometrySettings()
    frames = np.asarray(frames, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(frames) != len(boxes):
        raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
    if len(frames) > 1 and np.any(np.diff(frames) <= 0):
        order = np.argsort(frames, kind="stable")
        frames, boxes = frames[order], boxes[order]
        unique = np.concatenate([[True], np.diff(frames) > 0])
        frames, boxes = frames[unique], boxes[unique]
    if clip_range is None:
        if not len(frames):
            return None
        clip_range = (int(frames[0]), int(frames[-1]))
    start, end = clip_range
    inside = (frames >= start) & (frames <= end)
    frames, boxes = frames[inside], boxes[inside]
    if not len(frames):
        return None
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    height, width = frame_size
    diagonal = math.hypot(width, height)
    centers = box_centers(boxes)
    times = frames / float(fps)
    path = smooth_path(times, centers, settings.smooth_seconds)

    first, last = int(frames[0]), int(frames[-1])
    entry_edge = touched_edge(boxes[0], frame_size, settings.border_fraction)
    if first - start <= frame_tolerance:
        entry: EntryKind = "starts"
        entry_edge = None
    elif entry_edge is not None:
        entry = "enters"
    else:
        entry = "appears"
    exit_edge = touched_edge(boxes[-1], frame_size, settings.border_fraction)
    if end - last <= frame_tolerance:
        exit_kind: ExitKind = "ends"
        exit_edge = None
    elif exit_edge is not None:
        exit_kind = "leaves"
    else:
        exit_kind = "disappears"

    displacement = path[-1] - path[0]
    moved = math.hypot(displacement[0], displacement[1])
    duration = (last - first) / float(fps)
    length = float(np.sum(np.hypot(*np.diff(path, axis=0).T))) if len(path) > 1 else 0.0
    speed = length / diagonal / duration if duration > 0 else 0.0
    stationary = moved < settings.min_move_fraction * diagonal
    initial, turns = (None, []) if stationary else find_turns(frames, path, diagonal, settings)
    return TrajectoryFacts(
        first_frame=first,
        last_frame=last,
        num_observations=len(frames),
        entry=entry,
        entry_edge=entry_edge,
        entry_cell=grid_cell(*centers[0], frame_size),
        exit=exit_kind,
        exit_edge=exit_edge,
        exit_cell=grid_cell(*centers[-1], frame_size),
        main_direction=None if stationary else direction_of(float(displacement[0]), float(displacement[1])),
        initial_direction=initial,
        speed=speed,
        speed_class=speed_class(speed, settings),
        turns=turns,
    )


# --------------------------------------------------------------------------------------------- text
TimeReference = Literal["frames", "seconds"]
TIME_REFERENCES: tuple[str, ...] = ("frames", "seconds")


def time_text(frame: int, time_reference: TimeReference = "frames", fps: float | None = None) -> str:
    """``frame 12`` or, with ``time_reference="seconds"``, ``12.0 s`` (``frame / fps``)."""
    if time_reference == "frames":
        return f"frame {frame}"
    if time_reference != "seconds":
        raise ValueError(f"time_reference must be one of {', '.join(TIME_REFERENCES)}, got {time_reference!r}")
    if fps is None or fps <= 0:
        raise ValueError(f"time_reference='seconds' needs a positive fps, got {fps}")
    return f"{frame / fps:.1f} s"


def describe_trajectory(
    facts: TrajectoryFacts, subject: str, *, frame_offset: int = 0, settings: GeometrySettings | None = None,
    time_reference: TimeReference = "frames", fps: float | None = None,
) -> str:
    """One sentence about a target's motion, e.g. "The person enters from the left edge at frame 3 in the
    middle-left, moves to the right quickly, turns downward at frame 20, and leaves through the bottom edge
    at frame 41." Frame numbers are printed minus ``frame_offset`` (the clip's first frame); with
    ``time_reference="seconds"`` they read ``3.0 s`` (the relative frame divided by ``fps``)."""
    settings = settings or GeometrySettings()
    subject = subject[:1].upper() + subject[1:]

    def at(frame: int) -> str:
        return time_text(frame - frame_offset, time_reference, fps)

    if facts.num_observations == 1:
        return f"{subject} is seen only at {at(facts.first_frame)}, in the {facts.entry_cell}."
    if facts.entry == "starts":
        entry = f"starts in the {facts.entry_cell}"
    elif facts.entry == "enters":
        entry = f"enters from the {facts.entry_edge} edge at {at(facts.first_frame)}, in the {facts.entry_cell}"
    else:
        entry = f"appears in the {facts.entry_cell} at {at(facts.first_frame)}"
    if facts.exit == "ends":
        exit_text = f"ends in the {facts.exit_cell}"
    elif facts.exit == "leaves":
        exit_text = f"leaves through the {facts.exit_edge} edge at {at(facts.last_frame)}"
    else:
        exit_text = f"disappears in the {facts.exit_cell} at {at(facts.last_frame)}"

    if facts.stationary:
        if facts.speed_class != "slow":  # a long path that goes nowhere: back-and-forth or erratic motion
            return f"{subject} {entry}, moves around {SPEED_PHRASES[facts.speed_class]} within a small area, and {exit_text}."
        if facts.entry == "starts" and facts.exit == "ends":
            return f"{subject} stays in place in the {facts.entry_cell} throughout."
        return f"{subject} {entry}, stays in place, and {exit_text}."
    main = DIRECTION_PHRASES[str(facts.main_direction)]
    speed = SPEED_PHRASES[facts.speed_class]
    if not facts.turns:
        motion = f"moves {main} {speed}"
    elif len(facts.turns) > settings.max_listed_turns:
        motion = f"moves {main} {speed}, changing direction {len(facts.turns)} times"
    else:
        motion = f"moves {DIRECTION_PHRASES[str(facts.initial_direction or facts.main_direction)]} {speed}"
        motion += "".join(f", turns {DIRECTION_PHRASES[t.direction]} at {at(t.frame)}" for t in facts.turns)
        motion += f" (overall {main})"
    return f"{subject} {entry}, {motion}, and {exit_text}."


def label_ranges(labels: Sequence[int] | np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` runs of non-zero entries of a ``(T,)`` label array (plus ``offset``)."""
    labels = np.asarray(labels).reshape(-1) != 0
    if not labels.any():
        return []
    padded = np.concatenate([[False], labels, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s) + offset, int(e) - 1 + offset) for s, e in zip(edges[::2], edges[1::2])]


def describe_anchor(start: int, end: int, fps: float, frame_offset: int = 0,
                    time_reference: TimeReference = "frames") -> str:
    """``from frame 12 to frame 40 (0.4 s–1.3 s)`` (or ``at frame 12 (0.4 s)``), relative to ``frame_offset``;
    with ``time_reference="seconds"``: ``from 0.4 s to 1.3 s`` (or ``at 0.4 s``)."""
    s, e = start - frame_offset, end - frame_offset
    if time_reference == "seconds":
        return f"at {time_text(s, 'seconds', fps)}" if s == e else \
            f"from {time_text(s, 'seconds', fps)} to {time_text(e, 'seconds', fps)}"
    if s == e:
        return f"at frame {s} ({s / fps:.1f} s)"
    return f"from frame {s} to frame {e} ({s / fps:.1f} s–{e / fps:.1f} s)"


def describe_anchors(ranges: Sequence[tuple[int, int]], fps: float, frame_offset: int = 0,
                     time_reference: TimeReference = "frames") -> str:
    """A sentence for one or more frame ranges: ``From frame 3 to frame 10 (…) and from frame 20 to …``."""
    if not ranges:
        raise ValueError("describe_anchors needs at least one range")
    parts = [describe_anchor(s, e, fps, frame_offset, time_reference) for s, e in ranges]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[:1].upper() + text[1:] + "."
