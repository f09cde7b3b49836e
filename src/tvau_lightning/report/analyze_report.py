"""``report.html`` of ``tvau analyze``: the source video with the heatmap overlay, region boxes, the score
timeline, the region tracks and the stage-2 answers in one page that opens from disk.

Files written into the output folder (beside ``overlay.mp4``, ``scores.csv``, …)::

    report.html                 the page (CSS, JS and all numbers inline; no network)
    report_media/video.mp4      the source, H.264 yuv420p, even sides (padded), faststart
    report_media/heatmap/       one JPEG per distinct heatmap (default; why: ``report.media``), or heatmap.mp4
    report_media/track_{id}.jpg a thumbnail of each track at its peak-score frame

Frame ``f`` of an ``fps`` video is shown at time ``(f + 0.5) / fps`` (the middle of its display interval), so a
seek lands on the frame whatever the rounding of the container's timestamps; the page reads the current frame
back as ``floor(t * fps)``. ``report.html#frame=N`` opens the page at frame ``N`` (links, screenshots). Keys:
space play/pause, ←/→ one frame, ``h`` heatmap on/off.

The stage-2 answers show each time reference ``tvau analyze`` resolved (``answers.json``'s ``citations``: "at
frame 3" of the frames the model saw, or "2.5 s" from the first, as source frames) as a button that seeks the
video there; the timeline marks the span an answer's references cover.

With a weakly supervised category AHD the header names the video's top category and ranking (``summary.json``'s
``top_category``/``categories``), a lane under the timeline colours each frame above the threshold by its top
category (its name with the current frame, and as the pointer's tooltip), and the track list gives each track's
dominant category.

The page is independent of how the analysis was computed: :func:`write_analyze_report` takes anything shaped like
``inference.analyze.VideoAnalysis`` (see :class:`AnalysisLike`), :func:`write_report` plain data.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.report.media import (
    H264Writer,
    as_numpy,
    crop_thumbnail,
    even_size,
    heatmap_size,
    iterate_chunks,
    write_heatmap_media,
)
from tvau_lightning.report.page import render_page
from tvau_lightning.visualize import TRACK_COLORS as TRACK_RGB

if TYPE_CHECKING:
    from tvau_lightning.data.video import VideoReader

MEDIA_DIR = "report_media"

#: box colours per track, cycled: those of the overlay video (``visualize.TRACK_COLORS``) as CSS colours
TRACK_COLORS = tuple("#{:02x}{:02x}{:02x}".format(*rgb) for rgb in TRACK_RGB)

#: category colours of the timeline's category lane, cycled over the categories ``k ≥ 1`` (index ``k − 1``)
CATEGORY_COLORS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                   "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#aaffc3", "#800000", "#808000")


@dataclass
class ReportTrack:
    """One region track as the page shows it.

    Attributes:
        track_id: the track's number (its colour is ``TRACK_COLORS[track_id % len(TRACK_COLORS)]``).
        frames: ``(n,)`` frame numbers.
        boxes: ``(n, 4)`` inclusive ``(x1, y1, x2, y2)`` in source pixels.
        scores: ``(n,)`` region scores.
        category: the track's dominant category (a category AHD), else ``None``.
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    category: str | None = None

    @property
    def peak(self) -> int:
        """Index (into :attr:`frames`) of the highest score."""
        return int(np.argmax(self.scores))


@dataclass
class AnalyzeReport:
    """Everything on the page except the media.

    Attributes:
        video: the source path (shown, not read).
        fps: frames per second.
        size: ``(H, W)`` of the source.
        scores: ``(N,)`` frame scores.
        tracks: region tracks.
        labels: ``(N,)`` 0/1 ground-truth frame labels, if known.
        threshold: the score line drawn on the timeline.
        answers: stage-2 answers ``[{"kind", "question", "answer", "frames": [first, last]?, "parts", "cited"}]``
            (:func:`normalize_answers`).
        info: what was run (checkpoints, backbone, frame size, clip length, …), shown in the header.
        summary: numbers shown in the header (max score, frames above threshold, AUC, …; with a category AHD
            ``top_category`` and the ``categories`` ranking).
        class_names: a category AHD's class names (index 0 = normal), else ``None``.
        class_scores: ``(N, K)`` per-frame class scores of a category AHD: each frame's top category (argmax over
            ``k ≥ 1``) is drawn on the timeline's category lane and shown with the current frame.
    """

    video: str
    fps: float
    size: tuple[int, int]
    scores: np.ndarray
    tracks: list[ReportTrack] = field(default_factory=list)
    labels: np.ndarray | None = None
    threshold: float = 0.5
    answers: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    class_scores: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(len(self.scores))


class TrackLike(Protocol):
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


class AnalysisLike(Protocol):
    """What :func:`write_analyze_report` reads from an analysis (``inference.analyze.VideoAnalysis``)."""

    video: Path
    fps: float
    size: tuple[int, int]
    scores: np.ndarray
    tracks: Sequence[TrackLike]
    labels: np.ndarray | None
    threshold: float
    info: dict[str, Any]

    def summary(self) -> dict[str, Any]: ...

    def frame_heatmaps(self, indices: np.ndarray) -> torch.Tensor: ...


def label_ranges(labels: np.ndarray | None) -> list[list[int]]:
    """Runs of 1 in ``labels`` as inclusive ``[first, last]`` frame ranges."""
    if labels is None or len(labels) == 0:
        return []
    x = np.concatenate([[0], (np.asarray(labels) > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(x))
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2])]


_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b", re.IGNORECASE)


def answer_frames(answer: Mapping[str, Any], fps: float, num_frames: int,
                  frames_used: Sequence[int] | None) -> list[int] | None:
    """The ``[first, last]`` frames an answer refers to: its own ``frames`` if given; else the source frames its
    time references name (``source_frames``, resolved by ``tvau analyze``); else the first two times in seconds
    in a temporal-anchor answer ("from 2.0 s to 3.5 s"); else the frames the dialogue saw."""
    if answer.get("frames"):
        first, last = (int(v) for v in list(answer["frames"])[:2])
    elif answer.get("source_frames"):
        first, last = (int(v) for v in list(answer["source_frames"])[:2])
    elif answer.get("kind") == "temporal" and len(times := _SECONDS.findall(str(answer.get("answer", "")))) >= 2:
        # "to 3.0 s" ends with the frame shown just before 3.0 s
        first, last = int(float(times[0]) * fps), max(int(float(times[0]) * fps), round(float(times[1]) * fps) - 1)
    elif frames_used:
        first, last = int(min(frames_used)), int(max(frames_used))
    else:
        return None
    first, last = sorted((max(0, min(first, num_frames - 1)), max(0, min(last, num_frames - 1))))
    return [first, last]


def answer_parts(answer: Mapping[str, Any], num_frames: int) -> list[dict[str, Any]]:
    """The answer's text cut at its time references (``citations`` of ``answers.json``):
    ``[{"text"}, {"text", "frames": [first, last], "out_of_range"}, …]`` — a part with ``frames`` is a citation,
    its source frames clamped to the video. Citations that do not sit where their ``span`` says (an edited text)
    or that overlap an earlier one are left as plain text."""
    text = str(answer.get("answer", ""))
    parts: list[dict[str, Any]] = []
    position = 0
    for citation in answer.get("citations") or []:
        start, end = (int(v) for v in citation["span"])
        if start < position or text[start:end] != citation.get("text", text[start:end]):
            continue
        first, last = sorted(max(0, min(int(f), num_frames - 1)) for f in list(citation["source_frames"])[:2])
        if start > position:
            parts.append({"text": text[position:start]})
        parts.append({"text": text[start:end], "frames": [first, last],
                      "out_of_range": bool(citation.get("out_of_range", False))})
        position = end
    if position < len(text) or not parts:
        parts.append({"text": text[position:]})
    return parts


def normalize_answers(answers: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None, fps: float,
                      num_frames: int) -> list[dict[str, Any]]:
    """The ``answers.json`` document (or its ``answers`` list) → ``[{"kind", "question", "answer", "frames",
    "parts", "cited"}]``: ``frames`` the range an answer is placed at (:func:`answer_frames`), ``parts`` its text
    with the time references as source frames (:func:`answer_parts`), ``cited`` whether ``frames`` come from
    them (the timeline marks those spans)."""
    if answers is None:
        return []
    frames_used = answers.get("frames_used") if isinstance(answers, Mapping) else None
    items = answers.get("answers", []) if isinstance(answers, Mapping) else answers
    return [{"kind": str(a.get("kind", "")), "question": str(a.get("question", "")),
             "answer": str(a.get("answer", "")), "frames": answer_frames(a, fps, num_frames, frames_used),
             "parts": answer_parts(a, num_frames), "cited": bool(a.get("source_frames")) and not a.get("frames")}
            for a in items]


def _page_data(report: AnalyzeReport, heat: Any, media: str) -> dict[str, Any]:
    height, width = report.size
    video_h, video_w = even_size(height, width)
    tracks = []
    for t in report.tracks:
        peak = t.peak
        tracks.append({
            "id": int(t.track_id), "color": TRACK_COLORS[int(t.track_id) % len(TRACK_COLORS)],
            "start": int(t.frames[0]), "end": int(t.frames[-1]), "peak": round(float(t.scores[peak]), 4),
            "peak_frame": int(t.frames[peak]), "thumb": f"{media}/track_{int(t.track_id)}.jpg",
            "frames": [int(f) for f in t.frames], "boxes": np.asarray(t.boxes).astype(int).tolist(),
            "category": getattr(t, "category", None),
        })
    categories = None
    if report.class_names is not None and report.class_scores is not None:
        class_scores = np.asarray(report.class_scores, dtype=np.float64)
        top = class_scores[:, 1:].argmax(axis=1) + 1
        categories = {"names": list(report.class_names),
                      "colors": [None] + [CATEGORY_COLORS[(k - 1) % len(CATEGORY_COLORS)]
                                          for k in range(1, len(report.class_names))],
                      "frame": [int(k) for k in top],
                      "score": [round(float(class_scores[f, k]), 4) for f, k in enumerate(top)]}
    return {
        "video": report.video, "fps": float(report.fps), "num_frames": report.num_frames,
        "width": width, "height": height, "video_width": video_w, "video_height": video_h,
        "src": f"{media}/video.mp4", "scores": [round(float(s), 4) for s in report.scores],
        "label_ranges": label_ranges(report.labels), "has_labels": report.labels is not None,
        "threshold": float(report.threshold), "tracks": tracks, "answers": report.answers,
        "info": report.info, "summary": report.summary, **({"categories": categories} if categories else {}),
        "heatmap": {"mode": heat.mode, "width": heat.size[1], "height": heat.size[0],
                    "src": f"{media}/heatmap.mp4" if heat.mode == "video" else f"{media}/heatmap/",
                    "starts": heat.starts},
    }


def write_report(out_dir: str | os.PathLike[str], report: AnalyzeReport,
                 frames: Iterable[np.ndarray | torch.Tensor], heatmaps: Iterable[np.ndarray | torch.Tensor], *,
                 heatmap_media: str = "images", heatmap_max_side: int = 320, crf: int = 23,
                 preset: str = "veryfast") -> Path:
    """Write ``report.html`` and ``report_media/`` into ``out_dir`` (created if missing); returns the page.

    Args:
        report: the page's data.
        frames: the source frames ``(H, W, 3)`` uint8 in order, one per score.
        heatmaps: the heatmap ``(h, w)`` in [0, 1] of each frame in order (any size of the source's aspect).
        heatmap_media: ``"images"`` (default) or ``"video"`` (see ``benchmarks/README.md``).
        heatmap_max_side: longest side of the stored heatmap in pixels.
        crf, preset: x264 quality and speed of the source video.
    """
    out = Path(out_dir)
    media = out / MEDIA_DIR
    shutil.rmtree(media, ignore_errors=True)  # no stale heatmap images of an earlier, longer report
    media.mkdir(parents=True)
    n = report.num_frames
    if n < 1:
        raise ValueError(f"{report.video}: no frame scores, nothing to report")
    peaks: dict[int, list[tuple[int, np.ndarray]]] = {}
    for t in report.tracks:
        peaks.setdefault(int(t.frames[t.peak]), []).append((int(t.track_id), np.asarray(t.boxes[t.peak])))
    count = 0
    with H264Writer(media / "video.mp4", report.fps, crf=crf, preset=preset) as writer:
        for frame in frames:
            array = as_numpy(frame)
            if array.shape[:2] != tuple(report.size):
                raise ValueError(f"{report.video}: frame {count} is {array.shape[0]}x{array.shape[1]}, the report "
                                 f"says {report.size[0]}x{report.size[1]}")
            writer.write(array)
            for track_id, box in peaks.get(count, []):
                crop_thumbnail(array, box).save(media / f"track_{track_id}.jpg", quality=85)
            count += 1
    if count != n:
        raise ValueError(f"{report.video}: {count} frames were given for {n} frame scores")
    heat = write_heatmap_media(media, heatmaps, fps=report.fps, source_size=report.size, mode=heatmap_media,
                               max_side=heatmap_max_side)
    stored = len(heat.starts) if heat.mode == "images" else 1
    if heat.num_frames != n:
        raise ValueError(f"{report.video}: {heat.num_frames} heatmaps were given for {n} frame scores")
    data = _page_data(report, heat, MEDIA_DIR)
    data["media_bytes"] = {"video": (media / "video.mp4").stat().st_size, "heatmap": heat.bytes,
                           "heatmap_files": stored}
    page = out / "report.html"
    write_text_atomic(page, render_page("analyze.html", "analyze.js", data, f"tvau analyze — {Path(report.video).name}"))
    return page


def _analysis_heatmaps(analysis: AnalysisLike, size: tuple[int, int], chunk: int = 16) -> Iterator[torch.Tensor]:
    """Each frame's heatmap at the stored size ``size``. With ``grid_heatmaps`` (``VideoAnalysis``) the grid is
    upsampled straight to ``size`` (bilinear, as ``frame_heatmaps`` does to the source size) instead of through
    a full-size map (at 1080p, 36× the pixels of 320×180)."""
    grid = getattr(analysis, "grid_heatmaps", None)
    n = len(analysis.scores)
    for indices in iterate_chunks(n, chunk):
        if isinstance(grid, torch.Tensor) and grid.ndim == 3 and grid.shape[0] == n:
            maps = F.interpolate(grid[indices][:, None].float(), size=size, mode="bilinear", align_corners=False)
            yield from maps[:, 0].clamp_(0.0, 1.0)
        else:
            yield from analysis.frame_heatmaps(indices)


def write_analyze_report(out_dir: str | os.PathLike[str], *, analysis: AnalysisLike, source: VideoReader,
                         answers: Mapping[str, Any] | None = None, summary: Mapping[str, Any] | None = None,
                         heatmap_media: str = "images", heatmap_max_side: int = 320,
                         on_frames: Callable[[int], None] | None = None) -> Path:
    """Write ``report.html`` (and ``report_media/``) for a ``tvau analyze`` result into ``out_dir``.

    Args:
        analysis: a ``VideoAnalysis`` (anything with the fields of :class:`AnalysisLike`).
        source: the opened source video (``data.video.open_video``); its frames are re-encoded for the browser.
        answers: the ``answers.json`` document of a stage-2 run, if any.
        summary: the header numbers (default ``analysis.summary()``).
        on_frames: called with the number of source frames written (progress bars).

    Returns the path of ``report.html``.
    """
    n = len(analysis.scores)
    if source.num_frames != n:
        raise ValueError(f"{source.path} has {source.num_frames} frames, the analysis {n}")
    tracks = [ReportTrack(int(t.track_id), as_numpy(t.frames), as_numpy(t.boxes), as_numpy(t.scores),
                          category=getattr(t, "category", None)) for t in analysis.tracks]
    class_names = getattr(analysis, "class_names", None)
    class_scores = getattr(analysis, "class_scores", None)
    labels = None if analysis.labels is None else as_numpy(analysis.labels)
    report = AnalyzeReport(
        video=str(analysis.video), fps=float(analysis.fps), size=tuple(analysis.size), scores=as_numpy(analysis.scores),
        tracks=tracks, labels=labels, threshold=float(analysis.threshold),
        answers=normalize_answers(answers, float(analysis.fps), n), info=dict(analysis.info),
        summary=dict(summary if summary is not None else analysis.summary()),
        class_names=None if class_names is None or class_scores is None else list(class_names),
        class_scores=None if class_names is None or class_scores is None else as_numpy(class_scores),
    )

    def frames() -> Iterator[torch.Tensor]:
        for indices in iterate_chunks(n):
            yield from source.read(indices)
            if on_frames is not None:
                on_frames(len(indices))

    size = heatmap_size(*report.size, heatmap_max_side)
    return write_report(out_dir, report, frames(), _analysis_heatmaps(analysis, size), heatmap_media=heatmap_media,
                        heatmap_max_side=heatmap_max_side)
