"""Clip loading throughput of the UBnormal DataModule: clips/s with 0 and 2 DataLoader workers.

Writes a synthetic UBnormal at a realistic-ish source size (default 360×640, libx264 mp4 + id pngs) unless
``--data`` points at an existing one, then iterates the evaluation loader (every frame once, clips of
``--clip-len`` frames resized to ``--frame-size``, masks and GT boxes included) once per worker count. The
first batch (worker start-up, first decoder open) is timed separately; clips/s is the steady state over the
remaining batches.

    python benchmarks/bench_data_loading.py                       # defaults below
    python benchmarks/bench_data_loading.py --frame-size 448 672 --decode-threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from tvau_lightning.data.synthetic import write_synthetic_ubnormal
from tvau_lightning.data.ubnormal import UBnormalDataModule


def measure(root: Path, split_dir: Path, num_workers: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """(start-up seconds, steady clips/s, clips) of one pass over the test loader."""
    dm = UBnormalDataModule(
        str(root), str(split_dir), clip_len=args.clip_len, frame_size=tuple(args.frame_size),
        batch_size=args.batch_size, num_workers=num_workers, decode_threads=args.decode_threads,
    )
    loader = dm.test_dataloader()
    start = time.perf_counter()
    iterator = iter(loader)
    first = next(iterator)
    startup = time.perf_counter() - start
    clips, tick = 0, time.perf_counter()
    for batch in iterator:
        clips += batch.batch_size
    elapsed = time.perf_counter() - tick
    del iterator
    return startup, clips / elapsed, clips + first.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="an existing (synthetic) UBnormal root")
    parser.add_argument("--source-size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    parser.add_argument("--frame-size", type=int, nargs=2, default=(448, 672), metavar=("H", "W"))
    parser.add_argument("--videos", type=int, default=4, help="videos per split when writing data")
    parser.add_argument("--frames", type=int, default=128, help="frames per video when writing data")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--decode-threads", type=int, default=0, help="decord threads per video (0 = auto)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp) / "ubnormal"
            tick = time.perf_counter()
            write_synthetic_ubnormal(root, videos_per_split=args.videos, abnormal_per_split=max(1, args.videos // 2),
                                     num_frames=args.frames, height=args.source_size[0], width=args.source_size[1])
            print(f"wrote {3 * args.videos} videos of {args.frames} frames at {args.source_size[0]}x{args.source_size[1]} "
                  f"in {time.perf_counter() - tick:.1f}s")
        results = {}
        for workers in (0, 2):
            startup, rate, clips = measure(root, root / "scripts", workers, args)
            results[workers] = rate
            print(f"num_workers={workers}: {rate:6.2f} clips/s ({rate * args.clip_len:7.1f} frames/s) over {clips} "
                  f"clips of {args.clip_len}x{args.frame_size[0]}x{args.frame_size[1]}, first batch {startup:.2f}s")
        print(f"speed-up 2 workers / 0 workers: {results[2] / results[0]:.2f}x  ({os.cpu_count()} CPU cores, "
              f"{torch.get_num_threads()} torch threads in the main process, decode_threads={args.decode_threads}, "
              f"load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
