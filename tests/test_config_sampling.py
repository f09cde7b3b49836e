"""The shipped stage-1 and stage-2 configs of each setting sample their clips alike (issue 13, "one sampling, both
stages"): the stage-1 data config's DataModule arguments — what its checkpoint records — and the stage-2 task
config's dialogue DataModule give no `sampling_differences`, so stage 2 accepts the AHD without
`allow_sampling_mismatch`. Settings: the paper's (1 fps, 476×868, records of 8–40 frames; the default data configs)
and the dense alternative (`*_dense.yaml` for stage 1, the `dialogue_dense_*.yaml` overlay for stage 2)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from config_parsing import task_config_parser
from tvau_lightning.data.dialogue import DialogueDataModule
from tvau_lightning.tasks.rae import sampling_differences, stage1_sampling

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA = CONFIGS / "data"
UBNORMAL_STAGE2 = ("rae_phase_a.yaml", "rae_phase_b.yaml", "rae_phase_a_no_lora.yaml")
SHANGHAITECH_STAGE2 = ("rae_phase_a_shanghaitech.yaml", "rae_phase_b_shanghaitech.yaml")
#: (stage-1 data config, stage-2 task config, stage-2 data overlay or None)
PAIRS = [
    *[("ubnormal.yaml", task, None) for task in UBNORMAL_STAGE2],
    *[("shanghaitech.yaml", task, None) for task in SHANGHAITECH_STAGE2],
    *[("ubnormal_dense.yaml", task, "dialogue_dense_ubnormal.yaml") for task in UBNORMAL_STAGE2],
    *[("shanghaitech_dense.yaml", task, "dialogue_dense_shanghaitech.yaml") for task in SHANGHAITECH_STAGE2],
]


_task_parser = task_config_parser


def _stage1(name: str) -> dict:
    """The sampling a checkpoint trained with this data config records (its DataModule's init arguments)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    cfg = parser.parse_args(["--data", str(DATA / name)])
    sampling = stage1_sampling({"datamodule_hyper_parameters": dict(vars(cfg.data.init_args))})
    assert sampling is not None
    return sampling


def _stage2(task: str, overlay: str | None):
    argv = ["--config", str(CONFIGS / task)] + (["--data", str(DATA / overlay)] if overlay else [])
    cfg = _task_parser().parse_args(argv)
    assert cfg.data.class_path == "tvau_lightning.data.dialogue.DialogueDataModule"
    init = {k: v for k, v in vars(cfg.data.init_args).items() if not k.startswith("__")}
    return cfg, DialogueDataModule(**init)  # reads no file until a split is used


@pytest.mark.parametrize(("stage1", "task", "overlay"), PAIRS, ids=lambda v: str(v))
def test_stage1_and_stage2_configs_sample_alike(stage1, task, overlay):
    cfg, dialogue = _stage2(task, overlay)
    assert sampling_differences(_stage1(stage1), dialogue.sampling) == []
    assert cfg.model.init_args.allow_sampling_mismatch is False  # no override needed
    # what the 7B backbone and the sequence length must hold for the longest record
    height, width = dialogue.frame_size
    assert height % 28 == 0 and width % 28 == 0
    backbone = cfg.model.init_args.backbone
    assert backbone.max_frames is None or backbone.max_frames >= dialogue.max_frames
    visual_tokens = math.ceil(dialogue.max_frames / 2) * (height // 28) * (width // 28)
    assert visual_tokens + 512 <= cfg.model.init_args.max_length


@pytest.mark.parametrize("task", [*UBNORMAL_STAGE2, *SHANGHAITECH_STAGE2])
def test_the_default_setting_is_the_papers(task):
    _, dialogue = _stage2(task, None)
    assert dialogue.sampling == {"sample_fps": 1.0, "frame_stride": None, "frame_size": (476, 868)}
    assert (dialogue.min_frames, dialogue.max_frames) == (8, 40)


def test_ahd_yaml_trains_the_ahd_the_ubnormal_stage2_configs_expect():
    cfg = _task_parser().parse_args(["--config", str(CONFIGS / "ahd.yaml")])
    hparams = dict(vars(cfg.data.init_args))
    _, dialogue = _stage2("rae_phase_a.yaml", None)
    assert sampling_differences(stage1_sampling({"datamodule_hyper_parameters": hparams}), dialogue.sampling) == []


@pytest.mark.parametrize(("stage1", "task", "overlay"), [
    ("ubnormal_dense.yaml", "rae_phase_a.yaml", None),
    ("ubnormal.yaml", "rae_phase_a.yaml", "dialogue_dense_ubnormal.yaml"),
    ("shanghaitech_dense.yaml", "rae_phase_a_shanghaitech.yaml", None),
    ("ubnormal_dense.yaml", "rae_phase_a.yaml", "dialogue_dense_shanghaitech.yaml"),  # 448×672 vs 476×868
])
def test_crossed_settings_differ(stage1, task, overlay):
    _, dialogue = _stage2(task, overlay)
    assert sampling_differences(_stage1(stage1), dialogue.sampling)


def test_overlays_only_change_the_sampling():
    for name in ("dialogue_dense_ubnormal.yaml", "dialogue_dense_shanghaitech.yaml"):
        raw = yaml.safe_load((DATA / name).read_text())
        assert set(raw) == {"init_args"}
        assert set(raw["init_args"]) <= {"sample_fps", "frame_stride", "frame_size", "min_frames", "max_frames"}
