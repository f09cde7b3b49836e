"""The LightningCLI parser ``tvau`` uses for task configs, built without instantiating anything (no weights needed):
shared by the tests that parse the shipped configs (test_configs.py, test_config_sampling.py,
test_config_record_split.py). Not a test module; setup.cfg puts tests/helpers on ``sys.path`` (``pythonpath``)."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser


def task_config_parser() -> LightningArgumentParser:
    """``--config``, ``--seed_everything``, ``--trainer``, ``--model`` and ``--data`` (subclass mode), as ``tvau fit``."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action="config")
    parser.add_argument("--seed_everything", type=int | bool, default=True)
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_lightning_class_args(LightningModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True)
    return parser
