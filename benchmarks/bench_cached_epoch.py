"""A cached epoch against the time to read its cache files, from one run.

Writes a feature cache of ``--clips`` clips (``FeatureCache.write`` with random grids and each clip's targets,
as ``tvau cache-features`` does) at Qwen2.5-VL-7B shapes by default — 4 AHD layers of (8, 32, 48, 1,280) bf16
per 16×448×672 clip (126 MB) plus bit-packed masks — then times, alternating, ``--repeats`` times each:

* **files (reused buffer)**: every clip file's bytes read into one reused buffer (``readinto``), the floor;
* **files (new memory)**: every file read into new memory (``Path.read_bytes``), as a reader that keeps the
  bytes must (on a VM, faulting in fresh pages costs as much as the copy);
* **cached epoch**, per ``--readers`` (``CachedClipDataset`` + ``collate_cached_clips``, what
  ``VideoClipDataModule.read_from_feature_cache`` serves): every batch as the training step gets it — a
  ``ClipBatch`` with its grids, masks, labels and boxes, no video opened — and each of its tensors copied once
  by the consumer: into a staging buffer on a CPU (standing in for the host → GPU copy; the staging buffers are
  allocated once per run, as a GPU's caching allocator keeps device memory), ``.to("cuda", non_blocking=True)``
  when CUDA is available. ``read``: the batch's files read (``preadv``) into reused buffers; ``mmap``: the files
  memory-mapped (their bytes are read by the consumer's copy); ``auto`` (the default, what the DataModule
  serves): ``mmap`` for one clip per batch in the main process without CUDA, else ``read``;
* **cached epoch, read, no consumer copy**: the ``read`` loader alone — every byte is in process memory when the
  batch is handed over, which is what a CPU training step reads in place and what a GPU copies by DMA from
  page-locked memory (not meaningful for ``mmap``, whose bytes are read only when touched).

The AHD step itself is not included (it is the same with or without the cache and depends on the device). All
read a warm page cache (the files were just written and are read once before timing), so this measures the
work above the disk. The script prints the times, MB/s and the ratios (done criterion: ≤ 1.5×).

    python benchmarks/bench_cached_epoch.py                        # 8 clips at 7B shapes (~1 GB of files)
    python benchmarks/bench_cached_epoch.py --clips 16 --grid 8 16 24 --channels 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_qwen_vision import cpu_name
from torch.utils.data import DataLoader

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.data.feature_cache import CachedClipDataset, FeatureCache, collate_cached_clips


def fill(root: Path, args: argparse.Namespace) -> list[tuple[str, list[int]]]:
    cache = FeatureCache.create(root, fingerprint={"bench": True}, layers=args.layers, storage_dtype=args.dtype)
    g = torch.Generator().manual_seed(0)
    t, h, w = args.grid
    clips = []
    for k in range(args.clips):
        video_id, frames = f"video{k % 4}", list(range(k * args.clip_len, (k + 1) * args.clip_len))
        grids = {layer: torch.randn((t, h, w, args.channels), generator=g).to(torch.bfloat16) for layer in args.layers}
        masks = torch.rand((args.clip_len, *args.frame_size), generator=g) > 0.97
        targets = {"masks": masks, "frame_labels": torch.zeros(args.clip_len, dtype=torch.int64),
                   "frame_index": torch.tensor(frames), "valid": torch.ones(args.clip_len, dtype=torch.bool),
                   "fps": 30.0, "original_size": torch.tensor([720, 1280]),
                   "gt_boxes": torch.zeros((3, 6), dtype=torch.int64)}
        cache.write(video_id, frames, grids, targets=targets)
        clips.append((video_id, frames))
    return clips


def read_files_fresh(paths: list[Path]) -> float:
    """Every file's bytes read into new memory (``Path.read_bytes``), as any reader that keeps them must."""
    start = time.perf_counter()
    for path in paths:
        path.read_bytes()
    return time.perf_counter() - start


def read_files(paths: list[Path]) -> float:
    """Every file's bytes read into one reused buffer (``readinto``: no allocation per file), the fastest read."""
    buffer = bytearray(max(p.stat().st_size for p in paths))
    view = memoryview(buffer)
    start = time.perf_counter()
    for path in paths:
        with path.open("rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            got = 0
            while got < size:
                got += fh.readinto(view[got:size])
    return time.perf_counter() - start


def cached_epoch(dataset: CachedClipDataset, batch_size: int, workers: int,
                 staging: dict[str, torch.Tensor] | None) -> float:
    """Every batch of the cached loader, each of its tensors copied once by the consumer: to the GPU when CUDA is
    available, else into a staging buffer (``staging``, kept across epochs); ``staging=None``: no copy (the
    batch's bytes must then already be in memory, i.e. the ``read`` reader)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_cached_clips)
    cuda = torch.cuda.is_available() and staging is not None
    start = time.perf_counter()
    for batch in loader:
        if staging is None:
            continue
        tensors = {**batch.extras, "masks": batch.masks, "frame_labels": batch.frame_labels, "valid": batch.valid}
        for name, tensor in tensors.items():
            if cuda:
                tensor.to("cuda", non_blocking=True)
                continue
            if name not in staging or staging[name].shape != tensor.shape:
                staging[name] = torch.empty_like(tensor, memory_format=torch.contiguous_format)
            staging[name].copy_(tensor)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[448, 672], metavar=("H", "W"))
    parser.add_argument("--grid", type=int, nargs=3, default=[8, 32, 48], metavar=("T", "H", "W"))
    parser.add_argument("--channels", type=int, default=1280, help="C_vis (1,280 for Qwen2.5-VL-7B)")
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--readers", nargs="+", default=["auto", "read", "mmap"], choices=["auto", "read", "mmap"],
                        help="CachedClipDataset readers to time (the first one gives `ratio`; auto is the default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the cache (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_cached_epoch_", dir=args.dir) as tmp:
        root = Path(tmp) / "cache"
        clips = fill(root, args)
        cache = FeatureCache.open(root)
        paths = [cache.path_for(v, f) for v, f in clips]
        total_mb = sum(p.stat().st_size for p in paths) / 1e6
        datasets = {reader: CachedClipDataset(cache, clips, tuple(args.frame_size), reader=reader)
                    for reader in dict.fromkeys(args.readers)}
        read_files(paths)  # warm the page cache
        epochs = [f"cached_epoch_{reader}" for reader in datasets]
        if "read" in datasets:
            epochs.append("cached_epoch_read_no_copy")
        times: dict[str, list[float]] = {name: [] for name in ("files", "files_new_memory", *epochs)}
        staging: dict[str, torch.Tensor] = {}
        for _ in range(args.repeats):  # alternating: every variant once per round
            times["files"].append(read_files(paths))
            times["files_new_memory"].append(read_files_fresh(paths))
            for reader, dataset in datasets.items():
                times[f"cached_epoch_{reader}"].append(cached_epoch(dataset, args.batch_size, args.workers, staging))
            if "read" in datasets:
                times["cached_epoch_read_no_copy"].append(
                    cached_epoch(datasets["read"], args.batch_size, args.workers, None))
    med = {k: statistics.median(v) for k, v in times.items()}
    first = epochs[0]
    result = {"machine": cpu_name(), "cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
              "clips": args.clips, "mb_per_clip": total_mb / args.clips, "total_mb": total_mb, "grid": args.grid,
              "channels": args.channels, "layers": args.layers, "dtype": args.dtype, "workers": args.workers,
              "batch_size": args.batch_size, "consumer_copy": "cuda" if torch.cuda.is_available() else "cpu staging",
              "times_s": {**times, "cached_epoch": times[first]},
              "ratio": med[first] / med["files"], "ratio_new_memory": med[first] / med["files_new_memory"],
              "ratios": {name: med[name] / med["files"] for name in epochs}}
    for name in times:
        print(f"{name:26s}: {med[name]:7.3f} s  {total_mb / med[name]:8.0f} MB/s  "
              f"(runs: {', '.join(f'{t:.3f}' for t in times[name])} s)")
    for name in epochs:
        print(f"{name} / reading its files: {med[name] / med['files']:.2f}x (reused buffer), "
              f"{med[name] / med['files_new_memory']:.2f}x (new memory)")
    print(f"({args.clips} clips × {total_mb / args.clips:.0f} MB, {args.dtype}, batch {args.batch_size}, "
          f"{args.workers} workers, consumer copy: {result['consumer_copy']}, warm page cache, {cpu_name()}, "
          f"load average {os.getloadavg()[0]:.1f})")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
