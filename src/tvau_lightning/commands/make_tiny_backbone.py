"""``tvau make-tiny-backbone --family F --out DIR``: a tiny random backbone folder (model + a tokenizer trained
offline) for demos and tests — :func:`tvau_lightning.backbones.tiny.build_tiny_backbone`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tvau_lightning.backbones.tiny import build_tiny_backbone, tiny_families
from tvau_lightning.backbones.types import BackboneError


def make_tiny_backbone_main(argv: Sequence[str] | None = None) -> int:
    """``tvau make-tiny-backbone --family qwen2_5_vl --out DIR [--seed 0]``: write a tiny random model folder."""
    families = tiny_families()
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau make-tiny-backbone",
        description="Write a tiny random backbone (model + tokenizer, built offline) that load_backbone loads; "
        "for demos and tests, not for real results.",
    )
    parser.add_argument("--family", required=True, choices=families, help="backbone family")
    parser.add_argument("--out", required=True, type=Path, help="output folder (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        adapter = build_tiny_backbone(args.family, args.out, seed=args.seed)
    except BackboneError as err:
        print(f"tvau make-tiny-backbone: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {adapter.describe()}")
    return 0
