"""Stage-1 (AHD) training with and without the feature cache: epoch and step time from one run, and their ratio.

Writes a synthetic UBnormal (``tvau_lightning.data.synthetic``) and a random-weight Qwen2.5-VL model folder
(``random_qwen.py``), fills a feature cache of the train split with ``fill_feature_cache`` (the code behind
``tvau cache-features``; its time is printed as the one-off cost), then runs ``Trainer.fit`` for one epoch
(no validation) alternately without (``AHDTask`` runs the frozen tower on every batch) and with
``feature_cache`` (it reads the grids), ``--repeats`` times each. Epoch time is ``on_train_epoch_start`` →
``on_train_epoch_end`` (data loading included); step time is ``on_train_batch_start`` → ``on_train_batch_end``
(forward, loss, backward, optimizer; cache reads included; data loading not). Medians over the repeats.

    python benchmarks/bench_stage1_cache.py                                   # CPU, 'small' tower, 16×224² clips
    python benchmarks/bench_stage1_cache.py --real-7b-shapes --device cuda --dtype bfloat16 --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_qwen_vision import cpu_name
from lightning.pytorch import Callback, Trainer
from random_qwen import FRAME_MULTIPLE, PRESETS, random_qwen_folder

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.synthetic import write_synthetic_ubnormal
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.modules.feature_extraction import fill_feature_cache
from tvau_lightning.tasks.ahd import AHDTask


class TrainTimer(Callback):
    """Wall time of the training epoch and of each training step (synchronising CUDA at both ends)."""

    def __init__(self) -> None:
        self.epoch_s = 0.0
        self.steps: list[float] = []

    @staticmethod
    def _now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch = self._now(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_s = self._now(pl_module) - self._epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(self._now(pl_module) - self._step)


def run_epoch(args: argparse.Namespace, model_dir: Path, dm: UBnormalDataModule, cache: Path | None) -> TrainTimer:
    config = BackboneConfig(path=str(model_dir), dtype=args.dtype, vision_path=args.vision_path,
                            compile_vision=args.compile, attn_implementation="sdpa")
    torch.manual_seed(0)
    task = AHDTask(config, log_heatmaps=0, feature_cache=None if cache is None else str(cache))
    timer = TrainTimer()
    trainer = Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                      precision=args.precision, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[timer])
    trainer.fit(task, datamodule=dm)
    return timer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="random tower (random_qwen.py)")
    parser.add_argument("--real-7b-shapes", action="store_true", help="= --preset 7b --frame-size 448 448 --clip-len 16")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--videos", type=int, default=2, help="videos per split of the synthetic UBnormal")
    parser.add_argument("--video-frames", type=int, default=48, help="frames per synthetic video")
    parser.add_argument("--source-size", type=int, nargs=2, default=[120, 180], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="backbone dtype")
    parser.add_argument("--precision", default="32-true", help="Trainer precision (bf16-mixed on a GPU)")
    parser.add_argument("--vision-path", choices=["stock", "fast"], default="stock", help="of the uncached run")
    parser.add_argument("--compile", action="store_true", help="compile_vision (with --vision-path fast)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="epochs per mode (alternating)")
    parser.add_argument("--model-dir", type=Path, default=None, help="write / reuse the random model folder here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.real_7b_shapes:
        args.preset, args.frame_size, args.clip_len = "7b", [448, 448], 16
    multiple = FRAME_MULTIPLE[args.preset]
    if args.frame_size[0] % multiple or args.frame_size[1] % multiple:
        raise SystemExit(f"--frame-size must be multiples of {multiple} px for {args.preset!r}, got {args.frame_size}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = random_qwen_folder(args.preset, args.model_dir or tmp / "model")
        data = write_synthetic_ubnormal(tmp / "ubnormal", videos_per_split=args.videos, abnormal_per_split=1,
                                        num_frames=args.video_frames, height=args.source_size[0],
                                        width=args.source_size[1])
        dm = UBnormalDataModule(str(data.root), str(data.split_dir), clip_len=args.clip_len,
                                frame_size=tuple(args.frame_size), num_workers=args.num_workers)
        filler_cfg = BackboneConfig(path=str(model_dir), dtype=args.dtype, vision_path=args.vision_path,
                                    compile_vision=args.compile, attn_implementation="sdpa")
        filler = AHDTask(filler_cfg, log_heatmaps=0).to(args.device).eval()
        tick = time.perf_counter()
        with torch.inference_mode():
            report = fill_feature_cache(filler.heatmap_model, dm, tmp / "cache", splits=["train"])
        fill_s = time.perf_counter() - tick
        del filler
        cache_bytes = sum(p.stat().st_size for p in (tmp / "cache").rglob("*.safetensors"))
        runs: dict[str, list[TrainTimer]] = {"uncached": [], "cached": []}
        for _ in range(args.repeats):
            runs["uncached"].append(run_epoch(args, model_dir, dm, None))
            runs["cached"].append(run_epoch(args, model_dir, dm, tmp / "cache"))

    clips = report.splits["train"]["clips"]
    epoch = {m: statistics.median(t.epoch_s for t in r) for m, r in runs.items()}
    step = {m: statistics.median(s for t in r for s in t.steps) for m, r in runs.items()}
    device = torch.device(args.device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "preset": args.preset,
        "dtype": args.dtype,
        "precision": args.precision,
        "vision_path_uncached": args.vision_path,
        "compile": args.compile,
        "clip": [args.clip_len, *args.frame_size],
        "train_clips": clips,
        "storage_dtype": report.storage_dtype,
        "cache_fill_s": fill_s,
        "cache_mb": cache_bytes / 2**20,
        "epoch_s": epoch,
        "step_ms": {m: v * 1e3 for m, v in step.items()},
        "epoch_ratio": epoch["uncached"] / epoch["cached"],
        "step_ratio": step["uncached"] / step["cached"],
        "epochs_per_mode": args.repeats,
    }
    print(f"device={result['device']} threads={result['torch_threads']} preset={args.preset} dtype={args.dtype} "
          f"precision={args.precision} vision_path={args.vision_path} compile={args.compile} "
          f"clips={clips}×{args.clip_len}×{args.frame_size[0]}×{args.frame_size[1]} num_workers={args.num_workers}")
    print(f"cache fill (train split, once): {fill_s:.2f} s, {result['cache_mb']:.1f} MB ({report.storage_dtype})")
    for m in ("uncached", "cached"):
        print(f"{m:>8}: epoch {epoch[m]:8.2f} s   step {step[m] * 1e3:9.1f} ms (median of {args.repeats} epochs)")
    print(f"uncached / cached: epoch {result['epoch_ratio']:.2f}x   step {result['step_ratio']:.2f}x")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
