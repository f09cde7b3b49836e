"""``tvau export --ckpt CKPT --out DIR``: a trained stage-1 or stage-2 checkpoint as a shareable folder
(``config.json`` + ``model.safetensors``; stage 2 adds ``ahd/`` and a peft ``adapter/``), loadable by every
tvau command that takes ``--ckpt`` and by ``AnomalyHeatmapModel.from_pretrained`` — see
:mod:`tvau_lightning.inference.export`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tvau_lightning.backbones.types import BackboneError
from tvau_lightning.checkpoints import CheckpointError
from tvau_lightning.commands.errors import command_error
from tvau_lightning.inference.export import export_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="tvau export", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--ckpt", required=True, help="a stage-1 (AHD) or stage-2 (RAE) checkpoint written by tvau fit")
    parser.add_argument("--out", required=True, help="the export folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    return parser


def export_main(argv: Sequence[str]) -> int:
    """Entry point of ``tvau export``: 0 on success, 1 with a one-line error on stderr."""
    args = build_parser().parse_args(list(argv))
    try:
        out = export_checkpoint(args.ckpt, args.out, overwrite=args.overwrite)
    except (CheckpointError, BackboneError, FileExistsError, FileNotFoundError, ValueError) as error:
        return command_error("export", error)
    print(f"exported {args.ckpt} to {out}: {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))}")
    return 0
