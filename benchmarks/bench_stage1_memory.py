"""Memory of stage-1 (AHD) training with a vision-only Qwen2.5-VL backbone: parameters and, on a GPU, the peak.

Two parts, from one run:

1. **Parameter counts of the released Qwen2.5-VL-7B shapes**, exact, from modules built on the ``meta``
   device (no memory, no weights): the full model (what a plain ``from_pretrained`` would hold), the
   vision-only model stage 1 loads (vision tower + merger + input embedding table + final norm), and the AHD
   head with its gradients and AdamW state (fp32, 16 bytes per parameter).
2. **Measured**: a random-weight model folder of ``--preset`` (``random_qwen.py``) is loaded vision-only by
   ``AHDTask`` (the real loading path) and its parameter bytes are summed. On CUDA (``--device cuda``) the
   task moves to the GPU and ``torch.cuda.max_memory_allocated`` is read after loading and over two AHD
   training steps (forward under autocast, loss, backward, AdamW step) on one synthetic clip, for the stock
   tower, ``vision_path: fast`` and cached features. With ``--real-vocab`` (default for the 7B preset) the
   stand-in 1,024-row embedding table is replaced by one of the released 152,064 × 3,584 size first, so the
   figure is the real model's.

    python benchmarks/bench_stage1_memory.py                                     # CPU: counts + parameter bytes
    python benchmarks/bench_stage1_memory.py --real-7b-shapes --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import torch
from bench_qwen_vision import cpu_name
from random_qwen import FRAME_MULTIPLE, PRESETS, random_qwen_folder

from tvau_lightning.atomic import write_text_atomic
from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.feature_cache import feature_key
from tvau_lightning.data.types import ClipBatch
from tvau_lightning.modules.ahd import AnomalyHeatmapDecoder
from tvau_lightning.tasks.ahd import AHDTask

GIB = 2**30
#: Qwen/Qwen2.5-VL-7B-Instruct's config.json (the shapes that matter for memory)
QWEN_7B = {
    "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                    "max_position_embeddings": 128000,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
    "tie_word_embeddings": False,
}
REAL_VOCAB = 152064


def released_7b_counts() -> dict[str, int]:
    """Exact parameter counts of Qwen2.5-VL-7B's modules (built on the meta device)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel

    with torch.device("meta"):
        full = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN_7B))
        text = dict(QWEN_7B["text_config"], num_hidden_layers=0, layer_types=[])
        vision_only = Qwen2_5_VLModel(Qwen2_5_VLConfig(**{**QWEN_7B, "text_config": text}))
        ahd = AnomalyHeatmapDecoder([QWEN_7B["vision_config"]["hidden_size"]] * 4, QWEN_7B["text_config"]["hidden_size"])

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {
        "full_model": count(full),
        "vision_only_model": count(vision_only),
        "vision_tower_with_merger": count(vision_only.visual),
        "merger": count(vision_only.visual.merger),
        "input_embeddings": vision_only.language_model.embed_tokens.weight.numel(),
        "ahd_head_4_layers": count(ahd),
    }


def synthetic_batch(frames: int, size: tuple[int, int], device: torch.device) -> ClipBatch:
    gen = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (1, frames, *size, 3), dtype=torch.uint8, generator=gen)
    masks = torch.zeros(1, frames, *size, dtype=torch.bool)
    masks[:, :, size[0] // 4: size[0] // 2, size[1] // 4: size[1] // 2] = True
    index = torch.arange(frames)[None]
    return ClipBatch(frames=video, masks=masks.to(device), frame_labels=torch.ones(1, frames, dtype=torch.long, device=device),
                     frame_index=index.to(device), valid=torch.ones(1, frames, dtype=torch.bool, device=device),
                     video_id=["synthetic"], fps=torch.tensor([30.0]), original_size=torch.tensor([list(size)]))


def peak_training_memory(task: AHDTask, batch: ClipBatch, mode: str, dtype: torch.dtype) -> dict[str, float]:
    """Peak GPU memory (GiB) over two AHD training steps in ``mode`` (stock / fast / cached)."""
    device = task.device
    task.backbone.config.vision_path = "fast" if mode == "fast" else "stock"
    batch.extras = {}
    if mode == "cached":  # the grids a cache would hand over, in the storage dtype
        with torch.no_grad():
            features, _ = task.vision_features(batch.frames)
        batch.extras = {feature_key(i): f.to(dtype).cpu() for i, f in zip(task.layers, features)}
        del features
    task.ahd.zero_grad(set_to_none=True)
    optimizer = torch.optim.AdamW(task.ahd.parameters(), lr=1e-4)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    autocast = torch.autocast("cuda", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    for _ in range(2):
        with autocast:
            out = task.forward_batch(batch)
            loss = task.loss(out, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del optimizer
    return {"before_step_gib": before / GIB, "peak_gib": peak / GIB, "step_extra_gib": (peak - before) / GIB}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="random tower (random_qwen.py)")
    parser.add_argument("--real-7b-shapes", action="store_true", help="= --preset 7b --frames 16 --size 448 448")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--real-vocab", action=argparse.BooleanOptionalAction, default=None,
                        help="replace the stand-in embedding table by a 152,064-row one (default: on for 7b)")
    parser.add_argument("--model-dir", type=Path, default=None, help="write / reuse the random model folder here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.real_7b_shapes:
        args.preset, args.frames, args.size = "7b", 16, [448, 448]
    if args.size[0] % FRAME_MULTIPLE[args.preset] or args.size[1] % FRAME_MULTIPLE[args.preset]:
        raise SystemExit(f"--size must be multiples of {FRAME_MULTIPLE[args.preset]} px for {args.preset!r}")
    real_vocab = args.preset == "7b" if args.real_vocab is None else args.real_vocab
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

    counts = released_7b_counts()
    bf16 = 2
    released = {
        "params": counts,
        "full_model_bf16_gib": counts["full_model"] * bf16 / GIB,
        "vision_only_bf16_gib": counts["vision_only_model"] * bf16 / GIB,
        "vision_tower_bf16_gib": counts["vision_tower_with_merger"] * bf16 / GIB,
        "input_embeddings_bf16_gib": counts["input_embeddings"] * bf16 / GIB,
        "ahd_fp32_weights_grads_adamw_gib": counts["ahd_head_4_layers"] * 16 / GIB,
    }

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_qwen_folder(args.preset, args.model_dir or Path(tmp) / "model")
        task = AHDTask(BackboneConfig(path=str(model_dir), dtype=args.dtype, attn_implementation="sdpa"), log_heatmaps=0)
    backbone = task.backbone
    if real_vocab:  # the released table's size (the prototypes were already computed from the stand-in)
        width = backbone.text_hidden_size
        backbone.core.language_model.embed_tokens = torch.nn.Embedding(REAL_VOCAB, width, dtype=dtype)
    measured = {
        "backbone_param_gib": sum(p.numel() * p.element_size() for p in backbone.parameters()) / GIB,
        "backbone_params": sum(p.numel() for p in backbone.parameters()),
        "has_decoder_layers": any(".layers." in n for n, _ in backbone.model.named_parameters()),
        "ahd_params": sum(p.numel() for p in task.ahd.parameters()),
        "embedding_rows": backbone.get_input_embeddings().weight.shape[0],
    }
    gpu = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        task.to(device).eval()
        torch.cuda.synchronize(device)
        gpu = {"after_load_gib": torch.cuda.memory_allocated(device) / GIB}
        batch = synthetic_batch(args.frames, tuple(args.size), device)
        for mode in ("stock", "fast", "cached"):
            gpu[mode] = peak_training_memory(task, batch, mode, dtype)

    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "preset": args.preset,
        "dtype": args.dtype,
        "clip": [1, args.frames, *args.size],
        "real_vocab": real_vocab,
        "released_7b": released,
        "measured": measured,
        "gpu_peak": gpu,
    }
    c = counts
    print(f"Qwen2.5-VL-7B (meta-device counts): full model {c['full_model'] / 1e9:.3f} B params "
          f"({released['full_model_bf16_gib']:.2f} GiB bf16); vision-only {c['vision_only_model'] / 1e6:.1f} M "
          f"({released['vision_only_bf16_gib']:.2f} GiB bf16) = tower+merger {c['vision_tower_with_merger'] / 1e6:.1f} M "
          f"+ embeddings {c['input_embeddings'] / 1e6:.1f} M + norm; AHD head {c['ahd_head_4_layers'] / 1e6:.1f} M "
          f"({released['ahd_fp32_weights_grads_adamw_gib']:.2f} GiB with fp32 grads + AdamW)")
    print(f"measured ({args.preset}, {args.dtype}, vision-only load): backbone {measured['backbone_params'] / 1e6:.2f} M "
          f"params = {measured['backbone_param_gib'] * 1024:.1f} MiB, decoder layers loaded: "
          f"{measured['has_decoder_layers']}, embedding rows {measured['embedding_rows']}, "
          f"AHD {measured['ahd_params'] / 1e6:.2f} M params")
    if gpu is None:
        print("GPU peak: pending (run with --device cuda)")
    else:
        print(f"GPU after load: {gpu['after_load_gib']:.2f} GiB")
        for mode in ("stock", "fast", "cached"):
            g = gpu[mode]
            print(f"  training step peak, {mode:>6}: {g['peak_gib']:.2f} GiB (+{g['step_extra_gib']:.2f} GiB over "
                  f"{g['before_step_gib']:.2f} GiB) for a 1×{args.frames}×{args.size[0]}×{args.size[1]} clip")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
