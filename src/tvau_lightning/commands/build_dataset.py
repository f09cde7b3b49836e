"""``tvau build-dataset``: build the fine-grained dialogue dataset of a dataset split or a folder of videos.

Examples::

    # UBnormal training split, annotated by a vLLM server (Qwen2.5-VL), resumable
    tvau build-dataset --source ubnormal --root /data/UBnormal --split-dir /data/UBnormal/scripts \\
        --split training --annotator openai --base-url http://localhost:8000/v1 \\
        --model Qwen/Qwen2.5-VL-7B-Instruct --out dialogues/ubnormal/training

    # the same from a YAML file (keys = option names with underscores; `settings:` = BuilderSettings)
    tvau build-dataset --config configs/builder/vllm_qwen2_5_vl.yaml --root /data/UBnormal ...

    # a demo without any LVLM: answers from the synthetic data's ground truth; the synthetic videos last a few
    # seconds, too short for the paper's records (8-40 frames at 1 fps, the default): every frame instead
    tvau build-dataset --source ubnormal --root demo/ubnormal --split-dir demo/ubnormal/scripts \\
        --annotator ground-truth --dense-records --out demo/dialogues/training

Records are the paper's by default (§3.3: 8-40 frames sampled at 1 fps; ``--record-fps``, ``--min-frames``,
``--max-frames`` change one value); ``--dense-records`` takes every frame into records of any length (explicit
values still win). A video too short for any record is named on stderr with its duration and the fix; when no
video gives a record the command stops before asking anything (exit 1).

See ``docs/builder.md`` for the pipeline, the folder layout of user videos and the JSON schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tvau_lightning.atomic import OutputFolderError, Terminated
from tvau_lightning.builder.annotators import (
    Annotator,
    AnnotatorConfigError,
    GroundTruthResponder,
    ScriptedAnnotator,
)
from tvau_lightning.builder.pipeline import (
    DENSE_RECORDS,
    PAPER_RECORDS,
    BuildError,
    BuilderSettings,
    DatasetBuilder,
    NoRecordsError,
    settings_from_dict,
)
from tvau_lightning.builder.sources import DatasetVideoSource, SourceError
from tvau_lightning.commands.errors import command_error
from tvau_lightning.commands.options import (
    check_number,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_interval,
)

_NUMBER_TYPES = (fraction, nonnegative_float, nonnegative_int, positive_float, positive_int, unit_interval)

#: command-line options that map onto BuilderSettings fields (None = "not given", the YAML/default wins)
_SETTING_OPTIONS: dict[str, type] = {
    "sample_fps": float, "max_frames_per_video": int, "verify": str, "window": int, "window_stride": int,
    "max_targets": int, "box_format": str, "refine_min_support": float, "blur_fraction": float,
    "max_consecutive_failures": int, "record_fps": float, "min_frames": int, "max_frames": int,
    "time_reference": str,
}
#: ``--paper-records`` / ``--dense-records``: the record presets (builder.pipeline; the paper's is the default)
RECORD_PRESETS: dict[str, dict[str, Any]] = {"paper_records": PAPER_RECORDS, "dense_records": DENSE_RECORDS}
#: at most this many "gives no record" lines on stderr (all of them are in summary.json)
MAX_NO_RECORD_LINES = 10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau build-dataset",
        description="Build the fine-grained video-text dialogue dataset (paper §3.3): frame-level structured "
        "prompting of an annotator LVLM, per-target timelines, anomaly-focused refinement, mutual verification, "
        "exact yes/no, trajectory and temporal-anchor answers from ground truth. Writes phase_a.jsonl, "
        "phase_b.jsonl, summary.json and failures.jsonl; resumable (rerun the same command).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of defaults (keys = option names with underscores; a "
                        "'settings' mapping = BuilderSettings fields, nested geometry/association/retry allowed)")
    src = parser.add_argument_group("videos")
    src.add_argument("--source", choices=("ubnormal", "shanghaitech", "folder"), help="dataset format")
    src.add_argument("--root", help="dataset root (UBnormal: Scene1…; ShanghaiTech: training/ testing/; folder: videos/)")
    src.add_argument("--split-dir", help="UBnormal: folder of the *_video_names.txt split files")
    src.add_argument("--split", help="UBnormal: training|validation|test (default training); "
                     "ShanghaiTech: train|val|test (default train)")
    src.add_argument("--protocol", choices=("standard", "tvau"), help="ShanghaiTech protocol (default tvau)")
    src.add_argument("--val-fraction", type=fraction, help="ShanghaiTech tvau protocol: held-out fraction (default 0.2)")
    src.add_argument("--split-seed", type=nonnegative_int, help="ShanghaiTech tvau protocol: split seed (default 0)")
    src.add_argument("--fps", type=positive_float, help="frame rate of frame-folder videos (default 24)")
    src.add_argument("--video-backend", choices=("auto", "decord", "pyav", "torchcodec"),
                     help="decoder of video files (default auto: decord if installed, except .avi files; else PyAV)")
    src.add_argument("--unlabelled", choices=("error", "normal"),
                     help="folder: a video without labels or masks is an error (default) or normal")
    src.add_argument("--normal-videos", choices=("include", "exclude"),
                     help="UBnormal: include the split's normal videos (default include)")

    ann = parser.add_argument_group("annotator")
    ann.add_argument("--annotator", choices=("openai", "backbone", "ground-truth"),
                     help="openai: an OpenAI-compatible HTTP endpoint (vLLM, Ollama, …); backbone: a local model "
                     "folder through the backbone adapters; ground-truth: no LVLM, answers from the dataset's "
                     "annotations (demos)")
    ann.add_argument("--base-url", help="openai: API root, e.g. http://localhost:8000/v1")
    ann.add_argument("--model", help="openai: the served model name")
    ann.add_argument("--api-key-env", help="openai: environment variable holding the API key (default OPENAI_API_KEY)")
    ann.add_argument("--timeout", type=positive_float, help="openai: seconds per reply (default 120)")
    ann.add_argument("--min-interval", type=nonnegative_float, help="openai: at least this many seconds between requests")
    ann.add_argument("--max-rpm", type=positive_int, help="openai: at most this many requests per minute")
    ann.add_argument("--concurrency", type=positive_int, help="openai: requests in flight at once (default 1)")
    ann.add_argument("--max-image-side", type=positive_int, help="openai: downscale images to this longer side (default 768)")
    ann.add_argument("--size-multiple", type=positive_int,
                     help="openai: round sent image sides to multiples of this (28 for Qwen2.5-VL)")
    ann.add_argument("--json-mode", choices=("none", "json_object", "json_schema"),
                     help="openai: ask the server for JSON output (json_schema = guided decoding in vLLM)")
    ann.add_argument("--temperature", type=nonnegative_float, help="openai: sampling temperature (default 0)")
    ann.add_argument("--max-tokens", type=positive_int, help="reply budget (default 1024; backbone: 512)")
    ann.add_argument("--backbone", help="backbone: local Hugging Face model folder")
    ann.add_argument("--device", help="backbone: torch device (default cuda if available, else cpu)")
    ann.add_argument("--image-size", type=positive_int, nargs=2, metavar=("H", "W"),
                     help="backbone: images are resized to H W (default 448 448)")
    ann.add_argument("--category", help="ground-truth: the category given to every object (default person)")
    ann.add_argument("--attempts", type=positive_int, help="tries per question (default 3)")
    ann.add_argument("--backoff", type=nonnegative_float, help="seconds before the first retry, doubled each time (default 1)")

    st = parser.add_argument_group("dataset settings (BuilderSettings; docs/builder.md)")
    st.add_argument("--sample-fps", type=positive_float, help="frames per second asked the frame question (default 2)")
    st.add_argument("--max-frames-per-video", type=positive_int, help="cap on annotated frames per video (default 64)")
    st.add_argument("--verify", choices=("all", "anomaly", "none"), help="mutual verification scope (default all)")
    st.add_argument("--window", type=positive_int,
                    help="cut each video into windows of this many source frames before sampling (default: the whole video)")
    st.add_argument("--window-stride", type=positive_int, help="frames between window starts (default: the window)")
    st.add_argument("--record-fps", type=positive_float,
                    help="frames per second of the source shown in a record (default 1, the paper's)")
    st.add_argument("--min-frames", type=positive_int,
                    help="records with fewer sampled frames are dropped (default 8, the paper's)")
    st.add_argument("--max-frames", type=positive_int,
                    help="longer spans are cut into the fewest records of at most this many sampled frames "
                    "(default 40, the paper's)")
    st.add_argument("--time-reference", choices=("frames", "seconds"),
                    help="times in answers: the record's sampled-frame index (default) or seconds from its start")
    st.add_argument("--dense-records", action="store_true", default=None,
                    help="every source frame, records of any length (--record-fps every frame, --min-frames 1, no "
                    "--max-frames; explicit values win): for short videos such as the synthetic demo data")
    st.add_argument("--paper-records", action="store_true", default=None,
                    help="the paper's records (--record-fps 1 --min-frames 8 --max-frames 40): the default; accepted "
                    "for older commands and configs")
    st.add_argument("--max-targets", type=positive_int, help="most targets in one phase A narrative (default 5)")
    st.add_argument("--box-format", choices=("pixels", "normalized_1000", "normalized_1"),
                    help="how the annotator writes boxes (Qwen2.5-VL: pixels; Qwen2-VL: normalized_1000)")
    st.add_argument("--refine-min-support", type=unit_interval, help="fraction of refined frames that must show the anomaly")
    st.add_argument("--blur-fraction", type=nonnegative_float, help="background blur sigma / longer frame side (default 0.02)")
    st.add_argument("--max-consecutive-failures", type=positive_int, help="stop after this many failed questions in a row")

    run = parser.add_argument_group("run")
    run.add_argument("--out", help="output folder (phase_a.jsonl, phase_b.jsonl, summary.json, failures.jsonl)")
    run.add_argument("--work-dir", help="per-video cache (default OUT/work)")
    run.add_argument("--max-videos", "--limit", dest="max_videos", type=positive_int, help="only the first N videos")
    run.add_argument("--restart", action="store_true", default=None,
                     help="discard a work folder made with other settings")
    run.add_argument("--absolute-paths", action="store_true", default=None,
                     help="write absolute video paths (default: relative to OUT)")
    run.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    return parser


def merge_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options (command line over YAML) and the settings mapping."""
    values: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    if args.config:
        import yaml

        path = Path(args.config)
        if not path.is_file():
            parser.error(f"--config {path}: file not found")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            parser.error(f"--config {path}: expected a mapping of option names to values")
        settings = dict(loaded.pop("settings", {}) or {})
        known = {a.dest for a in parser._actions}
        unknown = sorted(k for k in loaded if k.replace("-", "_") not in known)
        if unknown:
            parser.error(f"--config {path}: unknown option(s) {unknown}; use the long option names with underscores")
        values = {k.replace("-", "_"): v for k, v in loaded.items()}
        for action in parser._actions:  # YAML values bypass argparse: the same checks, naming the key
            if action.type in _NUMBER_TYPES and values.get(action.dest) is not None:
                items = values[action.dest] if isinstance(values[action.dest], list) else [values[action.dest]]
                try:
                    checked = [check_number(f"--config {path}: {action.dest}", v, action.type) for v in items]
                except ValueError as err:
                    parser.error(str(err))
                values[action.dest] = checked if isinstance(values[action.dest], list) else checked[0]
    for key, value in vars(args).items():
        if value is not None and key != "config":
            values[key] = value
    for key in _SETTING_OPTIONS:
        if key in values:
            settings[key] = values.pop(key)
    presets = [name for name in RECORD_PRESETS if values.pop(name, None)]
    if len(presets) > 1:
        parser.error("--paper-records and --dense-records exclude each other (the paper's records are the default)")
    for name in presets:  # values set explicitly (command line or the YAML's settings) win
        for key, value in RECORD_PRESETS[name].items():
            settings.setdefault(key, value)
    retry = dict(settings.get("retry", {}) or {})
    if "attempts" in values:
        retry["attempts"] = values.pop("attempts")
    if "backoff" in values:
        retry["backoff"] = values.pop("backoff")
    if retry:
        settings["retry"] = retry
    return values, settings


def make_sources(opts: dict[str, Any], parser: argparse.ArgumentParser) -> list[DatasetVideoSource]:
    from tvau_lightning.builder.sources import folder_videos, shanghaitech_videos, ubnormal_videos

    source, root = opts.get("source"), opts.get("root")
    if source is None or root is None:
        parser.error("--source and --root are required (or set them in --config)")
    if source == "ubnormal":
        if not opts.get("split_dir"):
            parser.error("--source ubnormal needs --split-dir (the folder of *_video_names.txt files)")
        return ubnormal_videos(root, opts["split_dir"], opts.get("split") or "training",
                               include_normal=opts.get("normal_videos", "include") == "include",
                               video_backend=opts.get("video_backend") or "auto")
    if source == "shanghaitech":
        return shanghaitech_videos(root, opts.get("protocol") or "tvau", opts.get("split") or "train",
                                   val_fraction=opts.get("val_fraction", 0.2), split_seed=opts.get("split_seed", 0),
                                   fps=opts.get("fps") or 24.0, video_backend=opts.get("video_backend") or "auto")
    return folder_videos(root, fps=opts.get("fps"), unlabelled=opts.get("unlabelled") or "error",
                         video_backend=opts.get("video_backend") or "auto")


def make_annotator(opts: dict[str, Any], parser: argparse.ArgumentParser) -> Annotator:
    kind = opts.get("annotator")
    if kind is None:
        parser.error("--annotator is required: openai, backbone or ground-truth")
    if kind == "openai":
        from tvau_lightning.builder.openai_http import OpenAIChatAnnotator

        if not opts.get("base_url") or not opts.get("model"):
            parser.error("--annotator openai needs --base-url (e.g. http://localhost:8000/v1) and --model")
        kwargs = {k: opts[k] for k in ("api_key_env", "timeout", "min_interval", "temperature", "max_tokens",
                                       "max_image_side", "size_multiple", "json_mode") if k in opts}
        if "max_rpm" in opts:
            kwargs["max_requests_per_minute"] = opts["max_rpm"]
        if "concurrency" in opts:
            kwargs["max_concurrency"] = opts["concurrency"]
        return OpenAIChatAnnotator(opts["base_url"], opts["model"], **kwargs)
    if kind == "backbone":
        if not opts.get("backbone"):
            parser.error("--annotator backbone needs --backbone (a local Hugging Face model folder)")
        import torch

        from tvau_lightning.backbones.registry import load_backbone
        from tvau_lightning.builder.annotators import BackboneAnnotator

        device = opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        adapter = load_backbone(opts["backbone"], device=device)
        size = tuple(opts["image_size"]) if opts.get("image_size") else (448, 448)
        return BackboneAnnotator(adapter.eval(), image_size=size, max_new_tokens=opts.get("max_tokens", 512),
                                 name=str(opts["backbone"]))
    return ScriptedAnnotator(GroundTruthResponder(opts.get("category") or "person"), name="ground-truth")


def build_dataset_main(argv: Sequence[str] | None = None) -> int:
    """``tvau build-dataset``; returns 0 when every video is done, 1 when videos failed, the build stopped or no
    video gives a record (too short for the record settings; one line per video on stderr, nothing asked), 2 for
    a bad source or annotator setting, 130 on Ctrl-C and 143 on SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    opts, settings_values = merge_config(args, parser)
    if not opts.get("out"):
        parser.error("--out is required (or set out: in --config)")
    try:
        settings: BuilderSettings = settings_from_dict(settings_values)
    except (TypeError, ValueError) as err:
        parser.error(f"settings: {err}")
    try:
        sources = make_sources(opts, parser)
        annotator = make_annotator(opts, parser)
    except (SourceError, FileNotFoundError, AnnotatorConfigError, ValueError) as err:
        print(f"tvau build-dataset: {err}", file=sys.stderr)
        return 2
    builder = DatasetBuilder(annotator, opts["out"], settings, work_dir=opts.get("work_dir"),
                             restart=bool(opts.get("restart")), absolute_paths=bool(opts.get("absolute_paths")),
                             progress=not opts.get("no_progress"))
    try:
        summary = builder.run(sources, max_videos=opts.get("max_videos"))
    except NoRecordsError as err:
        _print_no_record_lines(err.reasons, "error")
        print(f"tvau build-dataset stopped: none of the {len(err.reasons)} video(s) gives a record with these record "
              "settings; nothing was asked nor written", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as err:
        print(f"\ninterrupted: finished videos are cached in {builder.work_dir}; rerun the same command to continue",
              file=sys.stderr)
        return err.code if isinstance(err, Terminated) else 130
    except OutputFolderError as err:
        return command_error("build-dataset", err, status=2)
    except (BuildError, AnnotatorConfigError) as err:
        return command_error("build-dataset", err, label=" stopped:")
    print(json.dumps({"records": summary.records, "dropped_records": summary.dropped_records,
                      "videos": summary.videos, "done": summary.done, "skipped": summary.skipped,
                      "failed": summary.failed, "no_record_videos": len(summary.no_record_videos),
                      "queries": summary.queries,
                      "failed_queries": summary.failed_queries, "outputs": summary.outputs}, indent=1))
    if summary.no_record_videos:
        _print_no_record_lines([f"{v['dataset']}/{v['video_id']}: {v['reason']}" for v in summary.no_record_videos],
                               "warning", summary.outputs.get("summary"))
    if summary.failed:
        first = summary.failed_videos[0]
        print(f"tvau build-dataset: {summary.failed} of {summary.videos} video(s) failed and are not in the dataset; "
              f"first: {first['dataset']}/{first['video_id']}: {first['error']}. Fix the cause and rerun the same "
              f"command: it asks only the failed videos again (failed questions in {summary.outputs['failures']})",
              file=sys.stderr)
        return 1
    return 0


def _print_no_record_lines(reasons: Sequence[str], level: str, summary_file: str | None = None) -> None:
    """One stderr line per video that gives no record (at most :data:`MAX_NO_RECORD_LINES`, then a count)."""
    for reason in reasons[:MAX_NO_RECORD_LINES]:
        print(f"tvau build-dataset: {level}: {reason}", file=sys.stderr)
    if len(reasons) > MAX_NO_RECORD_LINES:
        where = f" (all in {summary_file})" if summary_file else ""
        print(f"tvau build-dataset: {level}: … and {len(reasons) - MAX_NO_RECORD_LINES} more video(s) that give no "
              f"record{where}", file=sys.stderr)
