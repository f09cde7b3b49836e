"""The stage-1 benchmarks that decide, in one run, each as a ratio against the path it replaces.

Runs, one after the other (each in its own process, figures written as JSON and summarised at the end):

1. Qwen2.5-VL tower, stock vs fast, eager (``bench_qwen_vision.py``);
2. the same with the fast path compiled (``--compile``);
3. the AHD heatmap path (preprocess → tower → layers → AHD), stock vs fast (``bench_ahd_heatmap_path.py``);
4. the evaluation data path at a 1280×720 source, frames/s per core against the interleaved loader of before
   issue 17 (its reader replayed): the default, videos decoded by threads of the main process
   (``eval_loading: threads``); one sequential pass per video in worker processes (resize in the workers), the same decoding
   at the source size with the resize on the model's device (``resize_on: device``; the row with that resize
   done on this CPU, and the load-independent frames per CPU-second, are printed too), and the best path: the
   workers ship YUV 4:2:0, which the device converts and resizes (``resize_on: device_yuv420``; with that
   conversion done on this CPU too) (``bench_evaluation_data.py --backend pyav``);
5. a cached epoch vs reading its cache files, batches of 1 and 4 clips (``bench_cached_epoch.py``).

    python benchmarks/bench_stage1_decide.py                 # CPU: small random tower, 16×224² clips
    python benchmarks/bench_stage1_decide.py --gpu           # GPU: Qwen2.5-VL-7B shapes, 16×448², bf16
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], out: Path) -> dict:
    command = [sys.executable, str(HERE / script), *args, "--json", str(out)]
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=HERE)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="Qwen2.5-VL-7B shapes on CUDA in bf16")
    parser.add_argument("--model-dir", default="/tmp/qwen7b_random", help="(--gpu) the random 7B-shaped folder")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tower", "compiled", "ahd", "data", "cache"])
    parser.add_argument("--json", type=Path, default=None, help="also write all figures to this JSON file")
    args = parser.parse_args()

    tower = ["--iters", "10", "--warmup", "2"]
    ahd = ["--iters", "10", "--warmup", "2"]
    if args.gpu:
        tower = ["--real-7b-shapes", "--device", "cuda", "--dtype", "bfloat16", "--iters", "20", "--warmup", "3"]
        ahd = [*tower, "--model-dir", args.model_dir]
    rows: list[tuple[str, str, str, float]] = []
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_decide_") as tmp:
        tmp = Path(tmp)
        if "tower" not in args.skip:
            r = figures["tower"] = run("bench_qwen_vision.py", tower, tmp / "tower.json")
            rows.append(("tower, fast / stock, eager", f"{r['stock_frames_per_s']:.1f} frames/s",
                         f"{r['fast_frames_per_s']:.1f} frames/s", r["speedup"]))
        if "compiled" not in args.skip:
            r = figures["compiled"] = run("bench_qwen_vision.py", [*tower, "--compile"], tmp / "compiled.json")
            rows.append(("tower, fast compiled / stock", f"{r['stock_frames_per_s']:.1f} frames/s",
                         f"{r['fast_frames_per_s']:.1f} frames/s", r["speedup"]))
        if "ahd" not in args.skip:
            r = figures["ahd"] = run("bench_ahd_heatmap_path.py", ahd, tmp / "ahd.json")
            rows.append(("AHD heatmap path, fast / stock", f"{r['stock_frames_per_s']:.1f} frames/s",
                         f"{r['fast_frames_per_s']:.1f} frames/s", r["speedup"]))
        if "data" not in args.skip:
            r = figures["data"] = run("bench_evaluation_data.py", ["--backend", "pyav"], tmp / "data.json")
            before = f"{r['today_frames_per_s_per_core']:.1f} frames/s"
            rows.append(("evaluation data, threads (the default) / today's interleaved, per core (≥ 2 wanted)",
                         before, f"{r['threads_frames_per_s_per_core']:.1f} frames/s", r["ratio_threads"]))
            rows.append(("  the same per CPU-second (load-independent)", f"{r['today_frames_per_cpu_s']:.1f} /CPU-s",
                         f"{r['threads_frames_per_cpu_s']:.1f} /CPU-s", r["ratio_threads_per_cpu_s"]))
            rows.append(("evaluation data, sequential in worker processes / today's interleaved, per core", before,
                         f"{r['sequential_frames_per_s_per_core']:.1f} frames/s", r["ratio"]))
            # (path, its ratio key, what moves to the device, the key of that work done on this CPU)
            for path, ratio, title, on_cpu, cpu_key in (
                ("sequential_device", "ratio_device", "device resize", "that resize", "with_cpu_resize"),
                ("sequential_device_yuv", "ratio_device_yuv", "YUV to the device",
                 "the YUV → RGB conversion and resize", "with_cpu_convert"),
            ):
                rows.append((f"evaluation data, worker processes, {title} / today's interleaved, per core", before,
                             f"{r[f'{path}_frames_per_s_per_core']:.1f} frames/s", r[ratio]))
                rows.append((f"  the same with {on_cpu} on this CPU", before,
                             f"{r[f'{path}_{cpu_key}_frames_per_s_per_core']:.1f} frames/s", r[f"{ratio}_{cpu_key}"]))
                rows.append(("  the same per CPU-second (load-independent)", f"{r['today_frames_per_cpu_s']:.1f} /CPU-s",
                             f"{r[f'{path}_frames_per_cpu_s']:.1f} /CPU-s",
                             r[f"ratio_cpu_second_{path}_vs_today"]))
            rows.append(("  device resize in the main process (no worker, one core)", before,
                         f"{r['main_process_device_frames_per_s_per_core']:.1f} frames/s",
                         r["ratio_core_main_process_device_vs_today"]))
        if "cache" not in args.skip:
            for batch_size in (1, 4):  # the default reader (auto: mapped for one clip on a CPU, else read)
                r = figures[f"cache_batch{batch_size}"] = run(
                    "bench_cached_epoch.py", ["--batch-size", str(batch_size)], tmp / f"cache{batch_size}.json")
                rows.append((f"cached epoch, batch {batch_size}, + consumer copy / reading its files (≤ 1.5 wanted)",
                             f"{statistics.median(r['times_s']['files']):.3f} s files",
                             f"{statistics.median(r['times_s']['cached_epoch']):.3f} s epoch",
                             r["ratio"]))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nstage-1 benchmarks, {stamp}{' (GPU)' if args.gpu else ' (CPU)'}")
    width = max(len(r[0]) for r in rows) if rows else 10
    for name, before, after, ratio in rows:
        print(f"  {name:{width}s}  {before:>20s}  {after:>20s}  {ratio:6.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"date": stamp, "gpu": args.gpu, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
