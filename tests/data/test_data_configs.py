"""Every shipped configs/data/*.yaml parses and builds its DataModule (against synthetic data), so configs never rot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from tvau_lightning.cli import lightning_cli
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
from tvau_lightning.data.ubnormal import UBnormalDataModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


def _overrides(path: Path, ubnormal, shanghaitech) -> list[str]:
    """Point a config's user-set paths at the synthetic data, in-process loading (no worker processes)."""
    class_path = yaml.safe_load(path.read_text())["class_path"]
    if class_path.endswith("UBnormalDataModule"):
        paths = ["--data.root", str(ubnormal.root), "--data.split_dir", str(ubnormal.split_dir)]
    else:  # region GT from masks is tested in test_shanghaitech.py; here only the config matters
        paths = ["--data.root", str(shanghaitech.root), "--data.gt_boxes", "false"]
    return [*paths, "--data.num_workers", "0"]


def test_every_data_config_is_covered():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == [
        "dialogue_dense_shanghaitech.yaml", "dialogue_dense_ubnormal.yaml",  # tests/test_config_sampling.py
        "dialogue_shanghaitech_clip_repartition_phase_a.yaml",  # these two: tests/test_config_record_split.py
        "dialogue_shanghaitech_clip_repartition_phase_b.yaml",
        "shanghaitech.yaml", "shanghaitech_dense.yaml", "synthetic_ubnormal.yaml", "synthetic_ucf_crime.yaml",
        "ubnormal.yaml", "ubnormal_dense.yaml",
        "ucf_crime.yaml", "xd_violence.yaml",  # the last two and synthetic_ucf_crime: test_weak_data_configs.py
    ]


@pytest.mark.parametrize("name", ["ubnormal.yaml", "ubnormal_dense.yaml", "shanghaitech.yaml",
                                  "shanghaitech_dense.yaml", "synthetic_ubnormal.yaml"])
def test_config_builds_its_datamodule(name, synthetic_ubnormal, synthetic_shanghaitech):
    path = CONFIGS / name
    raw = yaml.safe_load(path.read_text())
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    cfg = parser.parse_args(["--data", str(path), *_overrides(path, synthetic_ubnormal, synthetic_shanghaitech)])
    dm = parser.instantiate(cfg).data
    assert f"{type(dm).__module__}.{type(dm).__qualname__}" == raw["class_path"]
    for key, value in raw["init_args"].items():
        if key not in ("root", "split_dir", "num_workers"):
            got = getattr(dm.hparams, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert tuple(batch.frames.shape[2:4]) == tuple(raw["init_args"]["frame_size"])
    assert batch.frames.shape[1] == raw["init_args"]["clip_len"]


def test_synthetic_config_points_at_the_demo_data():
    init = yaml.safe_load((CONFIGS / "synthetic_ubnormal.yaml").read_text())["init_args"]
    assert init["root"] == "demo/data/ubnormal" and init["split_dir"] == "demo/data/ubnormal/scripts"


def test_lightning_cli_accepts_the_data_config(synthetic_ubnormal, synthetic_shanghaitech, monkeypatch):
    # as a user runs it: tvau fit --model … --data configs/data/….yaml --data.root …
    monkeypatch.setattr("sys.argv", ["tvau"])  # pytest's own arguments are not the CLI's
    path = CONFIGS / "synthetic_ubnormal.yaml"
    cli = lightning_cli(
        ["--model", "lightning.pytorch.demos.boring_classes.BoringModel", "--data", str(path),
         *_overrides(path, synthetic_ubnormal, synthetic_shanghaitech), "--data.batch_size", "2",
         "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"],
        run=False,
    )
    assert isinstance(cli.datamodule, UBnormalDataModule)
    assert cli.datamodule.batch_size == 2 and cli.datamodule.frame_size == (64, 96)


def test_invalid_values_are_rejected_by_the_parser(synthetic_shanghaitech):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ShanghaiTechDataModule, "data")
    with pytest.raises(Exception, match="protocol"):
        parser.parse_args(["--data.root", str(synthetic_shanghaitech.root), "--data.protocol", "paper"])
