"""``tvau analyze``: one video → heatmap overlay video, per-frame scores, anomalous regions and their tracks,
and (with a stage-2 checkpoint) the answers to the four standard questions.

The video (any file decord reads, or a folder of numbered frame images) is read at its native size, cut into
non-overlapping clips that hold every frame exactly once (the last one padded by repeating its last frame),
resized to the model's frame size and run through the AHD in batches. Each clip's grid heatmap is upsampled
to the **original** video size (bilinear; each grid step over its frames, as in evaluation), which gives the
frame scores (spatial maximum) and the regions (``metrics.regions``: heatmap > 0.5, 8-connected components,
one box per component scored by its maximum). Boxes of consecutive frames are linked into tracks by box IoU.

Files written to ``--out`` (built in a temporary folder beside it and renamed only when everything succeeded,
so a failure never leaves a partial result):

``overlay.mp4``
    H.264 (yuv420p) at the source fps, one frame per source frame: the heatmap blended over the frame,
    region boxes coloured by track, and below it a timeline of the frame scores (red above 0.5, a magenta
    band over ground-truth abnormal frames when labels are known) with a cursor on the current frame. Sides are
    padded by one black pixel where odd.
``scores.csv``
    ``frame,score`` (``frame,score,label`` when labels are known), one row per frame, frames from 0. With a weakly
    supervised category AHD (``WeakAHDTask``; the checkpoint records its ``categories``) also ``category`` and
    ``category_score`` after ``score``: the frame's top anomaly class and its class score, computed as
    ``WeakAHDTask`` scores frames for its category metrics (the spatial max of ``p_k`` over the frame's grid,
    :func:`~tvau_lightning.modules.category_ahd.frame_class_scores`); given for every frame, so read it together
    with ``score``.
``regions.json``
    ::

        {"video": str, "num_frames": N, "fps": float, "height": H, "width": W,
         "box_format": "x1,y1,x2,y2 inclusive pixel coordinates of the original video",
         "threshold": 0.5, "link_iou": 0.1,
         "frames": [{"frame": 0, "score": 0.93,
                     "regions": [{"box": [x1, y1, x2, y2], "score": 0.93, "track": 0}, ...]}, ...],  # all N frames
         "tracks": [{"id": 0, "start": 12, "end": 30, "max_score": 0.97,
                     "frames": [12, ...], "boxes": [[x1, y1, x2, y2], ...], "scores": [0.93, ...]}, ...]}

    Every frame is listed (``regions`` may be empty); ``track`` is the index into ``tracks``. A track holds one
    box per frame over consecutive frames. With a category AHD, frames also carry ``category``/``category_score``
    (as in ``scores.csv``), regions the category with the highest class probability in the grid cells under
    their box, and tracks their dominant ``category`` (:class:`RegionTrack`) and ``category_score``.
``answers.json`` (with ``--rae-ckpt``)
    ``{"video": str, "frames_used": [...], "fps": float, "sampling": {...}, "answers": [{"kind", "question",
    "answer", "source_frames", "citations"}, ...]}`` — the judgment, target, trajectory and temporal-anchor
    questions asked in order as one dialogue, on frames taken as the RAE checkpoint's DataModule took them
    (``sampling``: :class:`~tvau_lightning.inference.session.DialogueSampling` with its ``origin``, ``description``
    and ``note``). An answer's time references ("at frame 3" = the 4th frame shown, or "2.5 s" from the first) are
    resolved to source frames (:mod:`tvau_lightning.inference.citations`): ``citations`` = ``[{"text", "span",
    "unit", "cited", "source_frames", "source_seconds", "out_of_range"}]``, ``source_frames`` = ``[first, last]``
    over them (``null`` without any).
``report.html`` and ``report_media/`` (written by :mod:`tvau_lightning.report` from the command)
    one self-contained page to look at the result: the video with a toggleable heatmap overlay and track-coloured
    boxes, the clickable score timeline, the track list and the answers.
``summary.json``
    what was run (checkpoints, frame size, clip length, device, dtype) and a few numbers (max score, frames
    above 0.5, regions, tracks, frame AUC when labels with both classes are known — frames ranked by the AHD's
    unsaturated logit gap, as in ``tvau test``). With a category AHD: ``class_names``, ``top_category`` (and
    ``top_category_score``) and ``categories``, the per-video ranking ``[{"name", "score", "frames", "max"}]``:
    a category's score is the mean of its frame class score over the frames above the threshold (``category_basis:
    "above_threshold"``; over all frames, ``"all"``, when none is), ``frames`` how many of those frames it tops
    (:meth:`VideoAnalysis.category_ranking`).

Labels (for ``scores.csv``, the strip and the AUC) come from ``--labels`` (a ``.npy`` of per-frame 0/1, a
UBnormal ``*_tracks.txt`` or a text file of 0/1 per frame), or are found beside the video when it sits in a
UBnormal (``{video}_annotations/{video}_tracks.txt``) or ShanghaiTech (``test_frame_mask/{video}.npy``)
layout.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.data.clips import evaluation_clips
from tvau_lightning.data.decode_threads import interleave_in_threads
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import VideoReader, VideoReadError, open_video
from tvau_lightning.inference.models import HeatmapPredictor
from tvau_lightning.metrics.functional import micro_auroc
from tvau_lightning.metrics.regions import heatmap_to_detections, link_boxes
from tvau_lightning.modules.ahd import frame_scores
from tvau_lightning.modules.grid import (
    pad_last,
    steps_to_frames,
    upsample_heatmap,
    upsample_scores,
    upsample_spatial,
)
from tvau_lightning.visualize import decorate_frame, overlay_heatmap, score_strip, strip_cursor

OUTPUT_FILES = ("overlay.mp4", "scores.csv", "regions.json", "summary.json", "report.html", "report_media")


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class RegionTrack:
    """Anomalous regions of consecutive frames linked by box IoU.

    Attributes:
        track_id: index of the track in :attr:`VideoAnalysis.tracks`.
        frames: ``(n,)`` frame numbers, consecutive.
        boxes: ``(n, 4)`` int64 inclusive ``(x1, y1, x2, y2)`` in original pixels.
        scores: ``(n,)`` region scores (max heatmap value inside the region).
        category: the track's dominant category (category AHD only, else ``None``): the argmax over categories of
            the sum, over its regions, of each category's highest class probability in the grid cells under the box.
        category_score: the mean over its regions of that category's highest class probability under the box.
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    category: str | None = None
    category_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.track_id, "start": int(self.frames[0]), "end": int(self.frames[-1]),
               "max_score": round(float(self.scores.max()), 6), "frames": self.frames.tolist(),
               "boxes": self.boxes.tolist(), "scores": [round(float(s), 6) for s in self.scores]}
        if self.category is not None:
            out["category"] = self.category
            out["category_score"] = round(float(self.category_score or 0.0), 6)
        return out


@dataclass
class VideoAnalysis:
    """Everything ``tvau analyze`` computes for one video.

    Attributes:
        video: the source path.
        fps: frames per second of the source.
        size: ``(H, W)`` of the source frames.
        grid_heatmaps: ``(N, H', W')`` float32, the grid heatmap of each frame (a grid step repeated for the
            frames it covers); :meth:`frame_heatmaps` upsamples them to the source size.
        scores: ``(N,)`` frame scores in [0, 1].
        detections: ``(m, 6)`` rows ``(frame, x1, y1, x2, y2, score)``, sorted by frame.
        detection_tracks: ``(m,)`` the track id of each detection.
        tracks: the region tracks.
        labels: ``(N,)`` int64 ground-truth frame labels when known.
        threshold: heatmap binarisation threshold of the regions.
        link_iou: box IoU that links regions of consecutive frames.
        info: what was run (checkpoints, frame size, device …), merged into the summary.
        rank_scores: ``(N,)`` the unsaturated frame scores (spatial max of the AHD's logit gap) that rank frames
            for the AUC; ``None`` when the heatmap model gave heatmaps only (then :attr:`scores` rank).
        class_names: a category AHD's class names (index 0 = normal); ``None`` for the binary AHD (then the
            three fields below are ``None`` and no output mentions categories).
        class_scores: ``(N, K)`` per-frame class scores, as ``WeakAHDTask`` scores frames
            (:func:`~tvau_lightning.modules.category_ahd.frame_class_scores`: the spatial max of ``p_k`` over the
            frame's grid; normal: ``1 − max heatmap``).
        detection_class_scores: ``(m, K)`` per detection, each class's highest probability in the grid cells under
            its box.
    """

    video: Path
    fps: float
    size: tuple[int, int]
    grid_heatmaps: torch.Tensor
    scores: np.ndarray
    detections: np.ndarray
    detection_tracks: np.ndarray
    tracks: list[RegionTrack]
    labels: np.ndarray | None = None
    threshold: float = 0.5
    link_iou: float = 0.1
    info: dict[str, Any] = field(default_factory=dict)
    rank_scores: np.ndarray | None = None
    class_names: list[str] | None = None
    class_scores: np.ndarray | None = None
    detection_class_scores: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.scores.shape[0])

    @property
    def has_categories(self) -> bool:
        return self.class_names is not None and self.class_scores is not None

    def frame_categories(self) -> tuple[np.ndarray, np.ndarray]:
        """``(index (N,) int64, score (N,))``: each frame's top anomaly class (argmax of :attr:`class_scores` over
        the categories ``k ≥ 1``, an index into :attr:`class_names`) and its class score."""
        if not self.has_categories:
            raise ValueError("this analysis has no categories (a binary AHD)")
        anomalous = self.class_scores[:, 1:]
        index = anomalous.argmax(axis=1)
        return index + 1, anomalous[np.arange(len(index)), index]

    def category_ranking(self) -> tuple[list[dict[str, Any]], str]:
        """The video's categories ranked, and the frames it is over: each category ``k ≥ 1`` scored by the **mean
        of its frame class score over the frames above the threshold** (``basis = "above_threshold"``; over every
        frame, ``"all"``, when none is above), with ``frames`` the number of those frames whose top category it is
        and ``max`` its highest frame class score anywhere. Returns ``([{"name", "score", "frames", "max"}, …]
        best first, basis)``."""
        index, _ = self.frame_categories()
        above = self.scores > self.threshold
        basis = "above_threshold" if above.any() else "all"
        keep = above if above.any() else np.ones_like(above)
        ranking = [{"name": self.class_names[k], "score": round(float(self.class_scores[keep, k].mean()), 6),
                    "frames": int((index[keep] == k).sum()), "max": round(float(self.class_scores[:, k].max()), 6)}
                   for k in range(1, len(self.class_names))]
        ranking.sort(key=lambda r: (-r["score"], -r["frames"]))
        return ranking, basis

    def frame_heatmaps(self, indices: Sequence[int] | np.ndarray | slice) -> torch.Tensor:
        """Heatmaps ``(n, H, W)`` of the given frames at the source size (bilinear, as for the scores)."""
        grid = self.grid_heatmaps[indices]
        if grid.ndim == 2:
            grid = grid[None]
        return upsample_spatial(grid, self.size).clamp_(0.0, 1.0)

    def frame_regions(self, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (k, 4) int64, scores (k,), track ids (k,))`` of one frame."""
        lo, hi = np.searchsorted(self.detections[:, 0], [frame, frame + 1])
        rows = self.detections[lo:hi]
        return rows[:, 1:5].astype(np.int64), rows[:, 5], self.detection_tracks[lo:hi]

    def regions_json(self) -> dict[str, Any]:
        """The ``regions.json`` document (schema in the module docstring)."""
        frames = []
        for f in range(self.num_frames):
            boxes, scores, ids = self.frame_regions(f)
            regions = [{"box": b.tolist(), "score": round(float(s), 6), "track": int(t)}
                       for b, s, t in zip(boxes, scores, ids)]
            if self.has_categories and self.detection_class_scores is not None:
                lo = int(np.searchsorted(self.detections[:, 0], f))
                for i, region in enumerate(regions):
                    row = self.detection_class_scores[lo + i]
                    k = int(row[1:].argmax()) + 1
                    region["category"], region["category_score"] = self.class_names[k], round(float(row[k]), 6)
            entry: dict[str, Any] = {"frame": f, "score": round(float(self.scores[f]), 6)}
            if self.has_categories:
                k = int(self.class_scores[f, 1:].argmax()) + 1
                entry["category"], entry["category_score"] = self.class_names[k], round(float(self.class_scores[f, k]), 6)
            frames.append({**entry, "regions": regions})
        return {
            "video": str(self.video), "num_frames": self.num_frames, "fps": self.fps,
            "height": self.size[0], "width": self.size[1],
            "box_format": "x1,y1,x2,y2 inclusive pixel coordinates of the original video",
            "threshold": self.threshold, "link_iou": self.link_iou,
            "frames": frames, "tracks": [t.to_json() for t in self.tracks],
        }

    def scores_csv(self) -> str:
        """``frame,score[,category,category_score][,label]`` with one row per frame (categories: a category AHD's
        top anomaly class of each frame, :meth:`frame_categories`)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        categories = self.frame_categories() if self.has_categories else None
        writer.writerow(["frame", "score"] + (["category", "category_score"] if categories is not None else [])
                        + (["label"] if self.labels is not None else []))
        for f in range(self.num_frames):
            row: list[Any] = [f, f"{self.scores[f]:.6f}"]
            if categories is not None:
                row += [self.class_names[int(categories[0][f])], f"{categories[1][f]:.6f}"]
            if self.labels is not None:
                row.append(int(self.labels[f]))
            writer.writerow(row)
        return buf.getvalue()

    def summary(self) -> dict[str, Any]:
        """A few numbers about the result (and :attr:`info`, what was run)."""
        out: dict[str, Any] = {
            "video": str(self.video), "num_frames": self.num_frames, "fps": self.fps,
            "height": self.size[0], "width": self.size[1],
            "max_score": round(float(self.scores.max()), 6),
            "frames_above_threshold": int((self.scores > self.threshold).sum()),
            "num_regions": int(self.detections.shape[0]), "num_tracks": len(self.tracks),
        }
        if self.has_categories:
            ranking, basis = self.category_ranking()
            out.update({"top_category": ranking[0]["name"], "top_category_score": ranking[0]["score"],
                        "category_basis": basis, "categories": ranking})
        if self.labels is not None:
            out["abnormal_frames_labelled"] = int(self.labels.sum())
            if 0 < self.labels.sum() < self.num_frames:
                ranking = self.scores if self.rank_scores is None else self.rank_scores
                out["frame_auc"] = round(micro_auroc(ranking, self.labels), 6)
        return {**out, **self.info}


# --------------------------------------------------------------------------------------------------
# Running the AHD over a video
# --------------------------------------------------------------------------------------------------


def link_detections(detections: np.ndarray, link_iou: float = 0.1) -> tuple[list[RegionTrack], np.ndarray]:
    """Link per-frame detections ``(m, 6)`` (``frame, x1, y1, x2, y2, score``) into tracks with
    :func:`~tvau_lightning.metrics.regions.link_boxes`; returns the tracks and each detection's track id."""
    ids = np.full(len(detections), -1, dtype=np.int64)
    if len(detections) == 0:
        return [], ids
    rows = detections[:, :5].round().astype(np.int64)
    # link_boxes returns copies of the rows: map them back to detections (same frame and box; exact duplicates
    # are taken in order)
    slots: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        slots.setdefault(tuple(row.tolist()), []).append(i)
    tracks = []
    for track_id, track in enumerate(link_boxes(rows, link_iou=link_iou)):
        members = [slots[tuple(r.tolist())].pop(0) for r in track]
        ids[members] = track_id
        tracks.append(RegionTrack(track_id, track[:, 0].copy(), track[:, 1:].copy(), detections[members, 5].copy()))
    return tracks, ids


def box_class_scores(class_maps: torch.Tensor, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each class's highest probability in the grid cells under each box: ``class_maps (K, H', W')`` of one frame,
    ``boxes (k, 4)`` inclusive ``(x1, y1, x2, y2)`` in pixels of a ``size = (H, W)`` frame → ``(k, K)``. Cell
    ``(i, j)`` covers the pixels ``[i·H/H', (i+1)·H/H') × [j·W/W', (j+1)·W/W')``."""
    classes, grid_h, grid_w = class_maps.shape
    out = np.zeros((len(boxes), classes), dtype=np.float64)
    maps = class_maps.float().cpu()
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.int64).reshape(-1, 4)):
        r0, r1 = (min(grid_h - 1, max(0, int(v) * grid_h // size[0])) for v in (y1, y2))
        c0, c1 = (min(grid_w - 1, max(0, int(v) * grid_w // size[1])) for v in (x1, x2))
        out[i] = maps[:, r0:r1 + 1, c0:c1 + 1].amax(dim=(1, 2)).numpy()
    return out


def track_categories(tracks: Sequence[RegionTrack], track_ids: np.ndarray, detection_class_scores: np.ndarray,
                     class_names: Sequence[str]) -> None:
    """Set each track's dominant ``category`` and ``category_score`` (:class:`RegionTrack`) from its detections'
    class scores ``(m, K)``."""
    for track in tracks:
        rows = detection_class_scores[track_ids == track.track_id]
        if len(rows) == 0:
            continue
        k = int(rows[:, 1:].sum(axis=0).argmax()) + 1
        track.category, track.category_score = str(class_names[k]), float(rows[:, k].mean())


def analyze_video(
    predictor: HeatmapPredictor | Callable[[torch.Tensor], torch.Tensor],
    source: VideoReader | str | os.PathLike[str],
    *,
    frame_size: tuple[int, int],
    clip_len: int,
    temporal_factor: int | None = None,
    batch_size: int = 1,
    threshold: float = 0.5,
    link_iou: float = 0.1,
    labels: np.ndarray | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> VideoAnalysis:
    """Run the AHD over every frame of a video and derive scores, regions and tracks.

    Args:
        predictor: clips ``(B, T, h, w, 3)`` uint8 → heatmaps ``(B, T', H', W')`` (a :class:`HeatmapPredictor`).
        source: an opened video (``data.video.open_video``) or its path.
        frame_size: ``(h, w)`` the model takes (what it was trained with).
        clip_len: frames per clip.
        temporal_factor: frames per grid step (default: ``predictor.temporal_factor``).
        batch_size: clips per forward pass.
        threshold: heatmap value above which a pixel is anomalous (0.5 = the AHD's own judgment).
        link_iou: box IoU that links regions of consecutive frames into a track.
        labels: ``(N,)`` ground-truth frame labels, if known (kept in the result).
        on_frames: called with the number of frames done after each batch (progress bars).
    """
    if isinstance(source, (str, os.PathLike)):
        source = open_video(source)
    factor = int(temporal_factor or getattr(predictor, "temporal_factor", 1))
    if batch_size < 1 or clip_len < 1:
        raise ValueError(f"batch_size and clip_len must be positive, got {batch_size}, {clip_len}")
    total = source.num_frames
    if total < 1:
        raise VideoReadError(f"{source.path} has no frames")
    height, width = source.size
    if labels is not None and len(labels) != total:
        raise ValueError(f"labels have {len(labels)} entries but {source.path} has {total} frames")
    plans = evaluation_clips(total, clip_len)
    grids: list[torch.Tensor] = []
    scores = np.zeros(total, dtype=np.float64)
    rank_scores = np.zeros(total, dtype=np.float64)
    ranked = hasattr(predictor, "predict")
    class_names = getattr(predictor, "class_names", None) if hasattr(predictor, "predict_classes") else None
    class_scores = None if class_names is None else np.zeros((total, len(class_names)), dtype=np.float64)
    detections: list[np.ndarray] = []
    detection_classes: list[np.ndarray] = []

    def read_batches() -> Iterator[tuple[list[np.ndarray], torch.Tensor]]:
        for start in range(0, len(plans), batch_size):
            batch_plans = plans[start:start + batch_size]
            yield batch_plans, torch.stack([pad_last(resize_frames(source.read(p), frame_size), clip_len)
                                            for p in batch_plans])

    # the next batches are decoded and resized in a thread while the model runs on this one
    for batch_plans, batch in interleave_in_threads([read_batches], prefetch=2, name="tvau-analyze"):
        clip_classes = class_maps = None
        if class_names is not None:
            heat, logit, clip_classes, class_maps = predictor.predict_classes(batch)
            clip_classes = clip_classes.cpu().numpy()
            class_maps = steps_to_frames(class_maps, temporal_factor=factor, num_frames=clip_len).cpu()
        elif hasattr(predictor, "predict"):
            heat, logit = predictor.predict(batch)
        else:  # a plain callable: heatmaps only, ranked by themselves
            heat, logit = predictor(batch).float(), None
        if heat.ndim != 4:
            raise ValueError(f"the heatmap model returned shape {tuple(heat.shape)}, expected (B, T', H', W')")
        full = upsample_heatmap(heat, num_frames=clip_len, frame_size=(height, width), temporal_factor=factor)
        clip_scores = frame_scores(full).cpu().numpy()
        clip_ranks = None if logit is None else frame_scores(upsample_scores(
            logit, num_frames=clip_len, frame_size=(height, width), temporal_factor=factor)).cpu().numpy()
        per_frame_grid = steps_to_frames(heat, temporal_factor=factor, num_frames=clip_len).cpu()
        full = full.cpu()
        for b, plan in enumerate(batch_plans):
            n = len(plan)
            grids.append(per_frame_grid[b, :n])
            scores[plan] = clip_scores[b, :n]
            if clip_ranks is not None:
                rank_scores[plan] = clip_ranks[b, :n]
            found = heatmap_to_detections(full[b, :n], plan, (height, width), threshold=threshold)
            detections.append(found)
            if class_maps is not None:
                class_scores[plan] = clip_classes[b, :n]
                position = {int(f): j for j, f in enumerate(plan)}
                detection_classes.append(np.concatenate(
                    [box_class_scores(class_maps[b, position[int(row[0])]], row[None, 1:5], (height, width))
                     for row in found]) if len(found) else np.zeros((0, len(class_names))))
        if on_frames is not None:
            on_frames(sum(len(p) for p in batch_plans))
    rows = np.concatenate(detections) if detections else np.zeros((0, 6))
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    tracks, track_ids = link_detections(rows, link_iou)
    row_classes = None
    if class_names is not None:
        row_classes = (np.concatenate(detection_classes) if detection_classes else
                       np.zeros((0, len(class_names))))[order]
        track_categories(tracks, track_ids, row_classes, class_names)
    return VideoAnalysis(
        video=Path(source.path), fps=float(source.fps), size=(height, width), grid_heatmaps=torch.cat(grids),
        scores=scores, detections=rows, detection_tracks=track_ids, tracks=tracks,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64), threshold=threshold,
        link_iou=link_iou, rank_scores=rank_scores if ranked else None,
        class_names=None if class_names is None else list(class_names), class_scores=class_scores,
        detection_class_scores=row_classes,
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def strip_height(video_height: int) -> int:
    """Height of the score timeline under the overlay: 15 % of the video, at least 16 px."""
    return max(16, int(round(0.15 * video_height)))


def overlay_frames(
    analysis: VideoAnalysis,
    source: VideoReader,
    *,
    alpha: float = 0.4,
    min_value: float = 0.0,
    chunk: int = 16,
    with_strip: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the overlay frames ``(H', W', 3)`` uint8 of the whole video in order (see the module docstring)."""
    n, (height, width) = analysis.num_frames, analysis.size
    if source.num_frames != n:
        raise ValueError(f"{source.path} has {source.num_frames} frames, the analysis {n}")
    strip = score_strip(analysis.scores, width, strip_height(height), labels=analysis.labels,
                        threshold=analysis.threshold) if with_strip else None
    thickness = max(1, min(height, width) // 120)
    categories = analysis.frame_categories()[0] if analysis.has_categories else None
    for start in range(0, n, chunk):
        indices = np.arange(start, min(n, start + chunk))
        frames = source.read(indices)
        blended = overlay_heatmap(frames, analysis.frame_heatmaps(indices), alpha=alpha, min_value=min_value)
        for k, f in enumerate(indices.tolist()):
            boxes, _, ids = analysis.frame_regions(f)
            label = f"frame {f}/{n - 1}  score {analysis.scores[f]:.2f}"
            if categories is not None and analysis.scores[f] > analysis.threshold:
                label += f"  {analysis.class_names[int(categories[f])]}"
            bar = None if strip is None else strip_cursor(strip, f, n, label)
            yield decorate_frame(blended[k], boxes.tolist(), track_ids=ids.tolist(), strip=bar, thickness=thickness)


def write_video(path: str | os.PathLike[str], frames: Iterator[torch.Tensor] | Sequence[torch.Tensor],
                fps: float, *, crf: int = 20) -> int:
    """Encode uint8 frames ``(H, W, 3)`` (even sides, all one size) as H.264/yuv420p with imageio-ffmpeg;
    returns the number of frames written. ``path`` should be a temporary or staged name (not atomic itself)."""
    import imageio_ffmpeg

    writer = None
    count = 0
    try:
        for frame in frames:
            array = np.ascontiguousarray(frame.cpu().numpy() if isinstance(frame, torch.Tensor) else frame)
            if writer is None:
                h, w = array.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 in yuv420p needs even frame sides, got {h}x{w}")
                writer = imageio_ffmpeg.write_frames(
                    str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
                    macro_block_size=1, output_params=["-crf", str(crf)], ffmpeg_log_level="error",
                )
                writer.send(None)
            writer.send(array)
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError("no frames to write")
    return count


def write_overlay_video(analysis: VideoAnalysis, source: VideoReader, path: str | os.PathLike[str], *,
                        alpha: float = 0.4, min_value: float = 0.0, on_frames: Callable[[int], None] | None = None
                        ) -> int:
    """Write the overlay video of an analysis to ``path`` (H.264, source fps); returns its frame count."""

    def frames() -> Iterator[torch.Tensor]:
        for frame in overlay_frames(analysis, source, alpha=alpha, min_value=min_value):
            yield frame
            if on_frames is not None:
                on_frames(1)

    return write_video(path, frames(), analysis.fps)


def write_analysis(analysis: VideoAnalysis, source: VideoReader, out_dir: Path, *,
                   answers: dict[str, Any] | None = None, alpha: float = 0.4, min_value: float = 0.0,
                   on_frames: Callable[[int], None] | None = None) -> None:
    """Write every output file of the analysis into ``out_dir`` (an existing, staged folder)."""
    write_text_atomic(out_dir / "scores.csv", analysis.scores_csv())
    write_text_atomic(out_dir / "regions.json", json.dumps(analysis.regions_json(), indent=1) + "\n")
    if answers is not None:
        write_text_atomic(out_dir / "answers.json", json.dumps(answers, indent=2, ensure_ascii=False) + "\n")
    write_overlay_video(analysis, source, out_dir / "overlay.mp4", alpha=alpha, min_value=min_value,
                        on_frames=on_frames)
    write_text_atomic(out_dir / "summary.json", json.dumps(analysis.summary(), indent=2) + "\n")


