"""The overlays of the paper's clip-level re-partition (`configs/data/dialogue_shanghaitech_clip_repartition_phase_
{a,b}.yaml`) parse on top of the ShanghaiTech stage-2 configs and change the split alone: one pooled file per phase
split record by record (val = test = the pool's val records), the sampling of the base config untouched — while the
base configs stay on the leak-free split by video."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config_parsing import task_config_parser
from tvau_lightning.data.dialogue import DialogueDataModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OVERLAYS = {"a": CONFIGS / "data" / "dialogue_shanghaitech_clip_repartition_phase_a.yaml",
            "b": CONFIGS / "data" / "dialogue_shanghaitech_clip_repartition_phase_b.yaml"}


def _dialogue(task: str, overlay: Path | None = None) -> DialogueDataModule:
    parser = task_config_parser()
    argv = ["--config", str(CONFIGS / task)] + (["--data", str(overlay)] if overlay else [])
    cfg = parser.parse_args(argv)
    assert cfg.data.class_path == "tvau_lightning.data.dialogue.DialogueDataModule"
    return DialogueDataModule(**{k: v for k, v in vars(cfg.data.init_args).items() if not k.startswith("__")})


@pytest.mark.parametrize("phase", ["a", "b"])
def test_the_overlay_switches_the_split_to_records(phase):
    task = f"rae_phase_{phase}_shanghaitech.yaml"
    base, repartition = _dialogue(task), _dialogue(task, OVERLAYS[phase])
    assert base.record_split == "files"  # the default: the builder's split by video
    assert repartition.record_split == "records"
    assert (repartition.val_fraction, repartition.split_seed) == (0.2, 0)
    assert repartition.files == {"train": f"data/dialogues/shanghaitech/all/phase_{phase}.jsonl", "val": None,
                                 "test": None}  # val and test: the pool's val records
    # the pool of the phase the base config trains
    assert Path(base.files["train"]).name == Path(repartition.files["train"]).name
    for key in ("sampling", "min_frames", "max_frames", "batch_size", "num_workers"):
        assert getattr(repartition, key) == getattr(base, key), key
    raw = yaml.safe_load(OVERLAYS[phase].read_text())
    assert set(raw) == {"init_args"}
    assert set(raw["init_args"]) == {"train_file", "val_file", "test_file", "record_split", "val_fraction",
                                     "split_seed"}


def test_both_phases_split_alike():
    a, b = (_dialogue(f"rae_phase_{p}_shanghaitech.yaml", OVERLAYS[p]) for p in "ab")
    assert (a.val_fraction, a.split_seed) == (b.val_fraction, b.split_seed)
    assert Path(a.files["train"]).parent == Path(b.files["train"]).parent
