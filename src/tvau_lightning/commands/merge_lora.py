"""``tvau merge-lora --ckpt RAE.ckpt --out DIR``: fold a stage-2 checkpoint's LoRA into a self-contained model
folder (:func:`tvau_lightning.inference.export.merge_lora_checkpoint`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tvau_lightning.backbones.types import BackboneError
from tvau_lightning.checkpoints import CheckpointError
from tvau_lightning.commands.errors import command_error
from tvau_lightning.inference.export import merge_lora_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="tvau merge-lora",
                                     description="Merge a stage-2 checkpoint's LoRA into a self-contained HF folder.")
    parser.add_argument("--ckpt", required=True, help="RAETask checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="output model folder (replaced atomically if it exists)")
    return parser


def merge_lora_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau merge-lora``: 0 on success, 1 with a one-line error on stderr."""
    args = build_parser().parse_args(list(argv))
    try:
        out = merge_lora_checkpoint(args.ckpt, args.out)
    except (CheckpointError, BackboneError, FileExistsError, FileNotFoundError, ValueError) as error:
        return command_error("merge-lora", error)
    print(f"merged model written to {out}")
    return 0
