"""``tvau cache-features``: run the frozen vision tower once over a DataModule's clips and store the AHD layers.

Stage 1 trains only the AHD head on a frozen tower, so the tower's output for a clip never changes between
epochs. This module fills a :class:`~tvau_lightning.data.feature_cache.FeatureCache` (the store lives in
``data/``, which never touches a backbone) with the grids :meth:`AHDTask.vision_features` computes — the same
function training calls, so cached and live features cannot drift apart — and builds the cache fingerprint
from the loaded backbone (weights sampled from every vision tensor, the model folder's config and processor
files, the compute dtype, ``input_size``), the AHD layers and the DataModule's frame settings.

    tvau cache-features --config configs/ahd.yaml --out /data/cache/ahd_qwen7b_448x672
    tvau fit --config configs/ahd.yaml --model.feature_cache /data/cache/ahd_qwen7b_448x672

The rest of the command line (``--config``, ``--model.*``, ``--data.*``) is LightningCLI's, parsed exactly as
``tvau fit`` parses it (the task and DataModule are built from it; no trainer runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from tvau_lightning.backbones.base import PROCESSOR_FILES, BackboneAdapter, BackboneError
from tvau_lightning.data.feature_cache import (
    CACHE_FORMAT_VERSION,
    STORAGE_DTYPES,
    FeatureCache,
    FeatureCacheError,
    data_fingerprint,
)
from tvau_lightning.data.types import collate_clips

__all__ = [
    "CacheFillReport",
    "backbone_fingerprint",
    "cache_features_main",
    "cache_identity",
    "fill_feature_cache",
    "resolve_storage_dtype",
]

#: elements sampled from each end of every vision tensor for the weights fingerprint
_SAMPLED_ELEMENTS = 2048


def backbone_fingerprint(backbone: BackboneAdapter) -> dict[str, Any]:
    """What about a loaded backbone changes its vision features: the family, a digest of the vision weights
    (name, shape and the first/last :data:`_SAMPLED_ELEMENTS` values of every tensor of ``vision_modules()``
    — cheap, independent of where the folder lives, different for any re-trained or other checkpoint),
    SHA-256 of the folder's ``config.json`` and processor files (pixel normalisation), the compute dtype and
    ``input_size``. The vision path (stock / fast) is left out: both give the same features up to rounding."""
    digest = hashlib.sha256()
    for module in backbone.vision_modules():
        for name, p in module.named_parameters():
            flat = p.detach().reshape(-1)
            sample = torch.cat([flat[:_SAMPLED_ELEMENTS], flat[-_SAMPLED_ELEMENTS:]]).float().cpu()
            digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
            digest.update(sample.numpy().tobytes())
    files = {}
    folder = Path(str(backbone.config.path)).expanduser()
    for name in ("config.json", *PROCESSOR_FILES):
        path = folder / name
        if path.is_file():
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    input_size = backbone.config.input_size
    return {
        "family": backbone.family,
        "vision_weights": digest.hexdigest(),
        "files": files,
        "compute_dtype": str(backbone.dtype).removeprefix("torch."),
        "input_size": None if input_size is None else [int(v) for v in input_size],
    }


def cache_identity(backbone: BackboneAdapter, layers: Sequence[int], datamodule: Any | None) -> dict[str, Any]:
    """The identity a cache must have to serve ``backbone``'s ``layers`` on ``datamodule``'s clips (the
    ``expected`` of :meth:`FeatureCache.open`; the ``data`` section only when a DataModule is known)."""
    identity: dict[str, Any] = {"backbone": backbone_fingerprint(backbone), "layers": [int(i) for i in layers]}
    if datamodule is not None:
        identity["data"] = data_fingerprint(datamodule)
    return identity


def resolve_storage_dtype(name: str, compute_dtype: torch.dtype) -> str:
    """``auto`` → ``bfloat16`` when the tower computes in bf16 (lossless), else ``float16`` (half the size of
    fp32; values beyond fp16's range raise at write time); other names are checked and returned."""
    if name == "auto":
        return "bfloat16" if compute_dtype == torch.bfloat16 else "float16"
    if name not in STORAGE_DTYPES:
        raise FeatureCacheError(f"storage dtype must be auto or one of {', '.join(STORAGE_DTYPES)}, got {name!r}")
    return name


@dataclass
class CacheFillReport:
    """What a fill did, per split: clips in the split, written now, already present; seconds spent."""

    root: str
    storage_dtype: str
    layers: list[int]
    splits: dict[str, dict[str, float]] = field(default_factory=dict)


def fill_feature_cache(
    task: Any,
    datamodule: Any,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    storage_dtype: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> CacheFillReport:
    """Compute and store the features of every clip of ``splits`` that the cache does not hold yet.

    Args:
        task: an :class:`~tvau_lightning.tasks.ahd.AHDTask` (its backbone, layers and ``vision_features``).
        datamodule: a DataModule with ``dataset(split)`` (the UBnormal / ShanghaiTech ones); the train split
            is taken in order (no shuffle), every item once.
        out: the cache folder (created; an existing cache of the same settings is completed, not redone).
        splits: ``train``, ``val``, ``test`` (``predict`` reads ``test``).
        storage_dtype: see :func:`resolve_storage_dtype`.
        batch_size / num_workers: loader settings; default to the DataModule's.
        overwrite: clear a cache of other settings in ``out`` instead of refusing.
        progress: a rich progress bar on stderr.
    """
    backbone: BackboneAdapter = task.backbone
    layers = list(task.layers)
    identity = cache_identity(backbone, layers, datamodule)
    fingerprint = {k: v for k, v in identity.items() if k != "layers"}
    dtype_name = resolve_storage_dtype(storage_dtype, backbone.dtype)
    cache = FeatureCache.create(out, fingerprint=fingerprint, layers=layers, storage_dtype=dtype_name,
                                overwrite=overwrite)
    report = CacheFillReport(root=str(cache.root), storage_dtype=dtype_name, layers=layers)
    seen = set()
    for split in splits:
        dataset = datamodule.dataset(split)
        if id(dataset) in seen:  # predict and test are one dataset
            continue
        seen.add(id(dataset))
        start = time.perf_counter()
        keys = [(vid, _padded(indices, dataset.clip_len)) for vid, indices in dataset.clips]
        todo = [i for i, (vid, frames) in enumerate(keys) if not cache.contains(vid, frames)]
        loader = DataLoader(
            Subset(dataset, todo),
            batch_size=batch_size or getattr(datamodule, "batch_size", 1),
            shuffle=False,
            num_workers=getattr(datamodule, "num_workers", 0) if num_workers is None else num_workers,
            collate_fn=collate_clips,
        )
        with _progress_bar(progress, f"caching {split}", len(todo)) as advance:
            for batch in loader:
                features, _ = task.vision_features(batch.frames)
                for b, video_id in enumerate(batch.video_id):
                    cache.write(video_id, batch.frame_index[b], {i: f[b] for i, f in zip(layers, features)})
                advance(batch.batch_size)
        report.splits[split] = {"clips": len(keys), "written": len(todo), "already_cached": len(keys) - len(todo),
                                "seconds": round(time.perf_counter() - start, 3)}
    return report


def _padded(indices: Any, clip_len: int) -> list[int]:
    """A clip's frame indices as the dataset yields them: padded with ``-1`` up to ``clip_len``."""
    frames = [int(v) for v in indices]
    return frames + [-1] * (clip_len - len(frames))


class _progress_bar:
    """``with _progress_bar(on, label, total) as advance: advance(n)`` — rich, on stderr."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total
        self._progress: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True))
        self._progress.__enter__()
        task_id = self._progress.add_task(self.label, total=self.total)
        return lambda n: self._progress.advance(task_id, n)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------


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
    from tvau_lightning.cli import lightning_cli

    try:
        cli = lightning_cli(rest, run=False)
        task, datamodule = cli.model, cli.datamodule
        if not (hasattr(task, "vision_features") and hasattr(task, "layers")):
            raise FeatureCacheError(f"{type(task).__name__} has no stage-1 vision features to cache; use an AHD config")
        if not hasattr(datamodule, "dataset"):
            raise FeatureCacheError(f"{type(datamodule).__name__} has no dataset(split); use a clip DataModule")
        out = args.out if args.out is not None else getattr(task, "feature_cache", None)
        if out is None:
            raise FeatureCacheError("no cache folder: pass --out DIR (or set model.init_args.feature_cache)")
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        task.to(device).eval()
        with torch.inference_mode():
            report = fill_feature_cache(task, datamodule, out, splits=args.splits, storage_dtype=args.storage_dtype,
                                        batch_size=args.batch_size, num_workers=args.num_workers,
                                        overwrite=args.overwrite, progress=not args.no_progress)
    except (FeatureCacheError, BackboneError, FileNotFoundError, ValueError) as error:
        print(f"tvau cache-features: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"format_version": CACHE_FORMAT_VERSION, **asdict(report)}, indent=2))
    return 0
