"""Argparse types for numeric options: a bad value is one clear line naming the option, before any work.

``parser.add_argument("--fps", type=positive_float)`` → ``tvau analyze: error: argument --fps: must be a
finite number > 0, got 'nan'``. Argparse adds the option's name; the type says what is wrong and what is
accepted. YAML values that bypass argparse can be checked with :func:`check_number`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "add_dialogue_sampling_options",
    "add_model_options",
    "check_number",
    "dialogue_overrides",
    "fraction",
    "nonnegative_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "unit_interval",
]


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (frame rates, timeouts, sizes in seconds)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (intervals, backoffs, temperatures)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (fractions, thresholds)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a held-out fraction)."""
    value = _float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (sizes, counts, batch sizes)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def check_number(name: str, value: object, kind: Callable[[str], float | int]) -> float | int:
    """Check a value that did not come through argparse (a YAML config) with one of the types above;
    raises ``ValueError("<name>: must be …")``."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        return kind(str(value))
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{name}: {err}") from None


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that runs a trained model shares (``analyze``, ``chat``), spelled once:
    where the backbone is, how the video is read, and where and in which precision the model runs."""
    parser.add_argument("--backbone", help="backbone folder, overriding the path stored in the checkpoint")
    parser.add_argument("--frame-size", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="AHD frame size (default: the one the stage-1 checkpoint was trained with)")
    parser.add_argument("--clip-len", type=positive_int, help="AHD frames per clip (default: the checkpoint's)")
    parser.add_argument("--fps", type=positive_float,
                        help="frame rate of a frame folder (default 24), or to override a file's")
    parser.add_argument("--video-backend", default="auto", choices=("auto", "decord", "pyav", "torchcodec"),
                        help="decoder of video files (default auto: decord if installed, except .avi files; else PyAV)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto",
                        help="backbone dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    parser.add_argument("--force-backbone", action="store_true",
                        help="run a checkpoint on a backbone other than the one it records (family or vision "
                             "architecture differ); its heatmaps are then likely meaningless")


def add_dialogue_sampling_options(parser: argparse.ArgumentParser) -> None:
    """How a stage-2 model's frames are taken from the video (``chat``, ``analyze --rae-ckpt``). Each defaults to
    the RAE checkpoint's dialogue DataModule; a value given here overrides it with one warning."""
    group = parser.add_argument_group(
        "dialogue sampling", "default: as the RAE checkpoint's DataModule sampled its training clips; a value given "
        "here overrides it (with a warning)")
    group.add_argument("--sample-fps", type=positive_float,
                       help="frames per second taken from the video (replaces a stride)")
    group.add_argument("--frame-stride", type=positive_int, help="every this-many-th frame (replaces a rate)")
    group.add_argument("--num-frames", type=positive_int,
                       help="this many frames spread over the video (without --sample-fps/--frame-stride: no rate)")
    group.add_argument("--min-frames", type=positive_int, help="at a rate: a shorter video repeats its last frame")
    group.add_argument("--max-frames", type=positive_int, help="at a rate: at most this many frames (the first ones)")
    group.add_argument("--rae-frame-size", type=positive_int, nargs=2, metavar=("H", "W"),
                       help="size the dialogue's frames are resized to")


def dialogue_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The dialogue sampling values given on the command line (``None`` = not given), as
    ``inference.session.SAMPLING_FIELDS`` names them."""
    return {"sample_fps": args.sample_fps, "frame_stride": args.frame_stride, "num_frames": args.num_frames,
            "min_frames": args.min_frames, "max_frames": args.max_frames,
            "frame_size": tuple(args.rae_frame_size) if args.rae_frame_size else None}
