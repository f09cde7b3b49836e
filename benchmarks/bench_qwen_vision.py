"""Frames/s of the Qwen2.5-VL vision tower: the stock transformers module vs the batched-windows fast path.

Builds a vision tower with random weights (no download) at the shapes given (defaults are small enough for a
CPU; ``--real-7b-shapes`` is Qwen2.5-VL-7B's tower: depth 32, hidden 1280, 16 heads, MLP 3420, window 112,
patch 14, full attention in blocks 7/15/23/31 (0-based), merger to 3584), times a full forward (merger
included) of both paths in one run — warm-up calls first, then ``--iters`` timed calls, synchronising on
CUDA; the two paths take turns in every iteration — and prints frames/s of each, the ratio, and the largest difference between their merger outputs.

    python benchmarks/bench_qwen_vision.py                                   # CPU, small tower
    python benchmarks/bench_qwen_vision.py --real-7b-shapes --device cuda --dtype bfloat16 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.backbones.qwen2_5_vl_fast import FastQwen2_5VisionTower

REAL_7B = {
    "depth": 32,
    "hidden": 1280,
    "heads": 16,
    "intermediate": 3420,
    "window": 112,
    "patch": 14,
    "fullatt": [7, 15, 23, 31],
    "out_hidden": 3584,
    "frames": 16,
    "size": [448, 448],
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_tower(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    cfg = Qwen2_5_VLVisionConfig(
        depth=args.depth,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_heads=args.heads,
        patch_size=args.patch,
        window_size=args.window,
        out_hidden_size=args.out_hidden,
        fullatt_block_indexes=args.fullatt,
    )
    cfg._attn_implementation = args.attn_implementation
    torch.manual_seed(0)
    tower = Qwen2_5_VisionTransformerPretrainedModel(cfg)
    return tower.to(device=device, dtype=dtype).eval().requires_grad_(False)


def clip_inputs(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flattened patches ``(N, 3·2·p²)`` and ``grid_thw`` ``(B, 3)`` for ``--batch`` clips."""
    h, w = args.size
    unit = args.patch * 2
    if h % unit or w % unit or args.frames % 2:
        raise SystemExit(f"--size {h} {w} must be multiples of {unit} (patch·merge) and --frames even, got "
                         f"{args.size} / {args.frames}")
    grid = torch.tensor([[args.frames // 2, h // args.patch, w // args.patch]] * args.batch, device=device)
    n = int(grid.prod(-1).sum())
    gen = torch.Generator().manual_seed(1)
    px = torch.randn(n, 3 * 2 * args.patch * args.patch, generator=gen).to(device=device, dtype=dtype)
    return px, grid


def time_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int, iters: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function after ``warmup`` untimed calls; the functions take turns in every
    iteration, so a change in machine load (shared CPUs) hits them alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-7b-shapes", action="store_true", help="Qwen2.5-VL-7B's tower, 16×448² clips")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--window", type=int, default=112, help="window side in pixels (112 → 4×4 merged units)")
    parser.add_argument("--patch", type=int, default=14)
    parser.add_argument("--fullatt", type=int, nargs="*", default=[3, 7], help="0-based full-attention blocks")
    parser.add_argument("--out-hidden", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (2 per temporal step)")
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=1, help="clips per forward")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--attn-implementation", default="sdpa", help="stock tower's attention (sdpa, eager)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path's blocks")
    parser.add_argument("--compile-stock", action="store_true", help="also torch.compile the stock tower")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.real_7b_shapes:
        for key, value in REAL_7B.items():
            setattr(args, key, value)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    tower = build_tower(args, device, dtype)
    fast = FastQwen2_5VisionTower(tower, compile=args.compile)
    px, grid = clip_inputs(args, device, dtype)
    frames = args.frames * args.batch
    stock_fn = torch.compile(tower) if args.compile_stock else tower

    with torch.inference_mode():
        ref = stock_fn(px, grid).pooler_output
        out = fast(px, grid).pooler_output
        max_abs = float((out.float() - ref.float()).abs().max())
        scale = float(ref.float().abs().max())
        times = time_interleaved(
            {"stock": lambda: stock_fn(px, grid), "fast": lambda: fast(px, grid)}, args.warmup, args.iters, device
        )
    t_stock, t_fast = times["stock"], times["fast"]
    plan = fast.plan(grid, device)
    stock_s, fast_s = statistics.median(t_stock), statistics.median(t_fast)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "shapes": {k: getattr(args, k) for k in ("depth", "hidden", "heads", "intermediate", "window", "patch",
                                                  "fullatt", "out_hidden", "frames", "size", "batch")},
        "tokens": int(px.shape[0]),
        "window_groups": [(g.length, g.count) for g in plan.window_layout.groups],
        "compile": args.compile,
        "compile_stock": args.compile_stock,
        "stock_s": stock_s,
        "fast_s": fast_s,
        "stock_frames_per_s": frames / stock_s,
        "fast_frames_per_s": frames / fast_s,
        "speedup": stock_s / fast_s,
        "max_abs_diff": max_abs,
        "max_abs_stock": scale,
    }
    print(f"device={result['device']} dtype={args.dtype} threads={result['torch_threads']} tokens={result['tokens']} "
          f"windows(length×count)={result['window_groups']} compile={args.compile}")
    print(f"stock: {stock_s * 1e3:9.1f} ms/call  {result['stock_frames_per_s']:8.1f} frames/s  "
          f"(min {min(t_stock) * 1e3:.1f} ms)")
    print(f"fast : {fast_s * 1e3:9.1f} ms/call  {result['fast_frames_per_s']:8.1f} frames/s  "
          f"(min {min(t_fast) * 1e3:.1f} ms)")
    print(f"fast/stock speed: {result['speedup']:.2f}x   max |fast - stock| of merger output: {max_abs:.3g} "
          f"(max |stock| {scale:.3g})")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
