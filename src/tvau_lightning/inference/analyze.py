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
    ``frame,score`` (``frame,score,label`` when labels are known), one row per frame, frames from 0.
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
    box per frame over consecutive frames.
``answers.json`` (with ``--rae-ckpt``)
    ``{"video": str, "frames_used": [...], "fps": float, "answers": [{"kind", "question", "answer"}, ...]}`` —
    the judgment, target, trajectory and temporal-anchor questions asked in order as one dialogue.
``summary.json``
    what was run (checkpoints, frame size, clip length, device, dtype) and a few numbers (max score, frames
    above 0.5, regions, tracks, frame AUC when labels with both classes are known).

Labels (for ``scores.csv``, the strip and the AUC) come from ``--labels`` (a ``.npy`` of per-frame 0/1, a
UBnormal ``*_tracks.txt`` or a text file of 0/1 per frame), or are found beside the video when it sits in a
UBnormal (``{video}_annotations/{video}[_new]_tracks.txt``) or ShanghaiTech (``test_frame_mask/{video}.npy``)
layout.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tvau_lightning.atomic import atomic_directory, write_text_atomic
from tvau_lightning.data.clips import evaluation_clips
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import DecordVideo, FrameFolderVideo, VideoReadError, open_video
from tvau_lightning.inference.models import (
    CheckpointError,
    HeatmapPredictor,
    clip_settings,
    dtype_name,
    load_ahd_task,
    load_rae_task,
    read_checkpoint,
    resolve_device,
)
from tvau_lightning.inference.visualize import decorate_frame, overlay_heatmap, score_strip, strip_cursor
from tvau_lightning.metrics.regions import heatmap_to_detections, link_boxes
from tvau_lightning.modules.ahd import frame_scores, upsample_heatmap

VideoSource = DecordVideo | FrameFolderVideo
OUTPUT_FILES = ("overlay.mp4", "scores.csv", "regions.json", "summary.json")


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
    """

    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"id": self.track_id, "start": int(self.frames[0]), "end": int(self.frames[-1]),
                "max_score": round(float(self.scores.max()), 6), "frames": self.frames.tolist(),
                "boxes": self.boxes.tolist(), "scores": [round(float(s), 6) for s in self.scores]}


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

    @property
    def num_frames(self) -> int:
        return int(self.scores.shape[0])

    def frame_heatmaps(self, indices: Sequence[int] | np.ndarray | slice) -> torch.Tensor:
        """Heatmaps ``(n, H, W)`` of the given frames at the source size (bilinear, as for the scores)."""
        grid = self.grid_heatmaps[indices]
        if grid.ndim == 2:
            grid = grid[None]
        up = F.interpolate(grid[:, None].float(), size=self.size, mode="bilinear", align_corners=False)
        return up[:, 0].clamp_(0.0, 1.0)

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
            frames.append({"frame": f, "score": round(float(self.scores[f]), 6),
                           "regions": [{"box": b.tolist(), "score": round(float(s), 6), "track": int(t)}
                                       for b, s, t in zip(boxes, scores, ids)]})
        return {
            "video": str(self.video), "num_frames": self.num_frames, "fps": self.fps,
            "height": self.size[0], "width": self.size[1],
            "box_format": "x1,y1,x2,y2 inclusive pixel coordinates of the original video",
            "threshold": self.threshold, "link_iou": self.link_iou,
            "frames": frames, "tracks": [t.to_json() for t in self.tracks],
        }

    def scores_csv(self) -> str:
        """``frame,score[,label]`` with one row per frame."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["frame", "score"] + (["label"] if self.labels is not None else []))
        for f in range(self.num_frames):
            row: list[Any] = [f, f"{self.scores[f]:.6f}"]
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
        if self.labels is not None:
            out["abnormal_frames_labelled"] = int(self.labels.sum())
            if 0 < self.labels.sum() < self.num_frames:
                from sklearn.metrics import roc_auc_score

                out["frame_auc"] = round(float(roc_auc_score(self.labels, self.scores)), 6)
        return {**out, **self.info}


# --------------------------------------------------------------------------------------------------
# Running the AHD over a video
# --------------------------------------------------------------------------------------------------


def _pad_clip(frames: torch.Tensor, clip_len: int) -> torch.Tensor:
    pad = clip_len - frames.shape[0]
    return frames if pad == 0 else torch.cat([frames, frames[-1:].expand(pad, *frames.shape[1:])])


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


def analyze_video(
    predictor: HeatmapPredictor | Callable[[torch.Tensor], torch.Tensor],
    source: VideoSource | str | os.PathLike[str],
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
    detections: list[np.ndarray] = []
    for start in range(0, len(plans), batch_size):
        batch_plans = plans[start:start + batch_size]
        clips = [_pad_clip(resize_frames(source.read(p), frame_size), clip_len) for p in batch_plans]
        heat = predictor(torch.stack(clips)).float()  # (B, T', H', W')
        if heat.ndim != 4:
            raise ValueError(f"the heatmap model returned shape {tuple(heat.shape)}, expected (B, T', H', W')")
        full = upsample_heatmap(heat, num_frames=clip_len, frame_size=(height, width), temporal_factor=factor)
        clip_scores = frame_scores(full).cpu().numpy()
        per_frame_grid = heat.repeat_interleave(factor, dim=1)[:, :clip_len].cpu()
        full = full.cpu()
        for b, plan in enumerate(batch_plans):
            n = len(plan)
            grids.append(per_frame_grid[b, :n])
            scores[plan] = clip_scores[b, :n]
            detections.append(heatmap_to_detections(full[b, :n], plan, (height, width), threshold=threshold))
        if on_frames is not None:
            on_frames(sum(len(p) for p in batch_plans))
    rows = np.concatenate(detections) if detections else np.zeros((0, 6))
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    tracks, track_ids = link_detections(rows, link_iou)
    return VideoAnalysis(
        video=Path(source.path), fps=float(source.fps), size=(height, width), grid_heatmaps=torch.cat(grids),
        scores=scores, detections=rows, detection_tracks=track_ids, tracks=tracks,
        labels=None if labels is None else np.asarray(labels, dtype=np.int64), threshold=threshold,
        link_iou=link_iou,
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def strip_height(video_height: int) -> int:
    """Height of the score timeline under the overlay: 15 % of the video, at least 16 px."""
    return max(16, int(round(0.15 * video_height)))


def overlay_frames(
    analysis: VideoAnalysis,
    source: VideoSource,
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
    for start in range(0, n, chunk):
        indices = np.arange(start, min(n, start + chunk))
        frames = source.read(indices)
        blended = overlay_heatmap(frames, analysis.frame_heatmaps(indices), alpha=alpha, min_value=min_value)
        for k, f in enumerate(indices.tolist()):
            boxes, _, ids = analysis.frame_regions(f)
            label = f"frame {f}/{n - 1}  score {analysis.scores[f]:.2f}"
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


def write_overlay_video(analysis: VideoAnalysis, source: VideoSource, path: str | os.PathLike[str], *,
                        alpha: float = 0.4, min_value: float = 0.0, on_frames: Callable[[int], None] | None = None
                        ) -> int:
    """Write the overlay video of an analysis to ``path`` (H.264, source fps); returns its frame count."""

    def frames() -> Iterator[torch.Tensor]:
        for frame in overlay_frames(analysis, source, alpha=alpha, min_value=min_value):
            yield frame
            if on_frames is not None:
                on_frames(1)

    return write_video(path, frames(), analysis.fps)


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty ``out`` unless ``overwrite`` (checked before any work is done)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} already exists and is not empty; pass --overwrite to replace it "
                              "or choose another --out")


def write_analysis(analysis: VideoAnalysis, source: VideoSource, out_dir: Path, *,
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


# --------------------------------------------------------------------------------------------------
# Labels found beside the video
# --------------------------------------------------------------------------------------------------


def _labels_from_tracks(path: Path, num_frames: int) -> np.ndarray:
    from tvau_lightning.data.ubnormal import parse_tracks_file

    labels = np.zeros(num_frames, dtype=np.int64)
    for track in parse_tracks_file(path):
        labels[track.start:min(track.end, num_frames - 1) + 1] = 1
    return labels


def read_frame_labels(path: str | os.PathLike[str], num_frames: int) -> np.ndarray:
    """Per-frame 0/1 labels from a ``.npy`` array, a UBnormal ``*_tracks.txt`` or a text file of 0/1 values
    (separated by whitespace or commas); the count must match the video."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    if path.name.endswith("tracks.txt"):
        return _labels_from_tracks(path, num_frames)
    if path.suffix == ".npy":
        values = np.load(path).reshape(-1)
    else:
        tokens = path.read_text(encoding="utf-8").replace(",", " ").split()
        try:
            values = np.array([float(t) for t in tokens])
        except ValueError as error:
            raise ValueError(f"{path}: expected 0/1 per frame separated by spaces, commas or newlines ({error})") from error
    if values.shape[0] != num_frames or not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: expected {num_frames} labels of 0 or 1 (one per frame), got {values.shape[0]} "
                         f"values{'' if np.isin(values, (0, 1)).all() else ' with other numbers'}")
    return values.astype(np.int64)


def find_frame_labels(video: str | os.PathLike[str], num_frames: int) -> tuple[np.ndarray, Path] | None:
    """Ground-truth frame labels stored beside a video in UBnormal or ShanghaiTech layout, if any."""
    video = Path(video)
    annotations = video.parent / f"{video.stem}_annotations"
    if video.is_file() and annotations.is_dir():  # UBnormal
        for name in (f"{video.stem}_new_tracks.txt", f"{video.stem}_tracks.txt"):
            if (annotations / name).is_file():
                return _labels_from_tracks(annotations / name, num_frames), annotations / name
        return np.zeros(num_frames, dtype=np.int64), annotations
    if video.is_dir() and video.parent.name == "frames":  # ShanghaiTech testing/frames/{video}
        mask = video.parent.parent / "test_frame_mask" / f"{video.name}.npy"
        if mask.is_file():
            return read_frame_labels(mask, num_frames), mask
    return None


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvau analyze",
        description="Analyze one video: heatmap overlay video, per-frame scores, regions and tracks, and (with a "
                    "stage-2 checkpoint) answers to the standard questions.",
    )
    parser.add_argument("video", help="a video file (anything decord reads) or a folder of numbered frame images")
    parser.add_argument("--out", required=True, help="output folder (created; replaced only with --overwrite)")
    parser.add_argument("--ckpt", help="stage-1 AHD checkpoint (.ckpt); optional when --rae-ckpt names its own")
    parser.add_argument("--rae-ckpt", help="stage-2 RAE checkpoint: also write answers.json")
    parser.add_argument("--backbone", help="backbone folder, overriding the path stored in the checkpoint")
    parser.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"),
                        help="model frame size (default: the one the checkpoint was trained with)")
    parser.add_argument("--clip-len", type=int, help="frames per clip (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=1, help="clips per forward pass (default 1)")
    parser.add_argument("--fps", type=float, help="frame rate of a frame folder (default 24), or to override a file's")
    parser.add_argument("--labels", help="ground-truth frame labels (.npy, UBnormal *_tracks.txt, or 0/1 text)")
    parser.add_argument("--threshold", type=float, default=0.5, help="heatmap threshold of regions (default 0.5)")
    parser.add_argument("--link-iou", type=float, default=0.1, help="box IoU linking regions into tracks (0.1)")
    parser.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity in the overlay (default 0.4)")
    parser.add_argument("--overlay-min", type=float, default=0.0,
                        help="draw the heatmap only where it is at least this (e.g. 0.5); default 0 = everywhere")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="backbone dtype: auto (bf16 on GPU, fp32 on CPU), float32, "
                                                      "bfloat16, float16")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@dataclass
class LoadedModels:
    """The models ``analyze``/``chat`` run, and how to feed them."""

    heatmaps: HeatmapPredictor
    frame_size: tuple[int, int]
    clip_len: int
    rae: Any | None = None
    rae_frame_size: tuple[int, int] | None = None
    rae_num_frames: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


def load_models(*, ckpt: str | None, rae_ckpt: str | None, backbone: str | None = None,
                frame_size: Sequence[int] | None = None, clip_len: int | None = None,
                device: str = "auto", dtype: str = "auto") -> LoadedModels:
    """Load the AHD (and the RAE) for inference.

    With an RAE checkpoint, its backbone and frozen AHD make the heatmaps too (``ckpt`` then replaces the stage-1
    checkpoint it names), so one backbone is in memory. Frame size and clip length come from the stage-1
    checkpoint's DataModule unless given; they are checked before any weights are loaded.
    """
    from tvau_lightning.inference.models import resolve_stored_path

    if ckpt is None and rae_ckpt is None:
        raise ValueError("pass --ckpt AHD.ckpt (stage 1) and/or --rae-ckpt RAE.ckpt (stage 2)")
    dev = resolve_device(device)
    info: dict[str, Any] = {"device": str(dev), "dtype": dtype_name(dtype, dev)}
    rae_raw = read_checkpoint(rae_ckpt) if rae_ckpt is not None else None
    ahd_path = ckpt
    if ahd_path is None and rae_raw is not None and rae_raw["hyper_parameters"].get("ahd_checkpoint"):
        ahd_path = resolve_stored_path(str(rae_raw["hyper_parameters"]["ahd_checkpoint"]), rae_ckpt)
    ahd_raw = read_checkpoint(ahd_path) if ahd_path is not None else None
    stored = clip_settings(ahd_raw if ahd_raw is not None else rae_raw)
    size = tuple(int(v) for v in frame_size) if frame_size else stored.frame_size
    length = clip_len or stored.clip_len
    if size is None:
        raise CheckpointError(f"{ahd_path or rae_ckpt} does not record the frame size it was trained with; pass "
                              "--frame-size H W (the training frame size)")
    if length is None:
        raise CheckpointError(f"{ahd_path or rae_ckpt} does not record its clip length; pass --clip-len N")
    rae = None
    if rae_raw is not None:
        rae = load_rae_task(rae_ckpt, backbone=backbone, ahd_checkpoint=ckpt, device=dev, dtype=dtype, ckpt=rae_raw)
        info["rae_checkpoint"] = str(rae_ckpt)
    if rae is not None and rae.ahd is not None:
        heatmaps = HeatmapPredictor(rae)
    elif ahd_raw is not None:
        heatmaps = HeatmapPredictor(load_ahd_task(ahd_path, backbone=backbone, device=dev, dtype=dtype, ckpt=ahd_raw))
    else:
        raise CheckpointError(f"{rae_ckpt} was trained without the AHD (use_ahd: false); pass --ckpt AHD.ckpt for "
                              "the heatmaps")
    info.update({"ahd_checkpoint": None if ahd_path is None else str(ahd_path), "frame_size": list(size),
                 "clip_len": int(length), "backbone": str(heatmaps.backbone.config.path)})
    models = LoadedModels(heatmaps, (int(size[0]), int(size[1])), int(length), rae=rae, info=info)
    if rae is not None:
        rae_settings = clip_settings(rae_raw)
        models.rae_frame_size = rae_settings.frame_size or models.frame_size
        models.rae_num_frames = rae_settings.clip_len or models.clip_len
        info["rae_frame_size"], info["rae_num_frames"] = list(models.rae_frame_size), models.rae_num_frames
    return models


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """``with progress_bar(on) as task: advance = task("analyzing", total)`` — a rich progress bar on stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)

    def add(description: str, total: int) -> Callable[[int], None]:
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    with progress:
        yield add


def run_analyze(args: argparse.Namespace) -> Path:
    """``tvau analyze`` with parsed arguments; returns the output folder."""
    start_time = time.perf_counter()
    out = Path(args.out)
    check_output_dir(out, args.overwrite)
    for name, value in (("--batch-size", args.batch_size), ("--clip-len", args.clip_len or 1)):
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    source = open_video(args.video, fps=args.fps)
    if source.num_frames < 1:
        raise VideoReadError(f"{args.video} has no frames")
    _ = source.size  # decodes frame 0: an undecodable file fails here, before any model is loaded
    fps = float(args.fps) if args.fps else float(source.fps)
    if not math.isfinite(fps) or fps <= 0:
        raise VideoReadError(f"{args.video} reports no usable frame rate ({source.fps}); pass --fps")
    if args.labels:
        labels, labels_from = read_frame_labels(args.labels, source.num_frames), Path(args.labels)
    else:
        found = find_frame_labels(args.video, source.num_frames)
        labels, labels_from = (None, None) if found is None else found
    models = load_models(ckpt=args.ckpt, rae_ckpt=args.rae_ckpt, backbone=args.backbone, frame_size=args.frame_size,
                         clip_len=args.clip_len, device=args.device, dtype=args.dtype)
    answers = None
    with progress_bar(not args.quiet) as add_task:
        analysis = analyze_video(models.heatmaps, source, frame_size=models.frame_size, clip_len=models.clip_len,
                                 batch_size=args.batch_size, threshold=args.threshold, link_iou=args.link_iou,
                                 labels=labels, on_frames=add_task("heatmaps", source.num_frames))
        analysis.fps = fps
        if models.rae is not None:
            from tvau_lightning.inference.chat import ChatSession

            session = ChatSession.from_video(models.rae, source, num_frames=models.rae_num_frames,
                                             frame_size=models.rae_frame_size, fps=fps)
            advance = add_task("answers", 4)
            answers = {"video": str(args.video), **session.standard_answers(on_answer=lambda: advance(1))}
        analysis.info = {**models.info, "labels_from": None if labels_from is None else str(labels_from)}
        with atomic_directory(out) as staging:
            write_analysis(analysis, source, staging, answers=answers, alpha=args.alpha, min_value=args.overlay_min,
                           on_frames=add_task("overlay.mp4", source.num_frames))
            summary = json.loads((staging / "summary.json").read_text())
            summary["seconds"] = round(time.perf_counter() - start_time, 2)
            write_text_atomic(staging / "summary.json", json.dumps(summary, indent=2) + "\n")
    return out


def analyze_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau analyze``: returns 0 on success, 1 with a one-line error on stderr otherwise."""
    from tvau_lightning.backbones.base import BackboneError

    args = build_parser().parse_args(list(argv))
    try:
        out = run_analyze(args)
    except (VideoReadError, FileNotFoundError, FileExistsError, CheckpointError, BackboneError, ValueError,
            IndexError) as error:
        print(f"tvau analyze: error: {error}", file=sys.stderr)
        return 1
    summary = json.loads((out / "summary.json").read_text())
    print(f"analyzed {summary['num_frames']} frames of {args.video}: max score {summary['max_score']:.3f}, "
          f"{summary['frames_above_threshold']} frames above {args.threshold}, {summary['num_tracks']} region tracks"
          + (f", frame AUC {summary['frame_auc']:.3f}" if "frame_auc" in summary else ""))
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0
