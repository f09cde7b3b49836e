"""Filling the stage-1 feature cache: run the frozen vision tower once over a DataModule's clips and store the
grids of the layers the AHD reads (``tvau cache-features`` is the command around it).

Stage 1 trains only the AHD head on a frozen tower, so the tower's output for a clip never changes between
epochs. Each clip file also holds the clip's targets (masks, labels, validity, frame indices, source size, GT
boxes), so an epoch over the cache opens no video. The grids are computed by :meth:`AnomalyHeatmapModel.encode` — the same call training makes — so
cached and live features cannot drift apart; the cache's fingerprint is
:meth:`AnomalyHeatmapModel.feature_identity` (tower weights, config and processor files, compute dtype,
``input_size``, layers, the DataModule's frame settings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, Subset

from tvau_lightning.data.clips import SequentialEvaluationClips
from tvau_lightning.data.decode_threads import ThreadedEvaluationClips
from tvau_lightning.data.feature_cache import STORAGE_DTYPES, FeatureCache, FeatureCacheError, clip_targets
from tvau_lightning.data.loader import ForkSafeDataLoader
from tvau_lightning.data.types import collate_clips


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
    model: Any,
    datamodule: Any,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    storage_dtype: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    on_clips: Callable[[str, int], Callable[[int], None]] | None = None,
) -> CacheFillReport:
    """Compute and store the features of every clip of ``splits`` that the cache does not hold yet.

    Args:
        model: the stage-1 :class:`~tvau_lightning.modules.anomaly_model.AnomalyHeatmapModel` (or a task holding
            one as ``heatmap_model``): its backbone computes the grids of its layers.
        datamodule: a DataModule with ``dataset(split)`` (the UBnormal / ShanghaiTech ones); the train split
            is taken in order (no shuffle), every item once.
        out: the cache folder (created; an existing cache of the same settings is completed, not redone).
        splits: ``train``, ``val``, ``test`` (``predict`` reads ``test``).
        storage_dtype: see :func:`resolve_storage_dtype`.
        batch_size / num_workers: loader settings; default to the DataModule's.
        overwrite: clear a cache of other settings in ``out`` instead of refusing.
        on_clips: progress hook, ``on_clips(split, total)`` → ``advance(n)`` (e.g.
            :func:`tvau_lightning.commands.progress.progress_bar`'s task factory).
    """
    model = getattr(model, "heatmap_model", model)
    backbone = model.backbone
    layers = list(model.layers)
    identity = model.feature_identity(datamodule)
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
        cache.sync_videos(dataset)  # a replaced video's clips are deleted (with a note) and computed again
        start = time.perf_counter()
        keys = [(vid, _padded(indices, dataset.clip_len)) for vid, indices in dataset.clips]
        todo = [i for i, (vid, frames) in enumerate(keys) if not cache.contains(vid, frames)]
        workers = getattr(datamodule, "num_workers", 0) if num_workers is None else num_workers
        items: Any = Subset(dataset, todo)
        if getattr(dataset, "sampling", None) == "eval" and getattr(datamodule, "eval_loading", None) == "threads":
            # as the DataModule's evaluation loaders: each video decoded once, front to back, by threads of this
            # process (only the videos with a clip to compute; their cached clips are dropped before the tower)
            wanted = {(keys[i][0], tuple(keys[i][1])) for i in todo}
            clips = SequentialEvaluationClips(dataset, videos={keys[i][0] for i in todo})
            items = _OnlyClips(ThreadedEvaluationClips(clips, threads=workers) if workers > 0 else clips, wanted)
            workers = 0
        loader = ForkSafeDataLoader(
            items,
            batch_size=batch_size or getattr(datamodule, "batch_size", 1),
            shuffle=False,
            num_workers=workers,
            collate_fn=getattr(datamodule, "clip_collate", lambda: collate_clips)(),
        )
        # resize_on: device — the clips come at the source size (device_yuv420: as YUV 4:2:0); convert and resize
        # them on the model's device, as the Trainer does
        to_size = getattr(datamodule, "frames_to_size", None)
        advance = on_clips(f"caching {split}", len(todo)) if on_clips is not None else None
        for batch in loader:
            frames = batch.frames if to_size is None else to_size(batch.frames.to(model.device), batch.frames_colour)
            _, vision = model.encode(frames)
            features = model.layer_features(vision)
            for b, video_id in enumerate(batch.video_id):
                cache.write(video_id, batch.frame_index[b], {i: f[b] for i, f in zip(layers, features)},
                            targets=clip_targets(batch, b))
            if advance is not None:
                advance(batch.batch_size)
        report.splits[split] = {"clips": len(keys), "written": len(todo), "already_cached": len(keys) - len(todo),
                                "seconds": round(time.perf_counter() - start, 3)}
    return report


class _OnlyClips(IterableDataset):
    """The items of ``clips`` whose ``(video_id, padded frame indices)`` are in ``wanted``."""

    def __init__(self, clips: Any, wanted: set[tuple[str, tuple[int, ...]]]) -> None:
        self.clips, self.wanted = clips, wanted

    def __len__(self) -> int:
        return len(self.wanted)

    def __iter__(self) -> Iterator[Any]:
        for item in self.clips:
            if (item.video_id, tuple(item.frame_index.tolist())) in self.wanted:
                yield item


def _padded(indices: Any, clip_len: int) -> list[int]:
    """A clip's frame indices as the dataset yields them: padded with ``-1`` up to ``clip_len``."""
    frames = [int(v) for v in indices]
    return frames + [-1] * (clip_len - len(frames))
