"""Every shipped backbone YAML (configs/backbones/*.yaml) is a valid BackboneConfig (configs never rot)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.backbones.types import BackboneConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "backbones"
FIELDS = {f.name for f in dataclasses.fields(BackboneConfig)}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_backbone_yaml_is_a_backbone_config(path):
    data = yaml.safe_load(path.read_text())
    assert set(data) <= FIELDS, f"{path.name}: unknown keys {set(data) - FIELDS}"
    config = BackboneConfig(**data)
    assert config.path and config.local_files_only and not config.trust_remote_code


def test_the_tiny_qwen_preset_loads_once_written(tiny_backbone_dir):
    data = yaml.safe_load((CONFIG_DIR / "tiny_qwen2_5_vl.yaml").read_text())
    assert data["path"] == "demo/backbones/tiny_qwen2_5_vl"
    adapter = load_backbone(BackboneConfig(**{**data, "path": str(tiny_backbone_dir("qwen2_5_vl"))}))
    assert adapter.family == "qwen2_5_vl" and adapter.layers == [1, 2, 4]


def test_the_qwen_7b_preset_reads_the_paper_layers():
    data = yaml.safe_load((CONFIG_DIR / "qwen2_5_vl_7b.yaml").read_text())
    assert data["layers"] == [1, 8, 16, 32] and data["path"] == "/models/Qwen2.5-VL-7B-Instruct"
