"""``tvau synth-data --dataset ubnormal|shanghaitech|ucf_crime|xd_violence --out DIR``: write a small synthetic
dataset in a benchmark's native layout.

UBnormal and ShanghaiTech are written by :func:`tvau_lightning.data.synthetic.synth_data_main` (its own options);
UCF-Crime and XD-Violence by :mod:`tvau_lightning.data.synthetic_weak`. This module only routes ``--dataset``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tvau_lightning.data.synthetic import synth_data_main as write_pixel_labelled
from tvau_lightning.data.synthetic_weak import write_synthetic_weak

WEAK_DATASETS = ("ucf_crime", "xd_violence")


def build_weak_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
        prog="tvau synth-data",
        description="Write a small synthetic UCF-Crime or XD-Violence in its native on-disk layout (seeded; an "
        "intruder whose colour and shape name its category, exact ranges; pixel masks in a side folder).",
    )
    parser.add_argument("--dataset", choices=WEAK_DATASETS, required=True)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--videos", type=int, default=None,
                        help="training videos per category (default 2 for UCF-Crime, 1 for XD-Violence)")
    parser.add_argument("--frames", type=int, default=48, help="frames per video (at least 16)")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def synth_data_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tvau synth-data``: 0 on success (argparse exits 2 on bad arguments)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    probe = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    probe.add_argument("--dataset")
    dataset = probe.parse_known_args(argv)[0].dataset
    if dataset not in WEAK_DATASETS:
        if dataset is None and any(a in ("-h", "--help") for a in argv):
            print("--dataset ucf_crime|xd_violence write the weakly labelled layouts: "
                  "tvau synth-data --dataset ucf_crime --help\n")
        return write_pixel_labelled(argv)
    parser = build_weak_parser()
    args = parser.parse_args(argv)
    try:
        data = write_synthetic_weak(args.dataset, args.out, num_frames=args.frames, height=args.height,
                                    width=args.width, seed=args.seed, train_per_category=args.videos)
    except ValueError as error:
        parser.error(str(error))
    where = f", lists in {data.split_dir}" if data.split_dir else f", annotations in {data.annotation_file}"
    print(f"wrote synthetic {data.dataset}: {len(data.videos)} videos of {data.size[0]}x{data.size[1]} in "
          f"{data.root}{where}; pixel masks (never read by the DataModules) in {data.out / 'synthetic_masks'}")
    return 0
