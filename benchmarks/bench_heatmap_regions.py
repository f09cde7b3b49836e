"""Region extraction of the RBDC/TBDC metric and of ``tvau analyze``, before and after, in one run.

``heatmap_to_detections`` labels the 8-connected components of ``heatmap > 0.5`` in each frame and scores each
by the maximum of the ranking map inside it. Before, that maximum was ``scipy.ndimage.maximum(values, labels,
index)``, which sorts every pixel of the clip by its label (background included); now it is one pass over the
components' pixels (``metrics/regions.py:_component_max``). Both run here on the same clips — ``--clips`` synthetic
16-frame heatmaps at ``--size`` (the frame size the AHD task hands the metric: 476×868 in the paper's setting)
with a few Gaussian blobs per frame and noise — and must give the same scores; the script prints the time per
clip of the whole ``heatmap_to_detections`` with each and the ratio.

    python benchmarks/bench_heatmap_regions.py                  # 8 clips of 16×476×868
    python benchmarks/bench_heatmap_regions.py --size 720 1280  # tvau analyze upsamples to the source size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_qwen_vision import cpu_name
from scipy import ndimage

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.metrics import regions


def synthetic_clip(rng: np.random.Generator, frames: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A heatmap with three Gaussian blobs per frame plus noise, and its ranking map (an affine logit gap)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    heat = np.zeros((frames, h, w), dtype=np.float32)
    for t in range(frames):
        for _ in range(3):
            cy, cx, r = rng.integers(h // 10, h - h // 10), rng.integers(w // 10, w - w // 10), rng.integers(10, 60)
            heat[t] = np.maximum(heat[t], np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * r * r)))
    heat += rng.random(heat.shape, dtype=np.float32) * 0.05
    return heat, heat * 3.0 - 1.0


def sorted_maximum(values: np.ndarray, labels: np.ndarray, t: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The implementation before: scipy's labelled maximum (a sort of every pixel by label)."""
    return np.asarray(ndimage.maximum(values, labels, index=np.arange(1, len(t) + 1)), dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=[476, 868], metavar=("H", "W"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    clips = [synthetic_clip(rng, args.frames, tuple(args.size)) for _ in range(args.clips)]
    index = np.arange(args.frames)
    current = regions._component_max
    times: dict[str, list[float]] = {"before": [], "after": []}
    found = []
    for heat, ranking in clips:  # the two take turns on every clip
        for name, component_max in (("before", sorted_maximum), ("after", current)):
            regions._component_max = component_max
            try:
                start = time.perf_counter()
                dets = regions.heatmap_to_detections(heat, index, (720, 1280), scores=ranking)
                times[name].append(time.perf_counter() - start)
            finally:
                regions._component_max = current
            found.append(dets)
    for before, after in zip(found[::2], found[1::2]):
        np.testing.assert_array_equal(before, after)
    med = {name: statistics.median(values) for name, values in times.items()}
    regions_per_clip = statistics.mean(len(d) for d in found[1::2])
    result = {"machine": cpu_name(), "load_average": os.getloadavg(), "clips": args.clips, "frames": args.frames,
              "size": args.size, "regions_per_clip": regions_per_clip,
              "before_ms_per_clip": med["before"] * 1000, "after_ms_per_clip": med["after"] * 1000,
              "ratio": med["before"] / med["after"]}
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    print(f"heatmap_to_detections on {args.clips} clips of {args.frames}×{args.size[0]}×{args.size[1]} "
          f"(~{regions_per_clip:.0f} regions per clip): before {med['before'] * 1000:.0f} ms per clip "
          f"(ndimage.maximum), after {med['after'] * 1000:.0f} ms per clip: {result['ratio']:.1f}x; same detections "
          f"({cpu_name()}, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
