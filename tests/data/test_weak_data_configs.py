"""configs/data/ucf_crime.yaml and xd_violence.yaml parse and build their DataModules (against synthetic data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


def _overrides(name: str, ucf, xd) -> list[str]:
    if name in ("ucf_crime.yaml", "synthetic_ucf_crime.yaml"):
        return ["--data.root", str(ucf.root), "--data.split_dir", str(ucf.split_dir), "--data.num_workers", "0"]
    return ["--data.root", str(xd.root), "--data.num_workers", "0"]


@pytest.mark.parametrize("name", ["ucf_crime.yaml", "xd_violence.yaml", "synthetic_ucf_crime.yaml"])
def test_config_builds_its_datamodule(name, synthetic_ucf_crime, synthetic_xd_violence):
    path = CONFIGS / name
    raw = yaml.safe_load(path.read_text())
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, "data")
    cfg = parser.parse_args(["--data", str(path), *_overrides(name, synthetic_ucf_crime, synthetic_xd_violence),
                             "--data.frame_size", "[32, 48]", "--data.clip_len", "4"])
    dm = parser.instantiate(cfg).data
    assert f"{type(dm).__module__}.{type(dm).__qualname__}" == raw["class_path"]
    for key, value in raw["init_args"].items():
        if key not in ("root", "split_dir", "num_workers", "frame_size", "clip_len", "train_clip_step"):
            got = getattr(dm.hparams, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch.frames.shape[1:4] == (4, 32, 48) and batch.frame_categories.shape[-1] == len(dm.categories)


def test_invalid_range_convention_is_rejected_by_the_parser(synthetic_xd_violence):
    from tvau_lightning.data.xd_violence import XDViolenceDataModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(XDViolenceDataModule, "data")
    with pytest.raises(Exception, match="range_convention"):
        parser.parse_args(["--data.root", str(synthetic_xd_violence.root), "--data.range_convention", "matlab"])


def test_synthetic_config_points_at_the_demo_data():
    init = yaml.safe_load((CONFIGS / "synthetic_ucf_crime.yaml").read_text())["init_args"]
    assert init["root"] == "demo/data/ucf_crime/Videos"
    assert init["split_dir"] == "demo/data/ucf_crime/Anomaly_Detection_splits"
