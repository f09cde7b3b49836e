"""The ``tvau`` command line.

``tvau fit|validate|test|predict`` are LightningCLI subcommands (torchgeo style: the task and the
DataModule are chosen by ``class_path`` in YAML configs, e.g. ``tvau fit --config configs/ahd.yaml``).
The other subcommands are tools for people (make demo data, analyze a video, chat, …); each lives in the
module that owns the concern and is imported only when called, so ``tvau --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from tvau_lightning.commands.errors import one_line

LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a task (AHD stage 1, RAE stage 2) from YAML configs",
    "validate": "run the validation loop (metrics over whole videos)",
    "test": "run the test loop on a checkpoint (--ckpt_path)",
    "predict": "write predictions (heatmaps, answers) for a DataModule's predict split",
}

#: people's commands: name -> ("module:function", one-line help). The function takes ``argv`` and
#: returns an exit code.
TOOL_COMMANDS: dict[str, tuple[str, str]] = {}


def register_tool(name: str, target: str, help_text: str) -> None:
    """Add a people's command ``tvau NAME`` implemented by ``target`` (``module:function``)."""
    TOOL_COMMANDS[name] = (target, help_text)


def _overview() -> str:
    from tvau_lightning import __version__

    lines = [
        f"tvau {__version__} — fine-grained video anomaly understanding with LVLMs (T-VAU)",
        "",
        "usage: tvau <command> [options]      (tvau <command> --help for its options)",
        "",
        "Training and evaluation (LightningCLI):",
    ]
    width = max(len(n) for n in [*LIGHTNING_COMMANDS, *TOOL_COMMANDS]) + 2
    lines += [f"  {name:<{width}}{text}" for name, text in LIGHTNING_COMMANDS.items()]
    if TOOL_COMMANDS:
        lines += ["", "Tools:"]
        lines += [f"  {name:<{width}}{text}" for name, (_, text) in sorted(TOOL_COMMANDS.items())]
    lines += [
        "",
        "Options spelled the same in every tool: --overwrite (replace an earlier output of tvau's own, never",
        "another folder), --no-progress, --device auto|cpu|cuda[:N], --dtype auto|float32|bfloat16|float16,",
        "--force-backbone (run a checkpoint on a backbone it was not trained on), --verbose (the full traceback",
        "instead of the one-line error). LightningCLI commands take their options with dots/underscores",
        "(--model.init_args.lr, --trainer.max_epochs) as Lightning spells them.",
        "",
        "Example: tvau fit --config configs/ahd.yaml --trainer configs/trainer/cpu.yaml",
    ]
    return "\n".join(lines)


def _register_builtin_tools() -> None:
    """The people's commands shipped with the library (one line each, module:function)."""
    register_tool("synth-data", "tvau_lightning.commands.synth_data:synth_data_main", "write a small synthetic UBnormal/ShanghaiTech/UCF-Crime/XD-Violence dataset in its native layout")
    register_tool("make-tiny-backbone", "tvau_lightning.commands.make_tiny_backbone:make_tiny_backbone_main", "write a tiny random backbone (model + tokenizer, built offline) for demos and tests")
    register_tool("merge-lora", "tvau_lightning.commands.merge_lora:merge_lora_main",
                  "merge a stage-2 checkpoint's LoRA into a self-contained Hugging Face model folder")
    register_tool("build-dataset", "tvau_lightning.commands.build_dataset:build_dataset_main", "build the fine-grained dialogue dataset (annotator LVLM + exact geometry), resumable")
    register_tool("analyze", "tvau_lightning.commands.analyze:analyze_main", "analyze one video: heatmap overlay video, frame scores, regions/tracks, answers")
    register_tool("chat", "tvau_lightning.commands.chat:chat_main", "chat about a video with a stage-2 model (multi-turn; /reset, /heatmap; scriptable from stdin)")
    register_tool("export", "tvau_lightning.commands.export:export_main",
                  "write a trained checkpoint as a shareable folder (config.json + safetensors, peft adapter)")
    register_tool("cache-features", "tvau_lightning.commands.cache_features:cache_features_main",
                  "store the frozen vision tower's AHD-layer features of every clip once (fast stage-1 epochs)")


def _run_tool(name: str, argv: Sequence[str]) -> int:
    target, _ = TOOL_COMMANDS[name]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(list(argv)) or 0)


def lightning_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build the LightningCLI: any task (a LightningModule: the library's tasks, or your own) and any DataModule (a
    :class:`VideoClipDataModule`) of the library, chosen by class name (``--model AHDTask --data
    UBnormalDataModule``) or by ``class_path`` in a YAML config. Importing the modules that define them is what
    lets jsonargparse resolve the short names and list them in ``--help``."""
    from lightning.pytorch import LightningModule
    from lightning.pytorch.cli import LightningCLI

    from tvau_lightning.data.clips import VideoClipDataModule
    from tvau_lightning.evaluation import EvaluationArtifacts

    for module in (
        "tvau_lightning.tasks.ahd",
        "tvau_lightning.tasks.rae",
        "tvau_lightning.tasks.weak_ahd",
        "tvau_lightning.data.ubnormal",
        "tvau_lightning.data.shanghaitech",
        "tvau_lightning.data.ucf_crime",
        "tvau_lightning.data.xd_violence",
        "tvau_lightning.data.dialogue",
    ):
        importlib.import_module(module)

    class TvauCLI(LightningCLI):
        """LightningCLI with the evaluation artifacts callback always present (``--eval_artifacts.*``, also
        when a config sets its own ``trainer.callbacks``); see :mod:`tvau_lightning.evaluation`."""

        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.add_lightning_class_args(EvaluationArtifacts, "eval_artifacts")

    return TvauCLI(
        model_class=LightningModule,
        datamodule_class=VideoClipDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "tvau"},
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``tvau``; ``args`` defaults to ``sys.argv[1:]`` (tests call it in-process)."""
    _register_builtin_tools()
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if argv[0] in ("-V", "--version"):
        from tvau_lightning import __version__

        print(__version__)
        return 0
    if argv[0] in TOOL_COMMANDS:
        from tvau_lightning.commands import errors

        errors.VERBOSE = "--verbose" in argv[1:]  # a traceback instead of the one-line error, as below
        try:
            return _run_tool(argv[0], [a for a in argv[1:] if a != "--verbose"])
        except KeyboardInterrupt:  # staged outputs were already removed by their context managers
            print(f"tvau {argv[0]}: interrupted", file=sys.stderr)
            return 130
    if argv[0] not in LIGHTNING_COMMANDS:
        known = ", ".join([*LIGHTNING_COMMANDS, *sorted(TOOL_COMMANDS)])
        print(f"tvau: unknown command {argv[0]!r}; commands: {known}", file=sys.stderr)
        return 2
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if args is None:  # from the shell: LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv = [sys.argv[0], *argv]
    try:
        lightning_cli(argv if args is not None else None)
    except KeyboardInterrupt:
        print(f"tvau {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        known = known_error(error)
        if known is None or verbose:
            raise
        print(f"tvau {argv[0]}: error: {one_line(known)}  (--verbose for the traceback)", file=sys.stderr)
        return 1
    return 0


def known_error(error: BaseException) -> BaseException | None:
    """The first error of a kind tvau raises for bad input (a missing model folder, a malformed dataset file, a
    refused checkpoint …) in ``error``'s chain — LightningCLI and jsonargparse wrap what the task or DataModule
    raised while being built — or ``None`` for anything else (a bug: the traceback is shown)."""
    from tvau_lightning.atomic import OutputFolderError
    from tvau_lightning.backbones.types import BackboneError
    from tvau_lightning.checkpoints import CheckpointError
    from tvau_lightning.data.clips import DatasetFormatError
    from tvau_lightning.data.dialogue_schema import DialogueFormatError
    from tvau_lightning.data.feature_cache import FeatureCacheError
    from tvau_lightning.data.video import VideoReadError

    kinds = (BackboneError, CheckpointError, DatasetFormatError, DialogueFormatError, FeatureCacheError,
             OutputFolderError, VideoReadError, FileNotFoundError)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
