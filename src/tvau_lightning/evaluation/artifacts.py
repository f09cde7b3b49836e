"""Write an :class:`~tvau_lightning.evaluation.summary.EvaluationSummary` as files a researcher can inspect.

Layout of the output folder (``<log_dir>/eval/`` from the callback), every file UTF-8, CSVs comma-separated
with a header row; in CSVs an empty cell is "undefined" (None/NaN) and ``inf`` is +∞:

``metrics.json``
    ``{"stage", "metrics": {name: {"value", "ci_low", "ci_high", "valid_resamples"}}, "bootstrap": {"method",
    "unit", "num_resamples", "seed", "confidence"}, "conventions": {"macro_auc_padding", "alpha", "beta",
    "operating_threshold"}, "counts": {"videos", "frames", "abnormal_frames", "region_frames", "detections",
    "gt_regions", "gt_tracks"}, "files": [...], **info}`` with metric names ``micro_auc``, ``macro_auc``,
    ``rbdc``, ``tbdc`` (the task's logged names without the ``val/``/``test/`` prefix); undefined numbers
    are ``null``. Written last: its presence means the folder is complete.
``per_video.csv``
    ``video, frames, abnormal_frames, auc, auc_padded, detections, detected_regions, gt_regions,
    detected_tracks, gt_tracks`` — ``auc`` the video's frame AUC (empty for a single-class video),
    ``auc_padded`` its term of the padded macro AUC, counts at the operating point (``summary`` module).
``frame_scores.csv``
    ``video, frame, score, label`` — every evaluated frame once, sorted by video and frame.
``detections.csv``
    ``video, frame, x1, y1, x2, y2, score`` — detected regions, inclusive original-pixel boxes.
``gt_regions.csv``
    ``video, track, frame, x1, y1, x2, y2`` — ground-truth regions; ``track`` numbered from 0 per video.
``roc.csv`` / ``roc.png``
    ``threshold, fpr, tpr`` of the micro frame ROC (first row ``inf, 0, 0``); absent for single-class frames.
``rbdr_tbdr.csv`` / ``rbdr_tbdr.png``
    ``threshold, fpr, rbdr, tbdr`` of the RBDC/TBDC sweep (first row ``inf``; an empty threshold marks the
    flat extension to FPR = 1); absent without GT regions.
``timelines/<video>.png``
    each video's frame scores over time, ground-truth abnormal frames shaded (``timelines=True``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.evaluation.bootstrap import METRIC_NAMES
from tvau_lightning.evaluation.summary import PER_VIDEO_COLUMNS, EvaluationSummary

BOOTSTRAP_METHOD = "percentile bootstrap over videos (videos resampled with replacement)"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        return "inf" if v == math.inf else "-inf" if v == -math.inf else repr(v)
    return str(value)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return write_text_atomic(path, buffer.getvalue())


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def timeline_filename(video: str) -> str:
    """A file name for a video id (characters other than letters, digits, ``-``, ``_``, ``.`` become ``_``)."""
    return re.sub(r"[^\w.-]", "_", video) + ".png"


def video_series(summary: EvaluationSummary, videos: Sequence[str] | None = None
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``video → (frames, scores, labels)`` of the given videos (default all), for the timeline plots."""
    r = summary.records
    names = list(r.videos) if videos is None else list(videos)
    out = {}
    for name in names:
        mine = r.frame_video == r.videos.index(name)
        out[name] = (r.frame_index[mine], r.frame_score[mine], r.frame_label[mine])
    return out


def write_artifacts(
    summary: EvaluationSummary,
    out_dir: str | Path,
    *,
    stage: str,
    info: Mapping[str, Any] | None = None,
    plots: bool = True,
    timelines: bool = True,
) -> Path:
    """Write every file of the module docstring into ``out_dir`` (created; files of the same names replaced).

    Args:
        summary: what to write.
        out_dir: the folder.
        stage: ``validate``/``test`` (or ``fit`` for a validation epoch during training), stored in the JSON.
        info: extra JSON entries (task, checkpoint, epoch …).
        plots: write the PNG figures (needs matplotlib).
        timelines: write ``timelines/<video>.png`` (with ``plots``).
    Returns:
        the path of ``metrics.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = summary.records
    files: list[str] = []

    def done(path: Path) -> None:
        files.append(path.relative_to(out).as_posix())

    done(_write_csv(out / "per_video.csv", PER_VIDEO_COLUMNS,
                    ([row[c] for c in PER_VIDEO_COLUMNS] for row in summary.per_video)))
    names = np.array(r.videos, dtype=object)
    done(_write_csv(out / "frame_scores.csv", ("video", "frame", "score", "label"),
                    zip(names[r.frame_video], r.frame_index, r.frame_score, r.frame_label)))
    done(_write_csv(out / "detections.csv", ("video", "frame", "x1", "y1", "x2", "y2", "score"),
                    (
                        (names[v], f, *b, s)
                        for v, f, b, s in zip(r.det_video, r.det_frame, r.det_box.reshape(-1, 4).tolist(), r.det_score)
                    )))
    # track ids per video, from 0, in order of first appearance
    local_track = np.zeros(len(r.gt_track), dtype=np.int64)
    for code in np.unique(r.gt_video):
        mine = np.nonzero(r.gt_video == code)[0]
        _, first, inverse = np.unique(r.gt_track[mine], return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))
        local_track[mine] = rank[inverse]
    order = np.lexsort((r.gt_frame, local_track, r.gt_video))
    done(_write_csv(out / "gt_regions.csv", ("video", "track", "frame", "x1", "y1", "x2", "y2"),
                    ((names[r.gt_video[i]], local_track[i], r.gt_frame[i], *r.gt_box[i].tolist()) for i in order)))
    if summary.roc is not None:
        roc = summary.roc
        done(_write_csv(out / "roc.csv", ("threshold", "fpr", "tpr"), zip(roc.thresholds, roc.fpr, roc.tpr)))
    if summary.regions is not None:
        c = summary.regions
        done(_write_csv(out / "rbdr_tbdr.csv", ("threshold", "fpr", "rbdr", "tbdr"),
                        zip(c.thresholds, c.fpr, c.rbdr, c.tbdr)))
    if plots:
        from tvau_lightning.evaluation import plots as figures

        for name, figure in evaluation_figures(summary, timelines=False).items():
            done(figures.save_figure(figure, out / f"{name}.png"))
        if timelines and r.frame_video.size:
            auc = {row["video"]: row["auc"] for row in summary.per_video}
            for video, series in video_series(summary).items():
                figure = figures.score_timelines_figure({video: series}, auc=auc)
                done(figures.save_figure(figure, out / "timelines" / timeline_filename(video)))

    metrics = {name: summary.metrics[name].to_json() for name in METRIC_NAMES}
    document = {
        "stage": stage,
        "metrics": metrics,
        "bootstrap": {"method": BOOTSTRAP_METHOD, "unit": "video", "num_resamples": summary.num_resamples,
                      "seed": summary.seed, "confidence": summary.confidence},
        "conventions": {"macro_auc_padding": r.macro_pad, "alpha": r.alpha, "beta": r.beta,
                        "operating_threshold": _json_number(summary.operating_threshold)},
        "counts": {"videos": r.num_videos, "frames": int(r.frame_video.size), "abnormal_frames": int(r.frame_label.sum()),
                   "region_frames": int(r.frames_seen.sum()), "detections": int(r.det_video.size),
                   "gt_regions": int(r.gt_video.size), "gt_tracks": int(np.unique(r.gt_track).size)},
        "files": files,
        **dict(info or {}),
    }
    return write_text_atomic(out / "metrics.json", json.dumps(document, indent=2, allow_nan=False) + "\n")


def evaluation_figures(summary: EvaluationSummary, *, timelines: bool = True, max_timelines: int = 8,
                       title_prefix: str = "") -> dict:
    """``{"roc", "rbdr_tbdr", "timelines"}`` → matplotlib figures (each only where defined).

    ``timelines`` stacks up to ``max_timelines`` videos, abnormal ones first (for TensorBoard).
    """
    from tvau_lightning.evaluation import plots as figures

    out = {}
    if summary.roc is not None:
        out["roc"] = figures.roc_figure(summary.roc, title=f"{title_prefix}frame-level ROC (micro)")
    if summary.regions is not None:
        out["rbdr_tbdr"] = figures.detection_curve_figure(summary.regions,
                                                          title=f"{title_prefix}region / track detection")
    if timelines and summary.per_video:
        rows = sorted(summary.per_video, key=lambda row: (row["abnormal_frames"] == 0, row["video"]))
        chosen = [row["video"] for row in rows[:max_timelines] if row["frames"]]
        if chosen:
            auc = {row["video"]: row["auc"] for row in summary.per_video}
            out["timelines"] = figures.score_timelines_figure(video_series(summary, chosen), auc=auc,
                                                              title=f"{title_prefix}frame scores")
    return out
