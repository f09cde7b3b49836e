"""Every shipped YAML parses against the classes it names, so configs never rot.

Task configs (configs/*.yaml, configs/demo/*.yaml) and trainer presets are parsed here with the same
LightningCLI parser `tvau` uses, without instantiating anything (no weights are needed); backbone, data and
builder configs have their own tests beside their code. The last test makes sure no YAML escapes all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config_parsing import task_config_parser

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASK_CONFIGS = sorted([*CONFIGS.glob("*.yaml"), *(CONFIGS / "demo").glob("*.yaml")])
TRAINER_PRESETS = sorted((CONFIGS / "trainer").glob("*.yaml"))
TESTED_ELSEWHERE = ("backbones", "data", "builder")


_parser = task_config_parser


@pytest.mark.parametrize("path", TASK_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_task_config_parses(path):
    cfg = _parser().parse_args(["--config", str(path)])
    assert cfg.model.class_path.startswith("tvau_lightning.tasks.")
    assert cfg.data.class_path.startswith("tvau_lightning.data.")
    backbone = cfg.model.init_args.backbone
    assert backbone.path, "the backbone needs a path"


@pytest.mark.parametrize("path", TRAINER_PRESETS, ids=lambda p: p.name)
def test_trainer_preset_combines_with_a_task_config(path):
    cfg = _parser().parse_args(["--config", str(CONFIGS / "demo" / "ahd_tiny.yaml"), "--trainer", str(path)])
    assert cfg.trainer.accelerator in ("cpu", "gpu")


def test_every_yaml_is_covered():
    covered = set(TASK_CONFIGS) | set(TRAINER_PRESETS)
    for path in CONFIGS.rglob("*.yaml"):
        if path.relative_to(CONFIGS).parts[0] in TESTED_ELSEWHERE:
            continue
        assert path in covered, f"{path} is parsed by no test"


def test_swapping_the_backbone_is_one_argument():
    cfg = _parser().parse_args(["--config", str(CONFIGS / "ahd.yaml"),
                                "--model.backbone", str(CONFIGS / "backbones" / "internvl3_8b.yaml")])
    assert "InternVL3" in cfg.model.init_args.backbone.path


def test_stage1_on_shanghaitech_writes_the_checkpoint_its_stage2_configs_read():
    """ahd.yaml + ShanghaiTech data + the runs preset saves ``best.ckpt`` exactly where the ShanghaiTech stage-2
    configs look for their frozen AHD (and UBnormal's stage 1 keeps its own folder)."""
    cfg = _parser().parse_args(["--config", str(CONFIGS / "ahd.yaml"), "--data", str(CONFIGS / "data" / "shanghaitech.yaml"),
                                "--trainer", str(CONFIGS / "trainer" / "ahd_shanghaitech_runs.yaml")])
    assert "ShanghaiTech" in cfg.data.class_path
    checkpoint = next(c for c in cfg.trainer.callbacks if c.class_path.endswith("ModelCheckpoint")).init_args
    assert {c.class_path.rsplit(".", 1)[-1] for c in cfg.trainer.callbacks} == {"ModelCheckpoint", "LearningRateMonitor"}
    saved = Path(checkpoint.dirpath) / f"{checkpoint.filename}.ckpt"
    for phase in ("a", "b"):
        stage2 = _parser().parse_args(["--config", str(CONFIGS / f"rae_phase_{phase}_shanghaitech.yaml")])
        assert Path(stage2.model.init_args.ahd_checkpoint) == saved, phase
    ubnormal = _parser().parse_args(["--config", str(CONFIGS / "ahd.yaml")])
    assert next(c for c in ubnormal.trainer.callbacks if c.class_path.endswith("ModelCheckpoint")).init_args.dirpath \
        != checkpoint.dirpath
