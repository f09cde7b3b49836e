"""The dataset builder pipeline (paper §3.3, SPEC §5): videos → annotator questions → verified targets →
dialogue JSONL for RAE phase A (all-object narratives) and phase B (anomaly-focused).

Per video (:meth:`DatasetBuilder.process_video`):

1. **Frame-level extraction.** Frames are sampled at ``sample_fps`` (at most ``max_frames_per_video``; the
   last frame is always included); each is asked the structured ``frame_objects`` question. The replies are
   linked into per-target timelines (:func:`~.timelines.associate`); timelines with fewer than
   ``min_observations`` observations are discarded. Timelines are anchored to the dataset's object tracks
   (UBnormal) and GT anomaly tracks by mean IoU, and then take their geometry from the exact track.
2. **Anomaly-focused refinement.** For each GT anomaly track, frames spread over its range are blurred
   outside the GT anomaly mask (Gaussian, ``blur_fraction`` of the longer side) and asked the same question
   (with a note that the blur is deliberate). The detection best overlapping the GT box (IoU ≥
   ``refine_min_iou``) on each frame gives the anomaly's appearance; a track is kept when such a detection
   is found on at least ``refine_min_support`` of the frames that were answered ("high-confidence anomaly
   timelines"). Its trajectory is the GT track itself.
3. **Mutual verification** (:mod:`.verify`): appearance → motion and motion → appearance questions per
   target; inconsistent or unverifiable targets are dropped and counted.
4. **Rendering** (:mod:`.render`): one dialogue per record. A record is a run of frames sampled at
   ``record_fps`` (:func:`record_frames`): the video (or each ``window`` of source frames) is sampled, cut
   into the fewest records of at most ``max_frames`` sampled frames (equal lengths, ±1), and a record with
   fewer than ``min_frames`` is dropped (counted as ``too_few_frames``). The default is the paper's records
   (:data:`PAPER_RECORDS`: 1 fps, 8–40 frames); :data:`DENSE_RECORDS` is every frame in records of any length.
   A video that gives no record at all (shorter than ``min_frames`` seconds at 1 fps) is named in
   ``BuildSummary.no_record_videos`` (:func:`no_record_reason`); when no video gives one, :meth:`DatasetBuilder.run`
   raises :class:`NoRecordsError` before asking anything. Every time in an answer is in the
   record's own sampled-frame index (0 = its first sampled frame) or, with ``time_reference: seconds``, in
   seconds from its start; the record carries its sampled source frames (``frame_index``) and rate
   (``sample_fps``) so that the dialogue DataModule feeds exactly those frames.

Resumability: the result of each finished video is written atomically to ``<work_dir>/<dataset>/<video>.json``
before the next starts; a rerun skips videos whose file exists. A video is *done* when every question got an
answer — a malformed answer (after its retries) is an answer: it is recorded in ``failures.jsonl`` and the
target it concerned is dropped. A question the annotator never answered (server down, HTTP 5xx, a body that
is not a chat completion, a rejected request) marks its video *failed*: it is not written to the work folder
nor to the JSONL files, its remaining questions are not asked, and a rerun asks it again (and only the
failed or new videos). A rejected API key, an unknown URL or model (:class:`AnnotatorConfigError`) stops the
run at once. The output folder is the tool's own (:func:`~tvau_lightning.atomic.claim_output_dir`): a
non-empty folder it did not create, or one holding a video, is refused. The settings that change annotator questions
are fingerprinted in ``<work_dir>/settings.json`` — a rerun with different ones stops with advice (use
``restart`` or another work folder). Rendering settings (windows, ``max_targets``) may change between runs:
the JSONL files are always rendered again from the work folder, atomically, at the end of a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tvau_lightning.atomic import OUTPUT_MARKER, claim_output_dir, signals_raise, write_text_atomic
from tvau_lightning.builder.annotators import (
    Annotator,
    AnnotatorConfigError,
    AnnotatorRequest,
    QueryOutcome,
    RetryPolicy,
    query_structured,
)
from tvau_lightning.builder.focus import blur_outside_mask, blur_sigma, crop_box
from tvau_lightning.builder.geometry import (
    TIME_REFERENCES,
    GeometrySettings,
    inclusive_to_continuous,
    label_ranges,
    trajectory_facts,
)
from tvau_lightning.builder.render import (
    TargetView,
    describe_target,
    phase_a_turns,
    phase_b_turns,
    target_references,
)
from tvau_lightning.builder.schema import (
    APPEARANCE_SCHEMA,
    BOX_FORMATS,
    FRAME_OBJECTS_SCHEMA,
    MOTION_SCHEMA,
    PROMPT_VERSION,
    DetectedObject,
    appearance_prompt,
    frame_objects_prompt,
    motion_prompt,
    parse_appearance,
    parse_frame_objects,
    parse_motion,
)
from tvau_lightning.builder.sources import DatasetVideoSource
from tvau_lightning.builder.timelines import (
    AssociationSettings,
    Observation,
    anchor_to_tracks,
    associate,
    best_match,
    summarize_appearance,
)
from tvau_lightning.builder.verify import (
    Verification,
    appearance_consistent,
    attribute_overlap,
    motion_consistent,
)
from tvau_lightning.data.dialogue_schema import DialogueRecord, write_dialogues

#: bumped when the work-file format or a processing rule changes (part of the fingerprint)
BUILDER_VERSION = 1
PHASE_A_FILE = "phase_a.jsonl"
PHASE_B_FILE = "phase_b.jsonl"
SUMMARY_FILE = "summary.json"
FAILURES_FILE = "failures.jsonl"
#: settings that only change rendering (not the questions asked), free to change between resumed runs
RENDER_ONLY_SETTINGS = ("window", "window_stride", "max_targets", "record_fps", "min_frames", "max_frames",
                        "time_reference")


#: the paper's stage-2 records (§3.3: clips of 8–40 frames at 1 fps), the :class:`BuilderSettings` default
PAPER_RECORDS: dict[str, Any] = {"record_fps": 1.0, "min_frames": 8, "max_frames": 40}
#: every source frame, records of any length (``--dense-records``; what the builder did before the paper's default)
DENSE_RECORDS: dict[str, Any] = {"record_fps": None, "min_frames": 1, "max_frames": None}


class BuildError(RuntimeError):
    """The build cannot go on (inconsistent work folder, too many consecutive annotator failures)."""


class NoRecordsError(BuildError):
    """No video gives a record under the record settings (every one is too short); nothing was asked.

    Attributes:
        reasons: one line per video (:func:`no_record_reason`).
    """

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"none of the {len(reasons)} video(s) gives a record with these settings; first: "
                         f"{reasons[0]}")
        self.reasons = reasons


#: ``QueryOutcome.error_kind`` values of a question the annotator never answered (the video fails)
UNANSWERED_KINDS = ("transient", "request")


class UnansweredQuestion(Exception):
    """A question that got no answer after its retries: its video fails (and is asked again by a rerun)."""

    def __init__(self, error: str, failure: dict[str, Any]) -> None:
        super().__init__(error)
        self.error = error
        self.failure = failure


@dataclass
class BuilderSettings:
    """Everything that shapes the dataset (documented in ``docs/builder.md``).

    Attributes:
        sample_fps: frames per second asked the frame-level question (``None`` = every frame).
        max_frames_per_video: at most this many frames per video (evenly spread), ``None`` = no cap.
        refine_min_frames, refine_max_frames: frames re-asked per GT anomaly track (at ``sample_fps`` over the
            track, clamped to these bounds).
        refine_min_iou: a refined detection belongs to the anomaly when its IoU with the GT box reaches this.
        refine_min_support: fraction of answered refined frames that must show the anomaly.
        blur_fraction: background blur sigma as a fraction of the frame's longer side.
        box_format: how annotators write boxes (``pixels`` of the image sent, ``normalized_1000``, ``normalized_1``).
        min_observations: shortest timeline kept (observations).
        anchor_min_iou: mean IoU needed to anchor a timeline to a dataset track.
        attribute_min_fraction, max_attributes: attribute aggregation (:func:`~.timelines.summarize_appearance`).
        verify: which targets are mutually verified: ``all``, ``anomaly`` (phase B targets only) or ``none``.
        verify_frames: frames shown in the appearance → motion question.
        verify_crops: crops shown in the motion → appearance question.
        direction_tolerance: 45° steps allowed between the annotator's and the geometry's direction.
        max_targets: most targets in one phase A narrative (the most prominent).
        window, window_stride: spans of source frames cut before sampling (``None`` = the whole video).
        record_fps: frames per second of the source a record shows (``None`` = every frame); default 1, the
            paper's.
        min_frames, max_frames: sampled frames per record: a span is cut into the fewest records of at most
            ``max_frames`` (``None`` = no cap), of equal lengths ±1; one with fewer than ``min_frames`` is
            dropped. Default 8–40, the paper's; :data:`DENSE_RECORDS` (``record_fps=None, min_frames=1,
            max_frames=None``) is every frame in records of any length.
        time_reference: ``frames`` (the record's sampled-frame index, 0-based) or ``seconds`` (from the
            record's first frame) in trajectory and temporal-anchor answers.
        association, geometry: thresholds of the timeline association and of the geometry text.
        retry: attempts and backoff per question.
        max_consecutive_failures: stop the run after this many failed questions in a row (``None`` = never).
    """

    sample_fps: float | None = 2.0
    max_frames_per_video: int | None = 64
    refine_min_frames: int = 3
    refine_max_frames: int = 12
    refine_min_iou: float = 0.3
    refine_min_support: float = 0.5
    blur_fraction: float = 0.02
    box_format: str = "pixels"
    min_observations: int = 2
    anchor_min_iou: float = 0.3
    attribute_min_fraction: float = 0.3
    max_attributes: int = 4
    verify: Literal["all", "anomaly", "none"] = "all"
    verify_frames: int = 4
    verify_crops: int = 2
    direction_tolerance: int = 1
    max_targets: int = 5
    window: int | None = None
    window_stride: int | None = None
    record_fps: float | None = PAPER_RECORDS["record_fps"]
    min_frames: int = PAPER_RECORDS["min_frames"]
    max_frames: int | None = PAPER_RECORDS["max_frames"]
    time_reference: Literal["frames", "seconds"] = "frames"
    association: AssociationSettings = field(default_factory=AssociationSettings)
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_consecutive_failures: int | None = 100

    def __post_init__(self) -> None:
        if isinstance(self.association, dict):
            self.association = AssociationSettings(**self.association)
        if isinstance(self.geometry, dict):
            self.geometry = GeometrySettings(**self.geometry)
        if isinstance(self.retry, dict):
            self.retry = RetryPolicy(**self.retry)
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise ValueError(f"sample_fps must be positive or None (every frame), got {self.sample_fps}")
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {self.box_format!r}")
        if self.verify not in ("all", "anomaly", "none"):
            raise ValueError(f"verify must be all, anomaly or none, got {self.verify!r}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be a positive number of frames or None, got {self.window}")
        if self.window_stride is not None and self.window_stride < 1:
            raise ValueError(f"window_stride must be positive, got {self.window_stride}")
        if self.record_fps is not None and self.record_fps <= 0:
            raise ValueError(f"record_fps must be positive or None (every frame), got {self.record_fps}")
        if self.min_frames < 1 or (self.max_frames is not None and self.max_frames < self.min_frames):
            raise ValueError(f"need 1 <= min_frames <= max_frames, got min_frames={self.min_frames}, "
                             f"max_frames={self.max_frames}")
        if self.time_reference not in TIME_REFERENCES:
            raise ValueError(f"time_reference must be one of {', '.join(TIME_REFERENCES)}, got {self.time_reference!r}")
        if not 1 <= self.refine_min_frames <= self.refine_max_frames:
            raise ValueError("need 1 <= refine_min_frames <= refine_max_frames")
        if self.min_observations < 1 or self.max_targets < 1 or self.verify_frames < 2 or self.verify_crops < 1:
            raise ValueError("min_observations, max_targets, verify_crops must be >= 1 and verify_frames >= 2")

    def fingerprint_dict(self) -> dict[str, Any]:
        """The settings that change which questions are asked or how answers are judged."""
        out = asdict(self)
        for key in RENDER_ONLY_SETTINGS:
            out.pop(key)
        out["retry"].pop("backoff")
        out["retry"].pop("max_backoff")
        out.pop("max_consecutive_failures")
        return out


# --------------------------------------------------------------------------------------------- helpers
def sample_frames(num_frames: int, fps: float, sample_fps: float | None, max_frames: int | None) -> tuple[list[int], int]:
    """Frames to annotate and the sampling step: every ``round(fps / sample_fps)``-th frame plus the last one,
    thinned evenly to ``max_frames``. Returns ``(frames, step)``; ``step`` is the largest gap."""
    if num_frames < 1:
        return [], 1
    step = 1 if sample_fps is None else max(1, round(fps / sample_fps))
    frames = list(range(0, num_frames, step))
    if frames[-1] != num_frames - 1:
        frames.append(num_frames - 1)
    if max_frames is not None and len(frames) > max_frames:
        picks = np.unique(np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int))
        frames = [frames[i] for i in picks]
    gap = max([b - a for a, b in zip(frames, frames[1:])], default=1)
    return frames, int(gap)


def clip_windows(num_frames: int, window: int | None, stride: int | None) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` clips: the whole video, or windows of ``window`` frames every ``stride``
    (default ``window``) plus one ending on the last frame."""
    if window is None or num_frames <= window:
        return [(0, num_frames - 1)]
    stride = stride or window
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window - 1 != num_frames - 1:
        starts.append(num_frames - window)
    return [(s, s + window - 1) for s in starts]


def record_frames(num_frames: int, fps: float, record_fps: float | None, window: int | None = None,
                  window_stride: int | None = None, min_frames: int = 1,
                  max_frames: int | None = None) -> tuple[list[np.ndarray], int]:
    """The records of a video as arrays of sampled source frames, and how many were dropped as too short.

    Each span (the whole video, or each :func:`clip_windows` window) is sampled from its first frame every
    ``fps / record_fps`` frames (rounded; every frame when ``record_fps`` is ``None`` or above ``fps``) — the
    rule of :func:`~tvau_lightning.data.dialogue.rate_frame_indices` — then split into the fewest consecutive
    records of at most ``max_frames`` (lengths equal ±1); records shorter than ``min_frames`` are dropped.
    """
    if num_frames < 1:
        return [], 0
    step = 1.0 if record_fps is None else max(1.0, fps / record_fps)
    out, dropped = [], 0
    for start, end in clip_windows(num_frames, window, window_stride):
        count = int(np.floor((end - start) / step + 1e-6)) + 1
        sampled = np.unique(np.minimum(start + np.round(np.arange(count) * step).astype(np.int64), end))
        parts = 1 if max_frames is None else math.ceil(len(sampled) / max_frames)
        for part in np.array_split(sampled, parts):
            if len(part) < min_frames:
                dropped += 1
            else:
                out.append(part)
    return out, dropped


def no_record_reason(num_frames: int, fps: float, settings: BuilderSettings) -> str | None:
    """Why a video of ``num_frames`` frames at ``fps`` gives no record under ``settings`` (one sentence with its
    duration and the fix), or ``None`` when it gives at least one."""
    s = settings
    if num_frames < 1:
        return None
    records, _ = record_frames(num_frames, fps, s.record_fps, s.window, s.window_stride, s.min_frames, s.max_frames)
    if records:
        return None
    spans, _ = record_frames(num_frames, fps, s.record_fps, s.window, s.window_stride, 1, s.max_frames)
    longest = max((len(r) for r in spans), default=0)
    rate = "every frame" if s.record_fps is None else f"record_fps {s.record_fps:g}"
    where = (f"its windows of {s.window} frames give" if s.window is not None and num_frames > s.window
             else "it gives")
    bounds = f"{s.min_frames}" + ("" if s.max_frames is None else f"–{s.max_frames}")
    return (f"{num_frames / fps:.1f} s ({num_frames} frames at {fps:g} fps) gives no record: at {rate} {where} at "
            f"most {longest} sampled frame(s) per record, and a record needs {bounds}; pass --dense-records (every "
            f"frame, records of any length) or --min-frames {max(1, longest)}")


def _record_track(target: _Target, index: np.ndarray, tolerance: float) -> tuple[list[int], list[list[float]]]:
    """A target's track on a record's sampled frames ``index``: positions ``k`` (the record's frame numbers)
    and boxes. An exact (dataset) track contributes its box at each sampled frame it covers; an annotator's
    track its observation nearest to each sampled frame, when within ``tolerance`` source frames."""
    positions, boxes = [], []
    if target.exact:
        lookup = dict(zip(target.frames, target.boxes))
        for k, f in enumerate(index.tolist()):
            if f in lookup:
                positions.append(k)
                boxes.append(lookup[f])
        return positions, boxes
    frames = np.asarray(target.frames, dtype=np.int64)
    if not len(frames):
        return positions, boxes
    for k, f in enumerate(index.tolist()):
        nearest = int(np.argmin(np.abs(frames - f)))
        if abs(int(frames[nearest]) - f) <= tolerance:
            positions.append(k)
            boxes.append(target.boxes[nearest])
    return positions, boxes


def _evenly(items: Sequence[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return list(items)
    picks = np.unique(np.round(np.linspace(0, len(items) - 1, count)).astype(int))
    return [items[i] for i in picks]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass
class _Target:
    """A target of one video while it is processed (and, as JSON, in the work file)."""

    kind: Literal["object", "anomaly"]
    category: str
    attributes: list[str]
    frames: list[int]
    boxes: list[list[float]]
    exact: bool
    anchor: str | None = None
    status: str = "ok"
    verification: dict[str, Any] | None = None
    extra_descriptions: list[str] = field(default_factory=list)
    support: float | None = None
    observed_frames: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["boxes"] = [[round(v, 2) for v in b] for b in self.boxes]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> _Target:
        return cls(**obj)


def _target_views(targets: Sequence[_Target], kind: str, size: tuple[int, int], index: np.ndarray, step: float,
                  rate: float, tolerance: int, geometry: GeometrySettings) -> list[tuple[_Target, TargetView, float]]:
    """The verified targets of ``kind`` seen on the record's sampled frames ``index`` (every ``step`` source
    frames), with their trajectory facts in the record's frame numbers (``rate`` frames per second) and their
    prominence there; ``tolerance`` is the annotation step in source frames."""
    out = []
    for t in targets:
        if t.kind != kind or t.status != "ok":
            continue
        positions, boxes = _record_track(t, index, tolerance=max(step / 2, 0.0))
        if not positions:
            continue
        # a sampled track counts as present at the record's ends within its own sampling gap
        slack = 0 if t.exact else math.ceil(tolerance / step)
        facts = trajectory_facts(positions, np.asarray(boxes), size, rate, (0, len(index) - 1),
                                 frame_tolerance=slack, settings=geometry)
        if facts is not None:
            out.append((t, TargetView(t.category, t.attributes, facts, t.exact, list(t.extra_descriptions)),
                        _prominence(boxes)))
    return out


def _prominence(boxes: Sequence[Sequence[float]]) -> float:
    """Boxes on the record's frames × their mean area."""
    inside = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(inside):
        return 0.0
    return float(len(inside) * ((inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])).mean())


@dataclass
class BuildSummary:
    """What a run produced (also written as ``summary.json``).

    ``videos`` = ``done`` (finished by this run) + ``skipped`` (finished by an earlier run, not asked again)
    + ``failed`` (one entry each in ``failed_videos``, with the first error; not in the JSONL files).
    ``no_record_videos``: the done or skipped videos too short for any record (``dataset``, ``video_id``,
    ``reason`` from :func:`no_record_reason`).
    """

    videos: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_videos: list[dict[str, Any]] = field(default_factory=list)
    queries: int = 0
    failed_queries: int = 0
    queries_by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    dropped_records: dict[str, dict[str, int]] = field(default_factory=dict)
    no_record_videos: list[dict[str, str]] = field(default_factory=list)
    targets: dict[str, dict[str, int]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    annotator: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- builder
class DatasetBuilder:
    """Builds the dialogue dataset of a list of videos with one annotator.

    Args:
        annotator: who answers the questions.
        out_dir: where ``phase_a.jsonl``, ``phase_b.jsonl``, ``summary.json`` and ``failures.jsonl`` go.
        settings: :class:`BuilderSettings`.
        work_dir: the per-video cache (default ``<out_dir>/work``).
        restart: discard a work folder made with other settings instead of stopping.
        absolute_paths: write absolute video paths (default: relative to ``out_dir``).
        progress: show a rich progress bar.
        sleep: the wait function used between retries (tests pass a no-op).
    """

    def __init__(self, annotator: Annotator, out_dir: str | os.PathLike[str], settings: BuilderSettings | None = None,
                 work_dir: str | os.PathLike[str] | None = None, restart: bool = False, absolute_paths: bool = False,
                 progress: bool = True, sleep: Callable[[float], None] = time.sleep) -> None:
        self.annotator = annotator
        self.out_dir = Path(out_dir)
        self.settings = settings or BuilderSettings()
        self.work_dir = Path(work_dir) if work_dir is not None else self.out_dir / "work"
        self.restart = restart
        self.absolute_paths = absolute_paths
        self.progress = progress
        self._sleep = sleep
        self._consecutive_failures = 0

    # ----------------------------------------------------------------- fingerprint and work files
    def fingerprint(self) -> dict[str, Any]:
        """What a work folder's results depend on (annotator, prompts, question-changing settings)."""
        return {"builder_version": BUILDER_VERSION, "prompt_version": PROMPT_VERSION,
                "annotator": self.annotator.describe(), "settings": self.settings.fingerprint_dict()}

    def _fingerprint_hash(self) -> str:
        blob = json.dumps(self.fingerprint(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _prepare_work_dir(self) -> None:
        settings_file = self.work_dir / "settings.json"
        current = {"fingerprint": self._fingerprint_hash(), **self.fingerprint()}
        if settings_file.is_file():
            previous = json.loads(settings_file.read_text(encoding="utf-8"))
            if previous.get("fingerprint") != current["fingerprint"]:
                if not self.restart:
                    changed = sorted(k for k in ("annotator", "settings", "prompt_version", "builder_version")
                                     if previous.get(k) != json.loads(json.dumps(current[k], default=str)))
                    raise BuildError(
                        f"{self.work_dir} holds results made with different {', '.join(changed) or 'settings'} "
                        f"(see {settings_file}); rerun with the same settings to resume, pass --restart to discard "
                        "them, or choose another --work-dir"
                    )
                for old in self.work_dir.glob("*/*.json"):
                    old.unlink()
        write_text_atomic(settings_file, json.dumps(current, indent=1, sort_keys=True, default=str))

    def work_file(self, video: DatasetVideoSource) -> Path:
        return self.work_dir / _safe_name(video.dataset) / f"{_safe_name(video.video_id)}.json"

    # ----------------------------------------------------------------- questions
    def _ask(self, requests: list[tuple[AnnotatorRequest, Callable[[str], Any]]],
             failures: list[dict[str, Any]], counts: Counter[str]) -> list[QueryOutcome]:
        def one(item: tuple[AnnotatorRequest, Callable[[str], Any]]) -> QueryOutcome:
            return query_structured(self.annotator, item[0], item[1], self.settings.retry, sleep=self._sleep)

        workers = max(1, int(getattr(self.annotator, "max_concurrency", 1)))
        if workers > 1 and len(requests) > 1:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                outcomes = list(pool.map(one, requests))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        else:  # one at a time: the first unanswered question ends the video's questions
            outcomes = []
            for item in requests:
                outcomes.append(one(item))
                if not outcomes[-1].ok and outcomes[-1].error_kind in UNANSWERED_KINDS:
                    break
        unanswered: list[dict[str, Any]] = []
        for (request, _), outcome in zip(requests, outcomes):
            counts[f"{request.task}:asked"] += 1
            if outcome.ok:
                self._consecutive_failures = 0
                continue
            counts[f"{request.task}:failed"] += 1
            self._consecutive_failures += 1
            failures.append({"task": request.task, "frame": request.meta.get("frame"),
                             "target": request.meta.get("target"), "error": outcome.error,
                             "error_kind": outcome.error_kind, "attempts": outcome.attempts, "raw": outcome.raw})
            if outcome.error_kind in UNANSWERED_KINDS:
                unanswered.append(failures[-1])
            limit = self.settings.max_consecutive_failures
            if limit is not None and self._consecutive_failures >= limit:
                raise BuildError(
                    f"{self._consecutive_failures} annotator questions failed in a row; the last: {outcome.error}. "
                    "Check the annotator (server up? model name? replies in the requested JSON?); finished videos "
                    "are kept and a rerun resumes"
                )
        if unanswered:
            raise UnansweredQuestion(unanswered[0]["error"], unanswered[0])
        return outcomes

    def _frame_request(self, video: DatasetVideoSource, frame: int, image: np.ndarray, focused: bool,
                       references: list[dict[str, Any]]) -> tuple[AnnotatorRequest, Callable[[str], Any]]:
        sent_h, sent_w = self.annotator.sent_size(image)
        prompt = frame_objects_prompt(sent_w, sent_h, self.settings.box_format, focused=focused)
        request = AnnotatorRequest(
            "frame_objects", prompt, [image], schema=FRAME_OBJECTS_SCHEMA,
            meta={"video_id": video.video_id, "frame": frame, "focused": focused, "frame_size": list(video.size),
                  "reference_boxes": references},
        )
        box_format, size = self.settings.box_format, video.size

        def parse(text: str) -> list[DetectedObject]:
            return parse_frame_objects(text, sent_w, sent_h, box_format, scale_to=size)

        return request, parse

    # ----------------------------------------------------------------- one video
    def process_video(self, video: DatasetVideoSource) -> dict[str, Any]:
        """Ask every question about one video and return its work record (see the module docstring)."""
        s = self.settings
        height, width = video.size
        fps = float(video.fps)
        failures: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        labels = np.asarray(video.frame_labels()).reshape(-1)
        if len(labels) != video.num_frames:
            raise BuildError(f"{video}: {len(labels)} frame labels for {video.num_frames} frames")
        gt = {f"gt:{k}": np.concatenate([t[:, :1], inclusive_to_continuous(t[:, 1:])], axis=1)
              for k, t in enumerate(video.gt_tracks()) if len(t)}
        objects = {k: np.concatenate([t[:, :1], inclusive_to_continuous(t[:, 1:])], axis=1)
                   for k, t in video.object_tracks().items() if len(t)}
        gt_frames = {k: {int(r[0]): r[1:] for r in t} for k, t in gt.items()}
        object_frames = {k: {int(r[0]): r[1:] for r in t} for k, t in objects.items()}

        def references(frame: int, only_anomaly: bool) -> list[dict[str, Any]]:
            refs = [{"box": [float(v) for v in rows[frame]], "abnormal": True, "key": k}
                    for k, rows in gt_frames.items() if frame in rows]
            if not only_anomaly:
                for k, rows in object_frames.items():
                    if frame in rows and not any(np.allclose(r["box"], rows[frame]) for r in refs):
                        refs.append({"box": [float(v) for v in rows[frame]], "abnormal": False, "key": k})
            return refs

        # 1. frame-level extraction → timelines
        frames, step = sample_frames(video.num_frames, fps, s.sample_fps, s.max_frames_per_video)
        images: dict[int, np.ndarray] = {}
        detections: list[tuple[int, list[DetectedObject]]] = []
        for chunk_start in range(0, len(frames), 16):
            chunk = frames[chunk_start: chunk_start + 16]
            pixels = video.read_frames(chunk)
            for frame, image in zip(chunk, pixels):
                images[frame] = np.ascontiguousarray(image)
            requests = [self._frame_request(video, f, images[f], False, references(f, False)) for f in chunk]
            for frame, outcome in zip(chunk, self._ask(requests, failures, counts)):
                if outcome.ok:
                    detections.append((frame, outcome.value))
        timelines = associate(detections, video.size, fps, s.association)
        kept = [t for t in timelines if len(t.observations) >= min(s.min_observations, max(1, len(detections)))]
        object_anchor = anchor_to_tracks(kept, objects, s.anchor_min_iou)
        gt_anchor = anchor_to_tracks(kept, gt, s.anchor_min_iou)

        targets: list[_Target] = []
        for i, timeline in enumerate(kept):
            category, attributes = summarize_appearance(timeline.observations, s.max_attributes,
                                                        s.attribute_min_fraction)
            anchor = object_anchor.get(i) or gt_anchor.get(i)
            if anchor is not None:
                rows = objects.get(anchor) if anchor in objects else gt[anchor]
                geom_frames, geom_boxes, exact = rows[:, 0].astype(int).tolist(), rows[:, 1:].tolist(), True
            else:
                geom_frames, geom_boxes, exact = timeline.frames.tolist(), timeline.boxes.tolist(), False
            targets.append(_Target("object", category, attributes, geom_frames, geom_boxes, exact,
                                   anchor=gt_anchor.get(i) or anchor,
                                   observed_frames=timeline.frames.tolist()))

        # 2. anomaly-focused refinement, one GT track at a time
        sigma = blur_sigma(video.size, s.blur_fraction)
        refined_images: dict[int, np.ndarray] = {}
        for key, rows in gt.items():
            track_frames = rows[:, 0].astype(int).tolist()
            duration = (track_frames[-1] - track_frames[0] + 1) / fps
            wanted = min(s.refine_max_frames, max(s.refine_min_frames,
                         math.ceil(duration * s.sample_fps) if s.sample_fps else len(track_frames)))
            chosen = _evenly(track_frames, wanted)
            missing = [f for f in chosen if f not in refined_images]
            if missing:
                pixels = video.read_frames(missing)
                masks = video.anomaly_masks(missing)
                for j, frame in enumerate(missing):
                    images.setdefault(frame, np.ascontiguousarray(pixels[j]))
                    if masks is not None:
                        mask = np.asarray(masks[j], dtype=bool)
                    else:  # tracks without pixel masks: keep the GT boxes of the frame sharp
                        mask = np.zeros(video.size, dtype=bool)
                        for box in (rows_[frame] for rows_ in gt_frames.values() if frame in rows_):
                            x1, y1, x2, y2 = (int(round(v)) for v in box)
                            mask[max(0, y1):y2, max(0, x1):x2] = True
                    refined_images[frame] = blur_outside_mask(pixels[j], mask, sigma)
            requests = [self._frame_request(video, f, refined_images[f], True, references(f, True)) for f in chosen]
            for request, _ in requests:
                request.meta["target"] = key
            outcomes = self._ask(requests, failures, counts)
            answered = [(f, o.value) for f, o in zip(chosen, outcomes) if o.ok]
            matches = []
            for frame, objs in answered:
                match = best_match(objs, gt_frames[key][frame], s.refine_min_iou)
                if match is not None:
                    matches.append(Observation(frame, tuple(gt_frames[key][frame].tolist()), match.category,
                                               list(match.attributes)))
            support = len(matches) / len(answered) if answered else 0.0
            phase_a = next((t for t in targets if t.anchor == key), None)
            if not answered:
                status = "unanswered"
            elif support < s.refine_min_support or not matches:
                status = "low_support"
            else:
                status = "ok"
            if matches:
                category, attributes = summarize_appearance(matches, s.max_attributes, s.attribute_min_fraction)
            elif phase_a is not None:
                category, attributes = phase_a.category, phase_a.attributes
            else:
                category, attributes = "object", []
            targets.append(_Target("anomaly", category, attributes, track_frames, rows[:, 1:].tolist(), True,
                                   anchor=key, status=status, support=support,
                                   observed_frames=[m.frame for m in matches]))

        # 3. mutual verification
        for index, target in enumerate(targets):
            if target.status != "ok":
                continue
            if s.verify == "none" or (s.verify == "anomaly" and target.kind != "anomaly"):
                continue
            source_images = refined_images if target.kind == "anomaly" else images
            verification = self._verify(video, target, index, source_images, images, failures, counts)
            target.verification = verification.to_json()
            if verification.passed:
                reply_description = describe_target(verification.reply_category or target.category,
                                                    verification.reply_attributes or [])
                if verification.reply_attributes:
                    target.extra_descriptions.append(reply_description)
            else:
                target.status = verification.reason or "unverified"
        # the phase A wording of an anomaly (same GT track) is another reference for its description
        for target in targets:
            if target.kind != "anomaly":
                continue
            same = next((t for t in targets if t.kind == "object" and t.anchor == target.anchor and t.status == "ok"),
                        None)
            if same is not None:
                target.extra_descriptions.insert(0, describe_target(same.category, same.attributes))

        return {
            "builder_version": BUILDER_VERSION,
            "fingerprint": self._fingerprint_hash(),
            "video_id": video.video_id,
            "dataset": video.dataset,
            "path": str(Path(video.path).resolve()),
            "fps": fps,
            "num_frames": int(video.num_frames),
            "size": [int(height), int(width)],
            "anomaly_ranges": [list(r) for r in label_ranges(labels)],
            "sampled_frames": frames,
            "step": step,
            "queries": {k: int(v) for k, v in sorted(counts.items())},
            "failures": failures,
            "detections": {str(f): [o.to_json() for o in objs] for f, objs in detections},
            "timelines_discarded": len(timelines) - len(kept),
            "targets": [t.to_json() for t in targets],
        }

    def _verify(self, video: DatasetVideoSource, target: _Target, index: int, shown: dict[int, np.ndarray],
                originals: dict[int, np.ndarray], failures: list[dict[str, Any]], counts: Counter[str]) -> Verification:
        s = self.settings
        lookup = dict(zip(target.frames, target.boxes))
        seen = [f for f in target.observed_frames if f in shown and f in lookup]
        show = _evenly(seen, s.verify_frames)
        motion_applicable = len(show) >= 2
        requests: list[tuple[AnnotatorRequest, Callable[[str], Any]]] = []
        description = describe_target(target.category, target.attributes)
        meta = {"video_id": video.video_id, "target": index, "frame_size": list(video.size),
                "abnormal": target.kind == "anomaly" or str(target.anchor).startswith("gt:")}
        geometry_direction = None
        if motion_applicable:
            facts = trajectory_facts(target.frames, np.asarray(target.boxes), video.size, video.fps,
                                     (show[0], show[-1]), settings=s.geometry)
            geometry_direction = facts.main_direction if facts is not None else None
            requests.append((AnnotatorRequest(
                "verify_motion", motion_prompt(description, show), [shown[f] for f in show], schema=MOTION_SCHEMA,
                meta={**meta, "frame": show[0], "frames": show, "boxes": [lookup[f] for f in show]},
            ), parse_motion))
        crop_frames = _evenly([f for f in target.observed_frames if f in originals and f in lookup], s.verify_crops)
        crops = [crop_box(originals[f], tuple(lookup[f])) for f in crop_frames]
        if crops:
            requests.append((AnnotatorRequest(
                "verify_appearance", appearance_prompt(len(crops)), crops, schema=APPEARANCE_SCHEMA,
                meta={**meta, "frame": crop_frames[0], "frames": crop_frames},
            ), parse_appearance))
        outcomes = self._ask(requests, failures, counts)
        result = Verification(motion=None, appearance=None, motion_applicable=motion_applicable,
                              geometry_direction=geometry_direction)
        if motion_applicable:
            motion = outcomes[0]
            if motion.ok:
                result.motion = motion_consistent(motion.value, geometry_direction, s.direction_tolerance)
                result.reply_direction, result.reply_speed = motion.value.direction, motion.value.speed
        appearance = outcomes[-1] if crops else None
        if appearance is not None and appearance.ok:
            result.appearance = appearance_consistent(appearance.value, target.category)
            result.reply_category = appearance.value.category
            result.reply_attributes = list(appearance.value.attributes)
            result.attribute_overlap = attribute_overlap(appearance.value.attributes, target.attributes)
        return result

    # ----------------------------------------------------------------- rendering
    def _video_path(self, work: dict[str, Any]) -> str:
        path = Path(work["path"])
        if self.absolute_paths:
            return str(path)
        try:
            return os.path.relpath(path, self.out_dir.resolve())
        except ValueError:  # another drive (Windows)
            return str(path)

    def render(self, work: dict[str, Any], dropped: dict[str, Counter[str]]) -> tuple[list[DialogueRecord], list[DialogueRecord]]:
        """The phase A and phase B records of one video's work record."""
        s = self.settings
        size = (int(work["size"][0]), int(work["size"][1]))
        fps = float(work["fps"])
        targets = [_Target.from_json(t) for t in work["targets"]]
        tolerance = int(work.get("step", 1))
        video = self._video_path(work)
        num_frames = int(work["num_frames"])
        abnormal = np.zeros(num_frames, dtype=bool)
        for a, b in work["anomaly_ranges"]:
            abnormal[max(0, int(a)):int(b) + 1] = True
        records_a, records_b = [], []
        indices, too_short = record_frames(num_frames, fps, s.record_fps, s.window, s.window_stride,
                                           s.min_frames, s.max_frames)
        if too_short:
            for counter in dropped.values():
                counter["too_few_frames"] += too_short
        step = 1.0 if s.record_fps is None else max(1.0, fps / s.record_fps)  # as record_frames samples
        rate = fps / step
        for index in indices:
            # anomaly frames in the record's own frame numbers (what a model shown these frames can see)
            ranges = label_ranges(abnormal[index])
            label = int(bool(ranges))
            base: dict[str, Any] = {"video": video, "video_id": work["video_id"], "dataset": work["dataset"],
                                    "label": label, "frame_range": (int(index[0]), int(index[-1]))}
            if s.record_fps is not None:
                base.update(frame_index=tuple(int(f) for f in index), sample_fps=round(rate, 6))
            meta = {"fps": fps, "record_fps": round(rate, 6), "num_frames": len(index),
                    "time_reference": s.time_reference}
            text = {"fps": rate, "frame_offset": 0, "settings": s.geometry, "time_reference": s.time_reference}

            # phase A: the most prominent targets, told in order of appearance
            objects = _target_views(targets, "object", size, index, step, rate, tolerance, s.geometry)
            if objects:
                ranked = sorted(objects, key=lambda item: item[2], reverse=True)
                chosen = sorted(ranked[: s.max_targets], key=lambda item: (item[1].facts.first_frame, -item[2]))
                views_a = [v for _, v, _ in chosen]
                records_a.append(DialogueRecord(
                    **base, turns=phase_a_turns(label, views_a, ranges, **text), references={},
                    meta={"phase": "A", **meta, "targets": [v.to_meta() for v in views_a]},
                ))
            else:
                dropped["phase_a"]["no_targets"] += 1

            # phase B: the abnormal target(s), or the "no abnormal target" dialogue of a normal clip
            if not label:
                records_b.append(DialogueRecord(**base, turns=phase_b_turns(0, [], [], **text),
                                                meta={"phase": "B", **meta, "targets": []}))
                continue
            anomalies = _target_views(targets, "anomaly", size, index, step, rate, tolerance, s.geometry)
            if not anomalies:
                reasons = [t.status for t in targets if t.kind == "anomaly" and t.status != "ok"
                           and _record_track(t, index, max(step / 2, 0.0))[0]]
                dropped["phase_b"][reasons[0] if reasons else "no_anomaly_track"] += 1
                continue
            anomalies.sort(key=lambda item: item[1].facts.first_frame)
            views_b = [v for _, v, _ in anomalies]
            refs = target_references(views_b)
            records_b.append(DialogueRecord(
                **base, turns=phase_b_turns(1, views_b, ranges, **text),
                references={"target": refs} if refs else {},
                meta={"phase": "B", **meta, "targets": [v.to_meta() for v in views_b]},
            ))
        return records_a, records_b

    # ----------------------------------------------------------------- the run
    def run(self, videos: Sequence[DatasetVideoSource], max_videos: int | None = None) -> BuildSummary:
        """Process every video not yet in the work folder, then write the JSONL files, summary and failure log.

        ``KeyboardInterrupt`` (also on SIGTERM, as :class:`~tvau_lightning.atomic.Terminated`),
        :class:`BuildError` and :class:`AnnotatorConfigError` propagate after the finished videos are safely
        cached; the same call resumes. A video with an unanswered question, or that raises any other error, is
        recorded in ``summary.failed_videos`` and left out of the outputs (a rerun tries it again).

        Raises:
            OutputFolderError: ``out_dir`` (or ``work_dir``) is a non-empty folder the tool did not create, or
                holds one of the videos.
            NoRecordsError: no video gives a record under the record settings (checked first: nothing is asked
                nor written).
        """
        started = time.monotonic()
        videos = list(videos)[:max_videos] if max_videos is not None else list(videos)
        ids = [(v.dataset, v.video_id) for v in videos]
        if len(set(ids)) != len(ids):
            duplicates = sorted({f"{d}/{v}" for d, v in ids if ids.count((d, v)) > 1})
            raise BuildError(f"video ids must be unique per dataset; repeated: {duplicates[:5]}")
        reasons = [no_record_reason(int(v.num_frames), float(v.fps), self.settings) for v in videos]
        if videos and all(reasons):
            raise NoRecordsError([f"{v.dataset}/{v.video_id}: {r}" for v, r in zip(videos, reasons)])
        inputs = [v.path for v in videos if getattr(v, "path", None) is not None]
        for folder in dict.fromkeys([self.out_dir, self.work_dir]):
            _adopt_earlier_output(folder)
            claim_output_dir(folder, inputs)
        with signals_raise():  # SIGTERM unwinds like Ctrl-C: no temporary file is left behind
            return self._run(videos, started)

    def _run(self, videos: list[DatasetVideoSource], started: float) -> BuildSummary:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._prepare_work_dir()
        self._consecutive_failures = 0
        summary = BuildSummary(videos=len(videos), annotator=self.annotator.describe())
        works: list[dict[str, Any]] = []
        unanswered: list[str] = []
        columns = (TextColumn("[bold]build-dataset[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("questions {task.fields[queries]} · failed {task.fields[failed]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())

        # on stderr, so that stdout stays free for the command's JSON summary
        with Progress(*columns, console=Console(stderr=True), disable=not self.progress, transient=False) as progress:
            task = progress.add_task("", total=len(videos), queries=0, failed=0)
            for video in videos:
                progress.update(task, description=video.video_id)
                path = self.work_file(video)
                if path.is_file():
                    work = json.loads(path.read_text(encoding="utf-8"))
                    summary.skipped += 1
                else:
                    try:
                        work = self.process_video(video)
                    except (KeyboardInterrupt, BuildError, AnnotatorConfigError):
                        raise
                    except UnansweredQuestion as err:
                        summary.failed_videos.append({"video_id": video.video_id, "dataset": video.dataset,
                                                      "error": f"unanswered {err.failure['task']} question: {err}"})
                        unanswered.append(json.dumps({"dataset": video.dataset, "video_id": video.video_id,
                                                      **err.failure}))
                        progress.advance(task)
                        continue
                    except Exception as err:  # noqa: BLE001 - one broken video must not stop the dataset
                        summary.failed_videos.append({"video_id": video.video_id, "dataset": video.dataset,
                                                      "error": f"{type(err).__name__}: {err}"})
                        progress.advance(task)
                        continue
                    write_text_atomic(path, json.dumps(work, separators=(",", ":")))
                    summary.done += 1
                works.append(work)
                asked = sum(v for k, v in work["queries"].items() if k.endswith(":asked"))
                failed = sum(v for k, v in work["queries"].items() if k.endswith(":failed"))
                progress.update(task, advance=1, queries=progress.tasks[0].fields["queries"] + asked,
                                failed=progress.tasks[0].fields["failed"] + failed)
        summary.failed = len(summary.failed_videos)
        self._write_outputs(works, summary, unanswered)
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
        write_text_atomic(self.out_dir / SUMMARY_FILE, json.dumps(summary.to_json(), indent=1, sort_keys=True))
        return summary

    def _write_outputs(self, works: list[dict[str, Any]], summary: BuildSummary, unanswered: list[str]) -> None:
        """Render the done videos' records; ``failures.jsonl`` gets their failed questions, then the unanswered
        question of each failed video (``unanswered``, JSON lines)."""
        dropped: dict[str, Counter[str]] = {"phase_a": Counter(), "phase_b": Counter()}
        records_a: list[DialogueRecord] = []
        records_b: list[DialogueRecord] = []
        failures: list[str] = []
        by_task: dict[str, Counter[str]] = {}
        targets: dict[str, Counter[str]] = {"object": Counter(), "anomaly": Counter()}
        summary.no_record_videos = []
        for work in works:
            reason = no_record_reason(int(work["num_frames"]), float(work["fps"]), self.settings)
            if reason is not None:
                summary.no_record_videos.append({"dataset": work["dataset"], "video_id": work["video_id"],
                                                 "reason": reason})
            a, b = self.render(work, dropped)
            records_a += a
            records_b += b
            for key, value in work["queries"].items():
                task, what = key.rsplit(":", 1)
                by_task.setdefault(task, Counter())[what] += value
            for failure in work["failures"]:
                failures.append(json.dumps({"dataset": work["dataset"], "video_id": work["video_id"], **failure}))
            for target in work["targets"]:
                targets[target["kind"]][target["status"]] += 1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_dialogues(self.out_dir / PHASE_A_FILE, records_a)
        write_dialogues(self.out_dir / PHASE_B_FILE, records_b)
        write_text_atomic(self.out_dir / FAILURES_FILE, "".join(f + "\n" for f in [*failures, *unanswered]))
        summary.queries = sum(c["asked"] for c in by_task.values())
        summary.failed_queries = sum(c["failed"] for c in by_task.values())
        summary.queries_by_task = {k: {"asked": v["asked"], "failed": v["failed"]} for k, v in sorted(by_task.items())}
        summary.records = {"phase_a": len(records_a), "phase_b": len(records_b)}
        summary.dropped_records = {k: dict(sorted(v.items())) for k, v in dropped.items()}
        summary.targets = {k: dict(sorted(v.items())) for k, v in targets.items()}
        summary.outputs = {name: str(self.out_dir / f) for name, f in
                           (("phase_a", PHASE_A_FILE), ("phase_b", PHASE_B_FILE), ("failures", FAILURES_FILE),
                            ("summary", SUMMARY_FILE))}
        summary.outputs["work_dir"] = str(self.work_dir)


def _adopt_earlier_output(folder: Path) -> None:
    """Mark a folder written by a builder from before output markers (it holds a ``settings.json`` work
    fingerprint or a ``summary.json`` beside ``phase_a.jsonl``) as the tool's, so that it resumes."""
    if not folder.is_dir() or (folder / OUTPUT_MARKER).exists():
        return
    earlier = (folder / "settings.json").is_file() or (folder / "work" / "settings.json").is_file() or (
        (folder / SUMMARY_FILE).is_file() and (folder / PHASE_A_FILE).is_file())
    if earlier:
        write_text_atomic(folder / OUTPUT_MARKER, json.dumps({"tool": "tvau-lightning", "adopted": True}) + "\n")


def settings_from_dict(values: dict[str, Any]) -> BuilderSettings:
    """:class:`BuilderSettings` from a plain mapping (a YAML file), rejecting unknown keys with their names."""
    known = {f.name for f in dataclasses.fields(BuilderSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown builder setting(s) {unknown}; known: {', '.join(sorted(known))}")
    return BuilderSettings(**values)
