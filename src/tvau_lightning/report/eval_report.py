"""``eval/report.html`` of ``tvau validate``/``tvau test``: the metrics with their confidence intervals, the
curves, a sortable per-video table and the worst videos with the ``tvau analyze`` command that inspects each.

It only reads what the evaluation wrote into the folder (``metrics.json``, ``per_video.csv``,
``frame_scores.csv``, ``*.png`` curves with their ``*.csv``), so it can be rerun on an old folder. The reader is
tolerant of the exact layout: a metric is a number or an object with a value (``value``/``estimate``/``point``/
``mean``) and an interval (``ci: [low, high]`` or ``ci_low``/``ci_high``, ``low``/``high``, ``lower``/
``upper``), at the top level or under ``metrics``; column names are matched case-insensitively among common
spellings. Missing files leave their part of the page out; a file that cannot be parsed is an error naming it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.report.page import render_page

#: accepted spellings, first match wins (compared case-insensitively, ``-``/space as ``_``)
COLUMNS: dict[str, tuple[str, ...]] = {
    "video": ("video", "video_id", "name"),
    "path": ("path", "video_path", "file"),
    "frames": ("frames", "num_frames", "n_frames"),
    "abnormal_frames": ("abnormal_frames", "num_abnormal_frames", "abnormal"),
    "auc": ("auc", "frame_auc", "video_auc", "per_video_auc", "micro_auc"),
    "detections": ("detections", "num_detections"),
    "detected_regions": ("detected_regions", "regions_detected", "num_detected_regions"),
    "detected_tracks": ("detected_tracks", "tracks_detected", "num_detected_tracks", "detected_gt_tracks"),
    "false_positives": ("false_positives", "false_positive_frames", "fp", "fp_frames", "false_detections"),
    "frame": ("frame", "frame_index", "frame_idx"),
    "score": ("score", "frame_score"),
    "label": ("label", "gt", "target", "abnormal"),
}
_VALUE_KEYS = ("value", "estimate", "point", "mean", "score")
#: numbers in a flat ``metrics.json`` that are settings, not metrics
SETTING_KEYS = frozenset({"seed", "num_resamples", "resamples", "confidence", "epoch", "global_step", "step",
                          "num_videos", "videos", "frames"})
_CI_PAIRS = (("ci_low", "ci_high"), ("low", "high"), ("lower", "upper"), ("ci_lower", "ci_upper"))


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def find_column(header: list[str], key: str) -> str | None:
    """The column of ``header`` that holds ``key`` (one of :data:`COLUMNS`), or ``None``."""
    by_norm = {_norm(h): h for h in header}
    return next((by_norm[c] for c in COLUMNS[key] if c in by_norm), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``metrics.json`` → ``([{"name", "value", "low", "high"}], other top-level settings)``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({error}); rerun the evaluation to rewrite it") from error
    if not isinstance(doc, Mapping):
        raise ValueError(f"{path}: expected a JSON object of metrics, got {type(doc).__name__}")
    table = doc.get("metrics") if isinstance(doc.get("metrics"), Mapping) else doc
    rows, settings = [], {}
    for name, entry in table.items():
        value = low = high = None
        if isinstance(entry, Mapping):
            value = next((_number(entry[k]) for k in _VALUE_KEYS if k in entry), None)
            ci = entry.get("ci", entry.get("ci95", entry.get("interval")))
            if isinstance(ci, (list, tuple)) and len(ci) == 2:
                low, high = _number(ci[0]), _number(ci[1])
            else:
                for a, b in _CI_PAIRS:
                    if a in entry and b in entry:
                        low, high = _number(entry[a]), _number(entry[b])
                        break
        elif _number(entry) is not None and not (table is doc and name in SETTING_KEYS):
            value = _number(entry)
        if value is None and low is None:
            if table is doc:
                settings[name] = entry
            continue
        rows.append({"name": str(name), "value": value, "low": low, "high": high})
    if table is not doc:
        settings.update({k: v for k, v in doc.items() if k != "metrics"})
    return rows, settings


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file (an error names the file when it has no header)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty, expected a header line; rerun the evaluation to rewrite it")
        return list(reader.fieldnames), list(reader)


def false_positive_frames(path: Path, threshold: float = 0.5) -> dict[str, int]:
    """Per video, the normal frames (label 0) scored above ``threshold`` in ``frame_scores.csv`` (empty when the
    file has no video, score or label column)."""
    header, rows = read_csv(path)
    video, score, label = (find_column(header, k) for k in ("video", "score", "label"))
    if video is None or score is None or label is None:
        return {}
    counts: dict[str, int] = {}
    for row in rows:
        s, y = _number(row[score]), _number(row[label])
        counts.setdefault(row[video], 0)
        if s is not None and y == 0 and s > threshold:
            counts[row[video]] += 1
    return counts


def timeline_filename(video: str) -> str:
    """The evaluation's ``timelines/`` file name of a video id (``evaluation.artifacts.timeline_filename``)."""
    return re.sub(r"[^\w.-]", "_", video) + ".png"


def flatten_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Scalar entries of ``metrics.json`` besides the metrics, one level of objects flattened
    (``bootstrap.num_resamples``); lists are left out."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, (Mapping, list))})
        elif not isinstance(value, list):
            out[key] = value
    return out


def analyze_command(video: str, ckpt: str | None, out_root: str = "analyze") -> str:
    """The ``tvau analyze`` command line that inspects one video."""
    name = Path(video).stem or "video"
    return shlex.join(["tvau", "analyze", video, "--ckpt", ckpt or "CKPT", "--out", f"{out_root}/{name}"])


def _settings_ckpt(settings: Mapping[str, Any]) -> str | None:
    for key in ("ckpt_path", "ckpt", "checkpoint"):
        if isinstance(settings.get(key), str):
            return settings[key]
    return None


def write_eval_report(eval_dir: str | os.PathLike[str], *, ckpt: str | None = None,
                      video_paths: Mapping[str, str] | None = None, worst: int = 5,
                      threshold: float = 0.5, title: str | None = None) -> Path:
    """Write ``eval_dir/report.html`` from the evaluation files in ``eval_dir``; returns its path.

    Args:
        eval_dir: the folder with ``metrics.json``, ``per_video.csv``, ``frame_scores.csv`` and curves.
        ckpt: the checkpoint evaluated (for the ``tvau analyze`` lines; else ``metrics.json``'s ``ckpt_path``
            or the placeholder ``CKPT``).
        video_paths: video id → file, for the ``tvau analyze`` lines (else ``per_video.csv``'s ``path``
            column, else the id).
        worst: how many videos to list under lowest AUC and most false positives.
        threshold: frame score above which a normal frame counts as a false positive.
    """
    folder = Path(eval_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"evaluation folder not found: {folder}; run tvau validate/test first")
    metrics, settings = read_metrics(folder / "metrics.json") if (folder / "metrics.json").is_file() else ([], {})
    ckpt = ckpt or _settings_ckpt(settings)
    header: list[str] = []
    rows: list[dict[str, str]] = []
    if (folder / "per_video.csv").is_file():
        header, rows = read_csv(folder / "per_video.csv")
    cols = {k: find_column(header, k) for k in COLUMNS}
    fp_counts: dict[str, int] = {}
    fp_source = None
    if cols["false_positives"] is None:
        regions = cols["detected_regions"]
        if cols["detections"] and regions and cols["video"]:
            fp_counts = {row[cols["video"]]: max(0, int((_number(row[cols["detections"]]) or 0)
                                                        - (_number(row[regions]) or 0))) for row in rows}
            fp_source = f"detections not on a ground-truth region: {cols['detections']} − {regions}"
        elif (folder / "frame_scores.csv").is_file():
            fp_counts = false_positive_frames(folder / "frame_scores.csv", threshold)
            fp_source = f"normal frames scored above {threshold} in frame_scores.csv"
    videos = []
    for row in rows:
        vid = row[cols["video"]] if cols["video"] else ""
        path = (video_paths or {}).get(vid) or (row[cols["path"]] if cols["path"] else "") or vid
        fp = _number(row[cols["false_positives"]]) if cols["false_positives"] else fp_counts.get(vid)
        timeline = folder / "timelines" / timeline_filename(vid)
        videos.append({"video": vid, "auc": _number(row[cols["auc"]]) if cols["auc"] else None,
                       "false_positives": fp, "command": analyze_command(path, ckpt),
                       "timeline": timeline.relative_to(folder).as_posix() if timeline.is_file() else None})
    by_auc = sorted((v for v in videos if v["auc"] is not None), key=lambda v: v["auc"])[:worst]
    by_fp = sorted((v for v in videos if v["false_positives"]), key=lambda v: -v["false_positives"])[:worst]
    curves = [{"png": p.name, "csv": p.with_suffix(".csv").name if p.with_suffix(".csv").is_file() else None,
               "title": p.stem.replace("_", " ")} for p in sorted(folder.glob("*.png"))]
    numeric = [h for h in header if rows and all(_number(r[h]) is not None or r[h] in ("", "nan") for r in rows)]
    data = {
        "folder": str(folder), "title": title or f"evaluation — {folder.resolve().parent.name}/{folder.name}",
        "metrics": metrics, "settings": flatten_settings(settings),
        "curves": curves, "columns": header, "numeric": numeric, "rows": rows,
        "highlight": [c for c in (cols["auc"], cols["detections"], cols["detected_tracks"]) if c],
        "worst_auc": by_auc, "worst_fp": by_fp, "fp_source": fp_source, "threshold": threshold,
        "files": sorted(p.name for p in folder.iterdir() if p.suffix in (".json", ".csv") and p.is_file()),
    }
    page = folder / "report.html"
    write_text_atomic(page, render_page("eval.html", "eval.js", data, data["title"]))
    return page
