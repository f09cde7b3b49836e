"""Random-weight Qwen2.5-VL model folders for the stage-1 benchmarks (no download, no real weights).

Presets (``--preset`` / ``--real-7b-shapes`` of the benchmarks):

* ``tiny`` — the library's tiny test model (4 blocks of width 32, 4-px patches, 32-px windows); frames must be
  multiples of 8 px.
* ``small`` — a CPU-sized tower with the released geometry: 8 blocks, width 256, 4 heads, MLP 512, 14-px
  patches, 112-px windows, full attention in blocks 4 and 8, LLM width D = 512.
* ``7b`` — Qwen2.5-VL-7B's vision tower (32 blocks, width 1280, 16 heads, MLP 3420, 14-px patches, 112-px
  windows, full attention in blocks 8/16/24/32, merger to D = 3584) with a one-layer stand-in LLM of the 7B
  width (28 heads, 4 KV heads) and the tiny tokenizer's 1,024-token vocabulary. Stage 1 loads it vision-only,
  so only the tower, the merger and the embedding table (1,024 × 3,584 here; 152,064 × 3,584 in the released
  model — see ``bench_stage1_memory.py``) are materialised.

The folder is written by :func:`tvau_lightning.backbones.tiny.build_tiny_backbone` (fp32 safetensors + tokenizer
+ preprocessor config) and read back through the library's real loading path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tvau_lightning.backbones.tiny import build_tiny_backbone

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": {
        "vision_depth": 8, "vision_hidden_size": 256, "vision_heads": 4, "vision_intermediate_size": 512,
        "patch_size": 14, "window_size": 112, "fullatt_block_indexes": [3, 7],
        "text_hidden_size": 512, "text_layers": 1, "text_heads": 8, "text_kv_heads": 2,
        "text_intermediate_size": 256, "initializer_range": 0.02,
    },
    "7b": {
        "vision_depth": 32, "vision_hidden_size": 1280, "vision_heads": 16, "vision_intermediate_size": 3420,
        "patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
        "text_hidden_size": 3584, "text_layers": 1, "text_heads": 28, "text_kv_heads": 4,
        "text_intermediate_size": 256, "initializer_range": 0.02,
    },
}
#: the pixel multiple each preset's frames need (patch size · 2)
FRAME_MULTIPLE = {"tiny": 8, "small": 28, "7b": 28}


def random_qwen_folder(preset: str, out_dir: Path, *, seed: int = 0) -> Path:
    """``out_dir`` holding a random Qwen2.5-VL model of ``preset``; an existing model folder there is reused
    (pass the same ``--model-dir`` to several benchmarks to write the 7B-shaped tower once)."""
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        vision = json.loads((out_dir / "config.json").read_text()).get("vision_config", {})
        want = PRESETS[preset]
        if want and (vision.get("depth"), vision.get("hidden_size")) != (want["vision_depth"], want["vision_hidden_size"]):
            raise SystemExit(f"{out_dir} holds a tower of depth {vision.get('depth')}, width {vision.get('hidden_size')}, "
                             f"not the {preset!r} preset; pass another --model-dir")
        return out_dir
    build_tiny_backbone("qwen2_5_vl", out_dir, seed=seed, **PRESETS[preset])
    return out_dir
