"""``tvau analyze VIDEO --ckpt AHD.ckpt --out DIR``: the command around :mod:`tvau_lightning.inference.analyze`
(what it computes and the files it writes are documented there). Labels come from ``--labels`` or are found
beside the video (:func:`tvau_lightning.data.labels.find_frame_labels`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tvau_lightning.atomic import atomic_directory, check_output_dir, write_text_atomic
from tvau_lightning.checkpoints import CheckpointError
from tvau_lightning.commands.errors import command_error
from tvau_lightning.commands.options import (
    add_dialogue_sampling_options,
    add_model_options,
    dialogue_overrides,
    positive_int,
    unit_interval,
)
from tvau_lightning.commands.progress import progress_bar
from tvau_lightning.data.labels import find_frame_labels, read_frame_labels
from tvau_lightning.data.video import VideoReadError, open_video
from tvau_lightning.inference.analyze import analyze_video, write_analysis
from tvau_lightning.inference.models import load_models
from tvau_lightning.inference.session import (
    ChatSession,
    FrameRange,
    dialogue_window_frames,
    most_anomalous_window,
)
from tvau_lightning.report import write_analyze_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau analyze",
        description="Analyze one video: heatmap overlay video, per-frame scores, regions and tracks, and (with a "
                    "stage-2 checkpoint) answers to the standard questions.",
    )
    parser.add_argument("video", help="a video file (mp4, avi, mkv, … — anything FFmpeg decodes) or a folder of numbered frame images")
    parser.add_argument("--out", required=True, help="output folder (created; replaced only with --overwrite)")
    parser.add_argument("--ckpt", help="stage-1 AHD checkpoint (.ckpt); optional when --rae-ckpt names its own")
    parser.add_argument("--rae-ckpt", help="stage-2 RAE checkpoint: also write answers.json")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="clips per forward pass (default 1)")
    parser.add_argument("--labels", help="ground-truth frame labels (.npy, UBnormal *_tracks.txt, or 0/1 text)")
    parser.add_argument("--threshold", type=float, default=0.5, help="heatmap threshold of regions (default 0.5)")
    parser.add_argument("--link-iou", type=unit_interval, default=0.1, help="box IoU linking regions into tracks (0.1)")
    parser.add_argument("--alpha", type=unit_interval, default=0.4, help="heatmap opacity in the overlay (default 0.4)")
    parser.add_argument("--overlay-min", type=unit_interval, default=0.0,
                        help="draw the heatmap only where it is at least this (e.g. 0.5); default 0 = everywhere")
    parser.add_argument("--dialogue-window", choices=("anomalous", "start"), default="anomalous",
                        help="with --rae-ckpt, when the video holds more frames than the model sees at once (its "
                             "max_frames at its rate): answer about the window with the highest mean anomaly score "
                             "(default) or about the start of the video")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                        help="no progress bar (--quiet is the old spelling)")
    add_model_options(parser)
    add_dialogue_sampling_options(parser)
    return parser


def run_analyze(args: argparse.Namespace) -> Path:
    """``tvau analyze`` with parsed arguments; returns the output folder."""
    start_time = time.perf_counter()
    out = Path(args.out)
    inputs = [p for p in (args.video, args.ckpt, args.rae_ckpt, args.labels, args.backbone) if p]
    check_output_dir(out, inputs, args.overwrite)  # refused before any work is done
    if not 0.0 <= args.threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {args.threshold}")
    source = open_video(args.video, args.video_backend, fps=args.fps)
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
    if not args.rae_ckpt and any(v is not None for v in dialogue_overrides(args).values()):
        raise ValueError("--sample-fps, --frame-stride, --num-frames, --min-frames, --max-frames and --rae-frame-size "
                         "set the dialogue's sampling: they need --rae-ckpt")
    models = load_models(ckpt=args.ckpt, rae_ckpt=args.rae_ckpt, backbone=args.backbone, frame_size=args.frame_size,
                         clip_len=args.clip_len, device=args.device, dtype=args.dtype,
                         force_backbone=args.force_backbone, dialogue_overrides=dialogue_overrides(args))
    for warning in models.warnings:
        print(f"tvau analyze: warning: {warning}", file=sys.stderr)
    answers = None
    with progress_bar(not args.no_progress) as add_task:
        analysis = analyze_video(models.heatmaps, source, frame_size=models.frame_size, clip_len=models.clip_len,
                                 batch_size=args.batch_size, threshold=args.threshold, link_iou=args.link_iou,
                                 labels=labels, on_frames=add_task("heatmaps", source.num_frames))
        analysis.fps = fps
        if models.rae is not None:
            discussed, window_note = dialogue_source(source, analysis, models.rae_sampling, fps, args.dialogue_window)
            session = ChatSession.from_video(models.rae, discussed, sampling=models.rae_sampling, fps=fps)
            session.clip.note = window_note or session.clip.note  # answers.json's sampling note says the same
            if session.clip.note:
                print(f"tvau analyze: note: {session.clip.note}; the answers are about those frames", file=sys.stderr)
            advance = add_task("answers", 4)
            answers = {"video": str(args.video), **session.standard_answers(on_answer=lambda: advance(1))}
        analysis.info = {**models.info, "labels_from": None if labels_from is None else str(labels_from)}
        with atomic_directory(out, inputs=inputs, overwrite=args.overwrite) as staging:
            write_analysis(analysis, source, staging, answers=answers, alpha=args.alpha, min_value=args.overlay_min,
                           on_frames=add_task("overlay.mp4", source.num_frames))
            summary = json.loads((staging / "summary.json").read_text())
            summary["seconds"] = round(time.perf_counter() - start_time, 2)
            write_text_atomic(staging / "summary.json", json.dumps(summary, indent=2) + "\n")
            write_analyze_report(staging, analysis=analysis, source=source, answers=answers, summary=summary,
                                 on_frames=add_task("report.html", source.num_frames))
    return out


def dialogue_source(source: Any, analysis: Any, sampling: Any, fps: float, window: str) -> tuple[Any, str | None]:
    """The part of the video the dialogue discusses, and a note saying why when it is not the whole video.

    A model trained on ``max_frames`` frames at a rate sees at most that many: with ``window="anomalous"`` a
    longer video is discussed over the window of that span with the highest mean frame score (``scores.csv``), so
    the answers are about the event the heatmaps found rather than the first seconds; ``"start"`` (or a video that
    fits) leaves the choice to the sampling (its first frames)."""
    length = dialogue_window_frames(sampling, fps) if sampling is not None else None
    if window != "anomalous" or length is None or source.num_frames <= length:
        return source, None
    scores = np.asarray(analysis.scores, dtype=np.float64)
    start, end = most_anomalous_window(scores, length)
    mean = float(scores[start : end + 1].mean())
    note = (f"the video's {source.num_frames} frames are more than the model sees at once ({sampling.max_frames} "
            f"frames at {fps / sampling.step(fps):g} fps = {length} source frames): it sees frames {start}-{end} "
            f"({start / fps:.1f}-{end / fps:.1f} s), the window with the highest mean anomaly score (mean frame "
            f"score {mean:.3f}, whole video {float(np.mean(analysis.scores)):.3f}; --dialogue-window start: the "
            "first frames)")
    return FrameRange(source, start, end), note


def analyze_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau analyze``: returns 0 on success, 1 with a one-line error on stderr otherwise."""
    from tvau_lightning.backbones.types import BackboneError

    args = build_parser().parse_args(list(argv))
    try:
        out = run_analyze(args)
    except (VideoReadError, FileNotFoundError, FileExistsError, CheckpointError, BackboneError, ValueError,
            IndexError) as error:
        return command_error("analyze", error)
    summary = json.loads((out / "summary.json").read_text())
    print(f"analyzed {summary['num_frames']} frames of {args.video}: max score {summary['max_score']:.3f}, "
          f"{summary['frames_above_threshold']} frames above {args.threshold}, {summary['num_tracks']} region tracks"
          + (f", frame AUC {summary['frame_auc']:.3f}" if "frame_auc" in summary else "")
          + (f", top category {summary['top_category']}" if summary.get("top_category") else ""))
    if summary.get("rae_sampling"):
        sampling = summary["rae_sampling"]
        origin = {"checkpoint": "the RAE checkpoint's", "flags": "overridden", "default": "default"}[sampling["origin"]]
        print(f"answers.json: dialogue sampling ({origin}): {sampling['description']}")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} to {out}")
    print(f"report: {out / 'report.html'}  (open it in a browser, e.g. xdg-open {out / 'report.html'})")
    return 0
