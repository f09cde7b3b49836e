"""Frames/s of the evaluation data path, in one run: the loader of before issue 17, sequential clips, and
sequential clips that the model's device resizes (from RGB, or from YUV 4:2:0 that it also converts).

Writes ``--videos`` H.264 videos of ``--frames`` frames at a 1280×720 source (moving texture, x264 defaults:
a keyframe every 250 frames, as most benchmark videos), wraps them in a minimal :class:`VideoClipDataset`
(labels and boxes empty, masks all-False at the source size; frames decoded and resized to 448×672 as the
DataModules do) and loads every evaluation clip with ``--workers`` DataLoader workers:

* **today** (the loader at the start of issue 17, git 7a44add): the map-style dataset, so consecutive clips of
  a video go to different workers and each worker's decoder jumps over the frames the others read, with the
  reader and collate of that day (:class:`TodayPyAV`: every frame converted by ``to_ndarray`` — a new swscale
  context per frame — kept in a list and ``np.stack``-ed; the batch a ``torch.stack`` copy);
* **interleaved**: the same map-style loader with the current readers and collate (decoding into one
  preallocated array, one swscale context per reader, a batch of one clip a view);
* **sequential** (:class:`~tvau_lightning.data.clips.SequentialEvaluationClips`, the DataModules'
  evaluation loader): videos sharded over workers, each video decoded front to back by one decoder;
* **sequential_device** (``resize_on: device``): the same, but the workers only decode, at the source size,
  into one preallocated array (shared memory in a worker); the resize to 448×672 happens on the model's device
  after the transfer, which this figure leaves out. Its cost when that device is the CPU is measured apart
  (one thread, CPU time) and folded back in as ``sequential_device_with_cpu_resize`` (``1 / (1 / data path +
  1 / resize)``), so nothing the GPU would take over is hidden;
* **sequential_device_yuv** (``resize_on: device_yuv420``): the same, but the workers copy the decoder's YUV
  4:2:0 planes (half the bytes of RGB, no YUV → RGB conversion in the worker) into the preallocated array; the
  model's device converts them to RGB and resizes (left out of this figure). That device work, when the device is
  the CPU, is measured apart the same way and folded back in as ``sequential_device_yuv_with_cpu_convert``;
* **main_process_device**: ``sequential_device`` with no worker (``num_workers=0``, one core): what the path
  costs when the source-size frames need not cross into another process (the ceiling of one core; a single
  process does not scale past it);
* **threads** (the DataModules' default since ``eval_loading: threads``): :class:`~tvau_lightning.data.
  decode_threads.ThreadedEvaluationClips` — the videos dealt to ``--workers`` threads of the main process, each
  decoding its videos front to back and resizing in the thread (``resize_on: data``); no worker process, so no
  frame is copied into shared memory;
* **threads_device**: the same with ``resize_on: device`` (the resize left to the model's device, folded back
  in as ``threads_device_with_cpu_resize`` as above).

Masks: the videos have no anomalous pixel, and every path reads them all-False at the source size
(``_read_masks``); the current paths skip resampling frames without a nonzero pixel (``resize_masks``), the
**today** path replays the resize of every frame that the loader of that day did.

The paths take turns ``--repeats`` times (a change of machine load hits all); the script prints frames/s (real
frames, padding excluded) in total and per busy core (``min(workers, cores)``; 1 without workers), frames per
CPU-second (user + system time of the main process, its threads and its workers: what the loading costs,
whatever else runs on the machine), and ratios of the medians against ``today``. ``--backend pyav`` (``today`` replays PyAV).

    python benchmarks/bench_evaluation_data.py --backend pyav               # 4 videos × 128 frames, 4 workers
    python benchmarks/bench_evaluation_data.py --backend pyav --workers 2 --videos 2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from bench_qwen_vision import cpu_name
from torch.utils.data import DataLoader

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.data.clips import (
    SequentialEvaluationClips,
    VideoClipDataset,
    collate_mixed_sizes,
    frames_as_rgb,
)
from tvau_lightning.data.decode_threads import ThreadedEvaluationClips
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.types import collate_clips
from tvau_lightning.data.video import PyAVVideo, open_video
from tvau_lightning.data.video.base import frame_index_array, gather_frames


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


class TodayPyAV(PyAVVideo):
    """:class:`PyAVVideo` as it read frames before issue 17 (git 7a44add): ``frame.to_ndarray(format="rgb24")``
    per frame into a list, then ``np.stack``."""

    def read(self, indices):  # noqa: ANN001, ANN201
        array = frame_index_array(indices, self.num_frames, self.path)
        unique, inverse = np.unique(array, return_inverse=True)
        frames = np.stack([self._frame_at(int(i)).to_ndarray(format="rgb24") for i in unique])
        return gather_frames(frames, unique, array, inverse)


def collate_today(samples):  # noqa: ANN001, ANN201
    """The collate of before issue 17: the frames of the batch copied by ``torch.stack``, even for one clip."""
    batch = collate_clips(samples)
    batch.frames = torch.stack([s.frames for s in samples])
    return batch


class BenchVideos(VideoClipDataset):
    """Evaluation clips of some video files, with empty annotations (the cost is decoding and resizing)."""

    def __init__(self, paths: dict[str, Path], backend: str, resize_on: str = "data", today: bool = False,
                 frames_format: str = "rgb", **kwargs) -> None:
        super().__init__(sampling="eval", gt_boxes=False, video_backend=backend, **kwargs)
        self.resize_on = resize_on  # what a DataModule with this resize_on sets
        self.frames_format = frames_format
        self.today = today
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
        if self.today:
            return TodayPyAV(self.paths[video_id], num_threads=1)
        return open_video(self.paths[video_id], backend=self.video_backend, num_threads=1)

    def _read_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        h, w = self.original_size(video_id)
        return torch.zeros((len(indices), h, w), dtype=torch.bool)

    def _clip_masks(self, video_id: str, indices: np.ndarray) -> torch.Tensor:
        if not self.today:
            return super()._clip_masks(video_id, indices)
        # the mask resize of before issue 17: every frame resampled, nonzero or not
        masks = self._read_masks(video_id, indices).view(torch.uint8)[:, None]
        return F.interpolate(masks, size=self.frame_size, mode="nearest-exact")[:, 0].view(torch.bool)


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended (the workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def epoch_seconds(dataset, workers: int, collate=collate_clips) -> tuple[float, int, float]:  # noqa: ANN001
    """Wall seconds to load every item once (worker start-up included), the real frames loaded, and the CPU
    seconds the loading took in all its processes (the workers are joined when the loop ends)."""
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers, collate_fn=collate)
    cpu, start = _cpu_seconds(), time.perf_counter()
    frames = 0
    for batch in loader:
        frames += int(batch.valid.sum())
    del batch
    return time.perf_counter() - start, frames, _cpu_seconds() - cpu


def resize_seconds_per_clip(dataset, size: tuple[int, int], repeats: int = 5) -> float:
    """Median seconds of the on-device resize of one source-size clip when the device is the CPU (one thread)."""
    frames = next(iter(SequentialEvaluationClips(dataset))).frames
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for _ in range(repeats):  # CPU time of this thread: other jobs on the machine do not inflate it
            start = time.thread_time()
            resize_frames(frames, size)
            times.append(time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def convert_resize_seconds_per_clip(dataset, size: tuple[int, int], repeats: int = 5) -> float:
    """Median seconds of the on-device YUV 4:2:0 → RGB conversion and resize of one source-size clip when the
    device is the CPU (one thread, CPU time)."""
    sample = next(iter(SequentialEvaluationClips(dataset)))
    assert sample.frames_colour is not None, "the YUV path read RGB frames"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for _ in range(repeats):
            start = time.thread_time()
            resize_frames(frames_as_rgb(sample.frames, sample.frames_colour), size)
            times.append(time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


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
        options = dict(clip_len=args.clip_len, frame_stride=args.frame_stride, frame_size=tuple(args.size))
        if args.backend not in ("auto", "pyav") or open_video(paths["v0"], args.backend).__class__ is not PyAVVideo:
            raise SystemExit("the 'today' path replays the PyAV reader of before; run with --backend pyav")
        today = BenchVideos(paths, args.backend, today=True, **options)
        dataset = BenchVideos(paths, args.backend, **options)
        sequential = SequentialEvaluationClips(dataset)
        on_device = BenchVideos(paths, args.backend, resize_on="device", **options)
        sequential_device = SequentialEvaluationClips(on_device)
        on_device_yuv = BenchVideos(paths, args.backend, resize_on="device", frames_format="yuv420", **options)
        sequential_device_yuv = SequentialEvaluationClips(on_device_yuv)
        # the DataModule's collate with resize_on: device_yuv420 (it records the batch's colour for the device)
        collate_yuv = functools.partial(collate_mixed_sizes, collate=collate_clips, frame_size=tuple(args.size))
        threads = ThreadedEvaluationClips(sequential, threads=args.workers)
        threads_device = ThreadedEvaluationClips(sequential_device, threads=args.workers)
        paths_of = {"today": today, "interleaved": dataset, "sequential": sequential,
                    "sequential_device": sequential_device, "sequential_device_yuv": sequential_device_yuv,
                    "main_process_device": sequential_device, "threads": threads, "threads_device": threads_device}
        in_main_process = ("main_process_device", "threads", "threads_device")
        collates = {"today": collate_today, "sequential_device_yuv": collate_yuv}
        times: dict[str, list[float]] = {name: [] for name in paths_of}
        cpu_times: dict[str, list[float]] = {name: [] for name in paths_of}
        counted = {}
        for _ in range(args.repeats):
            for name, data in paths_of.items():
                workers = 0 if name in in_main_process else args.workers
                seconds, frames, cpu = epoch_seconds(data, workers, collates.get(name, collate_clips))
                times[name].append(seconds)
                cpu_times[name].append(cpu)
                counted[name] = frames
        resize_s = resize_seconds_per_clip(on_device, tuple(args.size))
        convert_s = convert_resize_seconds_per_clip(on_device_yuv, tuple(args.size))
    assert set(counted.values()) == {args.videos * args.frames}, counted
    processes = max(1, min(args.workers, len(os.sched_getaffinity(0))))  # busy cores
    result = {
        "machine": cpu_name(), "cores": len(os.sched_getaffinity(0)), "workers": args.workers,
        "source": args.source, "frame_size": args.size, "videos": args.videos, "frames_per_video": args.frames,
        "clip_len": args.clip_len, "frame_stride": args.frame_stride, "backend": args.backend,
        "times_s": times, "cpu_times_s": cpu_times,
    }
    for name in times:
        fps = counted[name] / statistics.median(times[name])
        per_cpu = counted[name] / statistics.median(cpu_times[name])
        result[f"{name}_frames_per_s"] = fps
        cores = 1 if name == "main_process_device" else processes  # threads: as many busy cores as workers
        result[f"{name}_frames_per_s_per_core"] = fps / cores
        result[f"{name}_frames_per_cpu_s"] = per_cpu
        print(f"{name:21s}: {statistics.median(times[name]):6.2f} s  {fps:6.1f} frames/s  {fps / cores:6.1f} "
              f"frames/s per core  {per_cpu:6.1f} frames per CPU-second  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times[name])} s)")
    resize_fps = args.clip_len / resize_s  # frames/s of the resize on one CPU thread
    result["resize_on_cpu_ms_per_clip"] = resize_s * 1000
    result["resize_on_cpu_frames_per_s"] = resize_fps
    print(f"the on-device resize, when the device is this CPU (1 thread, CPU time): {resize_s * 1000:.1f} ms per "
          f"{args.clip_len}-frame clip ({resize_fps:.0f} frames/s) — on a GPU this work leaves the CPU")
    convert_fps = args.clip_len / convert_s
    result["yuv_convert_resize_on_cpu_ms_per_clip"] = convert_s * 1000
    result["yuv_convert_resize_on_cpu_frames_per_s"] = convert_fps
    print(f"the on-device YUV → RGB conversion + resize, when the device is this CPU (1 thread, CPU time): "
          f"{convert_s * 1000:.1f} ms per {args.clip_len}-frame clip ({convert_fps:.0f} frames/s) — on a GPU this "
          "work leaves the CPU")
    compared = ("interleaved", "sequential", "sequential_device", "sequential_device_with_cpu_resize",
                "sequential_device_yuv", "sequential_device_yuv_with_cpu_convert", "main_process_device",
                "threads", "threads_device", "threads_device_with_cpu_resize")
    for unit, key in (("per core", "frames_per_s_per_core"), ("per CPU-second", "frames_per_cpu_s")):
        for device_path in ("sequential_device", "threads_device"):
            device = result[f"{device_path}_{key}"]
            result[f"{device_path}_with_cpu_resize_{key}"] = 1.0 / (1.0 / device + 1.0 / resize_fps)
        device_yuv = result[f"sequential_device_yuv_{key}"]
        result[f"sequential_device_yuv_with_cpu_convert_{key}"] = 1.0 / (1.0 / device_yuv + 1.0 / convert_fps)
        for base in ("today", "interleaved"):
            for name in compared:
                if name != base:
                    result[f"ratio_{unit.split()[-1].replace('-', '_').lower()}_{name}_vs_{base}"] = (
                        result[f"{name}_{key}"] / result[f"{base}_{key}"])
    core = {name: result[f"ratio_core_{name}_vs_today"] for name in compared}
    cpu = {name: result[f"ratio_cpu_second_{name}_vs_today"] for name in core}
    print("against today's loader, per core (wall) | per CPU-second: " + ", ".join(
        f"{name} {core[name]:.2f}x | {cpu[name]:.2f}x" for name in core))
    result["load_average"] = list(os.getloadavg())
    print(f"({args.videos} videos × {args.frames} frames, {args.source[1]}×{args.source[0]} → {args.size[1]}×"
          f"{args.size[0]}, {args.workers} workers, {cpu_name()}, load average {result['load_average'][0]:.2f})")
    # the keys bench_stage1_decide.py reads
    result["ratio"] = result["ratio_core_sequential_vs_today"]
    result["ratio_device"] = result["ratio_core_sequential_device_vs_today"]
    result["ratio_device_with_cpu_resize"] = result["ratio_core_sequential_device_with_cpu_resize_vs_today"]
    result["ratio_device_yuv"] = result["ratio_core_sequential_device_yuv_vs_today"]
    result["ratio_device_yuv_with_cpu_convert"] = result["ratio_core_sequential_device_yuv_with_cpu_convert_vs_today"]
    result["ratio_threads"] = result["ratio_core_threads_vs_today"]
    result["ratio_threads_per_cpu_s"] = result["ratio_cpu_second_threads_vs_today"]
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
