"""The overlay frames of ``tvau analyze`` (heatmap blend + region boxes), this tree against an earlier
``visualize.py``, in one run, on the same frames — and the bytes must be identical.

``--old`` is a copy of the earlier module, e.g. the one before the overlay was made in place (2026-12-07)::

    git show 9a11f30:src/tvau_lightning/visualize.py > /tmp/visualize_old.py
    python benchmarks/bench_overlay.py --old /tmp/visualize_old.py              # 16 frames of 720p, 40 boxes

Times ``overlay_heatmap`` on a 16-frame chunk (what ``overlay_frames`` blends at once) and ``decorate_frame``
with ``--boxes`` region boxes per frame (an analysis of a noisy video has tens), alternating, medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch
from bench_qwen_vision import cpu_name

from tvau_lightning import visualize


def load_module(path: Path):  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location("visualize_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="a copy of the earlier visualize.py")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=[720, 1280], metavar=("H", "W"))
    parser.add_argument("--boxes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    old = load_module(args.old)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (args.frames, *args.size, 3), dtype=torch.uint8, generator=g)
    heat = torch.rand(args.frames, *args.size, generator=g)
    boxes = [(10 * k, 5 * k, 10 * k + 80, 5 * k + 60) for k in range(args.boxes)]
    ids = list(range(args.boxes))
    for alpha, min_value in ((0.4, 0.0), (0.45, 0.5)):
        assert torch.equal(old.overlay_heatmap(frames, heat, alpha=alpha, min_value=min_value),
                           visualize.overlay_heatmap(frames, heat, alpha=alpha, min_value=min_value))
    assert torch.equal(old.decorate_frame(frames[0], boxes, track_ids=ids, thickness=6),
                       visualize.decorate_frame(frames[0], boxes, track_ids=ids, thickness=6))
    times: dict[str, list[float]] = {"overlay old": [], "overlay new": [], "decorate old": [], "decorate new": []}
    for _ in range(args.repeats):
        for name, module in (("old", old), ("new", visualize)):
            start = time.perf_counter()
            module.overlay_heatmap(frames, heat, alpha=0.4)
            times[f"overlay {name}"].append((time.perf_counter() - start) / args.frames)
            start = time.perf_counter()
            for frame in frames:
                module.decorate_frame(frame, boxes, track_ids=ids, thickness=6)
            times[f"decorate {name}"].append((time.perf_counter() - start) / args.frames)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"per {args.size[0]}x{args.size[1]} frame: overlay_heatmap {med['overlay old']:.1f} -> {med['overlay new']:.1f} ms "
          f"({med['overlay old'] / med['overlay new']:.1f}x), decorate_frame with {args.boxes} boxes "
          f"{med['decorate old']:.1f} -> {med['decorate new']:.1f} ms ({med['decorate old'] / med['decorate new']:.1f}x); "
          f"identical bytes ({cpu_name()}, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
