"""``tvau cache-features``: run the frozen vision tower once over a DataModule's clips and store the AHD layers
(:func:`tvau_lightning.modules.feature_extraction.fill_feature_cache` does the work).

    tvau cache-features --config configs/ahd.yaml --out /data/cache/ahd_qwen7b_448x672
    tvau fit --config configs/ahd.yaml --model.feature_cache /data/cache/ahd_qwen7b_448x672

The rest of the command line (``--config``, ``--model.*``, ``--data.*``) is LightningCLI's, parsed exactly as
``tvau fit`` parses it (the task and DataModule are built from it; no trainer runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from tvau_lightning.backbones.types import BackboneError
from tvau_lightning.cli import lightning_cli
from tvau_lightning.commands.errors import command_error
from tvau_lightning.commands.progress import progress_bar
from tvau_lightning.data.feature_cache import CACHE_FORMAT_VERSION, STORAGE_DTYPES, FeatureCacheError
from tvau_lightning.modules.feature_extraction import fill_feature_cache


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvau cache-features",
        allow_abbrev=False,  # the rest of the line is LightningCLI's; never mistake one of its options for ours
        description="Store the frozen vision tower's AHD-layer grids of every clip once (stage 1 speed-up). "
        "Other options (--config, --model.*, --data.*) are parsed as by `tvau fit`.",
        epilog="example: tvau cache-features --config configs/ahd.yaml --out /data/cache/ahd  "
        "then: tvau fit --config configs/ahd.yaml --model.feature_cache /data/cache/ahd",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="cache folder (default: the task's feature_cache from the config)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"])
    parser.add_argument("--storage-dtype", default="auto", choices=["auto", *STORAGE_DTYPES],
                        help="auto = bf16 when the tower computes in bf16 (lossless), else fp16")
    parser.add_argument("--device", default=None, help="where the tower runs (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per tower call (default: the data's)")
    parser.add_argument("--num-workers", type=int, default=None, help="loader workers (default: the data's)")
    parser.add_argument("--overwrite", action="store_true", help="clear a cache of other settings in --out first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def cache_features_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau cache-features``: 0 on success (a JSON report on stdout), 1 with the error."""
    argv = list(argv)
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        return 0
    args, rest = build_parser().parse_known_args(argv)
    if not rest:
        print("tvau cache-features: error: give the training config (--config configs/ahd.yaml)", file=sys.stderr)
        return 1
    try:
        cli = lightning_cli(rest, run=False)
        task, datamodule = cli.model, cli.datamodule
        if not hasattr(task, "heatmap_model") or task.heatmap_model is None:
            raise FeatureCacheError(f"{type(task).__name__} has no stage-1 vision features to cache; use an AHD config")
        if not hasattr(datamodule, "dataset"):
            raise FeatureCacheError(f"{type(datamodule).__name__} has no dataset(split); use a clip DataModule")
        out = args.out if args.out is not None else getattr(task, "feature_cache", None)
        if out is None:
            raise FeatureCacheError("no cache folder: pass --out DIR (or set model.init_args.feature_cache)")
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        task.to(device).eval()
        with torch.inference_mode(), progress_bar(not args.no_progress) as add_task:
            report = fill_feature_cache(task.heatmap_model, datamodule, out, splits=args.splits,
                                        storage_dtype=args.storage_dtype, batch_size=args.batch_size,
                                        num_workers=args.num_workers, overwrite=args.overwrite, on_clips=add_task)
    except (FeatureCacheError, BackboneError, FileNotFoundError, ValueError) as error:
        return command_error("cache-features", error)
    print(json.dumps({"format_version": CACHE_FORMAT_VERSION, **asdict(report)}, indent=2))
    return 0
