"""Frames/s of the whole AHD heatmap path, stock vs fast Qwen2.5-VL vision path, from one run.

The path is what ``AHDTask.forward`` does for a batch of uint8 clips: Qwen2.5-VL preprocessing on the model's
device (from a CPU uint8 clip, as a DataLoader hands it over) → vision tower (stock transformers module with
forward hooks, or ``vision_path: fast``) → per-layer grids → AHD (MLPs, cosine similarity, fusion) →
heatmap. Two ``AHDTask`` objects are built from the same random-weight model folder (``random_qwen.py``) with
the same AHD initialisation; they take turns in every timed iteration (a change in machine load hits both);
the script prints frames/s of each, the ratio, and the largest heatmap difference between them. On a GPU with
a half dtype the calls run under ``torch.autocast`` as with Lightning's ``bf16-mixed``.

    python benchmarks/bench_ahd_heatmap_path.py                                  # CPU, 'small' tower, 16×224²
    python benchmarks/bench_ahd_heatmap_path.py --real-7b-shapes --device cuda --dtype bfloat16 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch
from bench_qwen_vision import cpu_name, time_interleaved
from random_qwen import FRAME_MULTIPLE, PRESETS, random_qwen_folder

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.tasks.ahd import AHDTask


def build_task(model_dir: Path, args: argparse.Namespace, vision_path: str, device: torch.device) -> AHDTask:
    config = BackboneConfig(path=str(model_dir), dtype=args.dtype, vision_path=vision_path,
                            compile_vision=args.compile and vision_path == "fast", attn_implementation="sdpa")
    torch.manual_seed(0)  # the same AHD weights for both paths
    return AHDTask(config, log_heatmaps=0).to(device).eval()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="random tower (random_qwen.py)")
    parser.add_argument("--real-7b-shapes", action="store_true", help="= --preset 7b --frames 16 --size 448 448")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1, help="clips per call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--compile", action="store_true", help="compile_vision: true for the fast path")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, default=None, help="write / reuse the random model folder here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.real_7b_shapes:
        args.preset, args.frames, args.size = "7b", 16, [448, 448]
    multiple = FRAME_MULTIPLE[args.preset]
    if args.size[0] % multiple or args.size[1] % multiple:
        raise SystemExit(f"--size must be multiples of {multiple} px for the {args.preset!r} preset, got {args.size}")

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_qwen_folder(args.preset, args.model_dir or Path(tmp) / "model")
        stock = build_task(model_dir, args, "stock", device)
        fast = build_task(model_dir, args, "fast", device)
    gen = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (args.batch, args.frames, *args.size, 3), dtype=torch.uint8, generator=gen)
    half = device.type == "cuda" and args.dtype != "float32"
    autocast = (lambda: torch.autocast("cuda", dtype=getattr(torch, args.dtype))) if half else contextlib.nullcontext

    def run(task: AHDTask) -> torch.Tensor:
        with autocast():
            return task(frames).heatmap

    with torch.inference_mode():
        ref, out = run(stock), run(fast)
        max_diff = float((ref.float() - out.float()).abs().max())
        times = time_interleaved({"stock": lambda: run(stock), "fast": lambda: run(fast)}, args.warmup, args.iters, device)
    stock_s, fast_s = statistics.median(times["stock"]), statistics.median(times["fast"])
    n_frames = args.batch * args.frames
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "autocast": half,
        "preset": args.preset,
        "clip": [args.batch, args.frames, *args.size],
        "grid": list(stock.backbone.feature_grid(args.frames, tuple(args.size))),
        "layers": stock.layers,
        "compile": args.compile,
        "stock_s": stock_s,
        "fast_s": fast_s,
        "stock_frames_per_s": n_frames / stock_s,
        "fast_frames_per_s": n_frames / fast_s,
        "speedup": stock_s / fast_s,
        "speedup_of_min": min(times["stock"]) / min(times["fast"]),
        "load_average": os.getloadavg()[0],
        "heatmap_max_abs_diff": max_diff,
        "heatmap_mean": float(ref.float().mean()),
        "heatmap_std": float(ref.float().std()),
    }
    print(f"device={result['device']} dtype={args.dtype} autocast={half} threads={result['torch_threads']} "
          f"preset={args.preset} clip={args.batch}x{args.frames}x{args.size[0]}x{args.size[1]} grid={result['grid']} "
          f"layers={result['layers']} compile={args.compile}")
    print(f"stock: {stock_s * 1e3:9.1f} ms/call  {result['stock_frames_per_s']:8.1f} frames/s  (min {min(times['stock']) * 1e3:.1f} ms)")
    print(f"fast : {fast_s * 1e3:9.1f} ms/call  {result['fast_frames_per_s']:8.1f} frames/s  (min {min(times['fast']) * 1e3:.1f} ms)")
    print(f"fast/stock speed: {result['speedup']:.2f}x (medians; {result['speedup_of_min']:.2f}x of the fastest calls; "
          f"load average {result['load_average']:.1f})   max |heatmap fast - stock|: {max_diff:.3g} "
          f"(heatmap mean {result['heatmap_mean']:.3f}, std {result['heatmap_std']:.3f})")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
