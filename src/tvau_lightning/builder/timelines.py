"""Per-target timelines from frame-level detections (paper §3.3 step 1: "identity association and spatial
proximity constraints").

:func:`associate` links the objects an annotator reported on sampled frames into timelines, frame by frame,
with an optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) between the open timelines
and the new detections. A pair may be linked when the categories agree (:func:`~.schema.categories_agree`)
and either the boxes overlap (IoU ≥ ``iou_threshold``; cost ``1 − IoU``) or, failing that, the centres are
close for the time elapsed (≤ ``max(min_distance, max_speed · Δt)`` frame diagonals; cost ``1 + distance``)
with areas within ``max_area_ratio``. A timeline not extended for ``max_gap_seconds`` is closed.

:func:`anchor_to_tracks` ties timelines to dataset tracks (UBnormal object ids, GT anomaly tracks) by the
mean IoU of the timeline's boxes with the track's box on the same frames, so that their geometry can be
taken from the exact track instead of the annotator's boxes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from tvau_lightning.builder.geometry import box_centers
from tvau_lightning.builder.schema import DetectedObject, categories_agree, category_group
from tvau_lightning.metrics.boxes import box_iou_continuous

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class AssociationSettings:
    """Thresholds of :func:`associate` (distances in frame diagonals)."""

    iou_threshold: float = 0.3
    max_speed: float = 0.5
    min_distance: float = 0.05
    max_area_ratio: float = 4.0
    max_gap_seconds: float = 2.0
    require_category_agreement: bool = True


@dataclass
class Observation:
    """One detection assigned to a timeline; ``box`` in continuous video pixels."""

    frame: int
    box: tuple[float, float, float, float]
    category: str
    attributes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "box": [round(v, 2) for v in self.box], "category": self.category,
                "attributes": list(self.attributes)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Observation:
        return cls(int(obj["frame"]), tuple(float(v) for v in obj["box"]), str(obj["category"]),
                   list(obj["attributes"]))


@dataclass
class Timeline:
    """The observations of one target, in frame order."""

    observations: list[Observation] = field(default_factory=list)

    @property
    def frames(self) -> np.ndarray:
        """``(n,)`` int64 observed frames."""
        return np.asarray([o.frame for o in self.observations], dtype=np.int64)

    @property
    def boxes(self) -> np.ndarray:
        """``(n, 4)`` float64 observed boxes."""
        return np.asarray([o.box for o in self.observations], dtype=np.float64).reshape(-1, 4)

    @property
    def first_frame(self) -> int:
        return self.observations[0].frame

    @property
    def last_frame(self) -> int:
        return self.observations[-1].frame

    def prominence(self) -> float:
        """Observations × mean box area: how much of the video the target occupies."""
        boxes = self.boxes
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return float(len(boxes) * areas.mean()) if len(boxes) else 0.0


def summarize_appearance(
    observations: Sequence[Observation], max_attributes: int = 4, min_fraction: float = 0.3
) -> tuple[str, list[str]]:
    """The target's category and most consistent attributes over its observations.

    Category: the most frequent category group, then its most frequent wording (ties → first seen).
    Attributes: those reported in at least ``min_fraction`` of the observations of that group, most frequent
    first (ties → first seen), at most ``max_attributes``; when none reaches the fraction, the two most
    frequent.
    """
    if not observations:
        raise ValueError("summarize_appearance needs at least one observation")
    groups = Counter(category_group(o.category) for o in observations)
    first_seen_group = {}
    for o in observations:
        first_seen_group.setdefault(category_group(o.category), len(first_seen_group))
    group = min(groups, key=lambda g: (-groups[g], first_seen_group[g]))
    members = [o for o in observations if category_group(o.category) == group]
    wording = Counter(o.category for o in members)
    order: dict[str, int] = {}
    for o in members:
        order.setdefault(o.category, len(order))
    category = min(wording, key=lambda c: (-wording[c], order[c]))
    counts: Counter[str] = Counter()
    first_attr: dict[str, int] = {}
    for o in members:
        for a in dict.fromkeys(o.attributes):
            counts[a] += 1
            first_attr.setdefault(a, len(first_attr))
    ranked = sorted(counts, key=lambda a: (-counts[a], first_attr[a]))
    kept = [a for a in ranked if counts[a] >= min_fraction * len(members)]
    if not kept:
        kept = ranked[:2]
    return category, kept[:max_attributes]


def _pair_cost(last: Observation, det: DetectedObject, gap_seconds: float, diagonal: float,
               settings: AssociationSettings) -> float:
    if settings.require_category_agreement and not categories_agree(last.category, det.category):
        return _INFEASIBLE
    a, b = np.asarray(last.box)[None], np.asarray(det.box)[None]
    iou = float(box_iou_continuous(a, b)[0, 0])
    if iou >= settings.iou_threshold:
        return 1.0 - iou
    ca, cb = box_centers(a)[0], box_centers(b)[0]
    distance = math.hypot(*(ca - cb)) / diagonal
    area_a = (a[0, 2] - a[0, 0]) * (a[0, 3] - a[0, 1])
    area_b = (b[0, 2] - b[0, 0]) * (b[0, 3] - b[0, 1])
    ratio = max(area_a, area_b) / max(min(area_a, area_b), 1e-9)
    if distance <= max(settings.min_distance, settings.max_speed * gap_seconds) and ratio <= settings.max_area_ratio:
        return 1.0 + distance
    return _INFEASIBLE


def associate(
    detections: Sequence[tuple[int, Sequence[DetectedObject]]],
    frame_size: tuple[int, int],
    fps: float,
    settings: AssociationSettings | None = None,
) -> list[Timeline]:
    """Link per-frame detections into timelines.

    Args:
        detections: ``(frame, objects)`` per annotated frame (frames in any order; sorted here). A frame
            whose query failed is simply absent.
        frame_size: ``(H, W)`` of the video (boxes are in its pixels).
        fps: frames per second (the gap and speed limits are in seconds).
        settings: thresholds (:class:`AssociationSettings`).

    Returns:
        Timelines ordered by first frame (then by the order of their first detection).
    """
    settings = settings or AssociationSettings()
    diagonal = math.hypot(*frame_size)
    timelines: list[Timeline] = []
    open_ids: list[int] = []
    for frame, objects in sorted(detections, key=lambda item: item[0]):
        open_ids = [i for i in open_ids
                    if (frame - timelines[i].last_frame) / fps <= settings.max_gap_seconds + 1e-9]
        objects = list(objects)
        assigned: dict[int, int] = {}
        if open_ids and objects:
            cost = np.full((len(open_ids), len(objects)), _INFEASIBLE)
            for r, tid in enumerate(open_ids):
                last = timelines[tid].observations[-1]
                gap = (frame - last.frame) / fps
                for c, det in enumerate(objects):
                    cost[r, c] = _pair_cost(last, det, gap, diagonal, settings)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < _INFEASIBLE:
                    assigned[int(c)] = open_ids[int(r)]
        for c, det in enumerate(objects):
            obs = Observation(int(frame), tuple(float(v) for v in det.box), det.category, list(det.attributes))
            if c in assigned:
                timelines[assigned[c]].observations.append(obs)
            else:
                timelines.append(Timeline([obs]))
                open_ids.append(len(timelines) - 1)
    return timelines


def track_lookup(track: np.ndarray) -> dict[int, np.ndarray]:
    """``(n, 5)`` rows ``(frame, x1, y1, x2, y2)`` (continuous boxes) → ``{frame: box}``."""
    track = np.asarray(track, dtype=np.float64).reshape(-1, 5)
    return {int(row[0]): row[1:] for row in track}


def mean_track_iou(timeline: Timeline, lookup: Mapping[int, np.ndarray]) -> float:
    """Mean IoU of the timeline's boxes with the track's box on the same frame (0 where the track is absent)."""
    if not timeline.observations:
        return 0.0
    total = 0.0
    for obs in timeline.observations:
        box = lookup.get(obs.frame)
        if box is not None:
            total += float(box_iou_continuous(np.asarray(obs.box)[None], box[None])[0, 0])
    return total / len(timeline.observations)


def anchor_to_tracks(
    timelines: Sequence[Timeline], tracks: Mapping[str, np.ndarray], min_mean_iou: float = 0.3
) -> dict[int, str]:
    """One-to-one anchoring of timelines to tracks by mean IoU (Hungarian, maximising the total).

    Args:
        timelines: the annotator's timelines.
        tracks: key → ``(n, 5)`` rows ``(frame, x1, y1, x2, y2)`` in continuous pixels.
        min_mean_iou: pairs below this are never anchored.

    Returns:
        ``{timeline index: track key}``.
    """
    keys = list(tracks)
    if not timelines or not keys:
        return {}
    lookups = [track_lookup(tracks[k]) for k in keys]
    score = np.array([[mean_track_iou(t, lk) for lk in lookups] for t in timelines])
    rows, cols = linear_sum_assignment(-score)
    return {int(r): keys[int(c)] for r, c in zip(rows, cols) if score[r, c] >= min_mean_iou}


def best_match(objects: Sequence[DetectedObject], box: np.ndarray, min_iou: float) -> DetectedObject | None:
    """The detection overlapping ``box`` most (IoU ≥ ``min_iou``), or ``None``."""
    if not objects:
        return None
    ious = box_iou_continuous(np.asarray([o.box for o in objects]), np.asarray(box)[None])[:, 0]
    k = int(np.argmax(ious))
    return objects[k] if ious[k] >= min_iou else None
