"""Fixtures of the task tests: a small synthetic UBnormal, a saved tiny backbone, config writing, CLI runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(scope="session")
def tiny_qwen_dir(tiny_backbone_dir) -> Path:
    return tiny_backbone_dir("qwen2_5_vl")


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """``write_config(dict, name)`` → a YAML file in the test's tmp folder."""

    def write(config: dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def cli_runner() -> Callable[[Sequence[str]], dict[str, float]]:
    """``run(args)``: a LightningCLI subcommand in-process → the trainer's final logged metrics as floats."""
    from tvau_lightning.cli import lightning_cli

    def run(args: Sequence[str]) -> dict[str, float]:
        cli = lightning_cli(list(args))
        return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}

    return run
