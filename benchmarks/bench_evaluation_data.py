"""Frames/s of the evaluation data path: today's interleaved clips vs one sequential pass per video, one run.

Writes ``--videos`` H.264 videos of ``--frames`` frames at a 1280×720 source (moving texture, x264 defaults:
a keyframe every 250 frames, as most benchmark videos), wraps them in a minimal :class:`VideoClipDataset`
(masks, labels and boxes empty; frames decoded and resized to 448×672 as the DataModules do) and loads every
evaluation clip with ``--workers`` DataLoader workers:

* **interleaved** (the loader before): the map-style dataset, so consecutive clips of a video go to different
  workers and each worker's decoder jumps over the frames the others read;
* **sequential** (:class:`~tvau_lightning.data.clips.SequentialEvaluationClips`, now the DataModules'
  evaluation loader): videos sharded over workers, each video decoded front to back by one decoder.

The two take turns ``--repeats`` times (a change of machine load hits both); the script prints frames/s (real
frames, padding excluded) in total and per busy core (``min(workers, cores)``), and the ratio of the medians.

    python benchmarks/bench_evaluation_data.py                       # 4 videos × 128 frames, 4 workers
    python benchmarks/bench_evaluation_data.py --workers 1 --videos 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from bench_qwen_vision import cpu_name
from torch.utils.data import DataLoader

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.data.clips import SequentialEvaluationClips, VideoClipDataset
from tvau_lightning.data.types import collate_clips
from tvau_lightning.data.video import open_video


def write_video(path: Path, frames: int, size: tuple[int, int], seed: int, fps: int = 30) -> None:
    """An H.264 video of a textured background panning one pixel a frame plus a moving bright square."""
    h, w = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (h // 8 + 1, (w + frames) // 8 + 1, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), dtype=np.uint8))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            image = np.ascontiguousarray(texture[:h, t : t + w])
            y, x = (t * 5) % (h - 64), (t * 9) % (w - 64)
            image[y : y + 64, x : x + 64] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class BenchVideos(VideoClipDataset):
    """Evaluation clips of some video files, with empty annotations (the cost is decoding and resizing)."""

    def __init__(self, paths: dict[str, Path], backend: str, **kwargs) -> None:
        super().__init__(sampling="eval", gt_boxes=False, video_backend=backend, **kwargs)
        self.paths = paths
        self._video_ids = sorted(paths)
        self._meta = {}
        for vid, path in paths.items():
            reader = open_video(path, backend=backend)
            self._meta[vid] = (reader.num_frames, tuple(reader.size))
        self._build_clips()

    def num_frames(self, video_id: str) -> int:
        return self._meta[video_id][0]

    def original_size(self, video_id: str) -> tuple[int, int]:
        return self._meta[video_id][1]

    def _compute_frame_labels(self, video_id: str) -> np.ndarray:
        return np.zeros(self.num_frames(video_id), dtype=np.int64)

    def _compute_gt_tracks(self, video_id: str) -> list[np.ndarray]:
        return []

    def _open_reader(self, video_id: str):  # noqa: ANN202 - a VideoReader
        return open_video(self.paths[video_id], backend=self.video_backend, num_threads=1)

    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        h, w = self.original_size(video_id)
        return torch.zeros((len(indices), h, w), dtype=torch.bool)


def epoch_seconds(dataset, workers: int) -> tuple[float, int]:
    """Wall seconds to load every item once (worker start-up included), and the real frames loaded."""
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate_clips)
    start = time.perf_counter()
    frames = 0
    for batch in loader:
        frames += int(batch.valid.sum())
    return time.perf_counter() - start, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=128, help="frames per video")
    parser.add_argument("--source", type=int, nargs=2, default=[720, 1280], metavar=("H", "W"))
    parser.add_argument("--size", type=int, nargs=2, default=[448, 672], metavar=("H", "W"), help="frame_size")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--frame-stride", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (the issue measured 4)")
    parser.add_argument("--backend", default="auto", help="video backend (auto, decord, pyav)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_eval_data_") as tmp:
        paths = {}
        for k in range(args.videos):
            paths[f"v{k}"] = Path(tmp) / f"v{k}.mp4"
            write_video(paths[f"v{k}"], args.frames, tuple(args.source), seed=k)
        dataset = BenchVideos(paths, args.backend, clip_len=args.clip_len, frame_stride=args.frame_stride,
                              frame_size=tuple(args.size))
        sequential = SequentialEvaluationClips(dataset)
        times: dict[str, list[float]] = {"interleaved": [], "sequential": []}
        counted = {}
        for _ in range(args.repeats):
            for name, data in (("interleaved", dataset), ("sequential", sequential)):
                seconds, frames = epoch_seconds(data, args.workers)
                times[name].append(seconds)
                counted[name] = frames
    assert counted["interleaved"] == counted["sequential"] == args.videos * args.frames, counted
    processes = max(1, min(args.workers, len(os.sched_getaffinity(0))))  # busy cores
    result = {
        "machine": cpu_name(), "cores": len(os.sched_getaffinity(0)), "workers": args.workers,
        "source": args.source, "frame_size": args.size, "videos": args.videos, "frames_per_video": args.frames,
        "clip_len": args.clip_len, "frame_stride": args.frame_stride, "backend": args.backend,
        "times_s": times,
    }
    for name in times:
        fps = counted[name] / statistics.median(times[name])
        result[f"{name}_frames_per_s"] = fps
        result[f"{name}_frames_per_s_per_core"] = fps / processes
        print(f"{name:11s}: {statistics.median(times[name]):7.2f} s  {fps:7.1f} frames/s  "
              f"{fps / processes:7.1f} frames/s per core  (runs: {', '.join(f'{t:.2f}' for t in times[name])} s)")
    result["ratio"] = result["sequential_frames_per_s"] / result["interleaved_frames_per_s"]
    print(f"sequential / interleaved: {result['ratio']:.2f}x  ({args.videos} videos × {args.frames} frames, "
          f"{args.source[1]}×{args.source[0]} → {args.size[1]}×{args.size[0]}, {args.workers} workers, {cpu_name()})")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
