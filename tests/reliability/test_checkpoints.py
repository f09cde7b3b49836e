"""Checkpoints as hostile input: a crafted file never runs code, and a head never runs on another backbone.

Every entry point that loads a checkpoint (analyze, chat, merge-lora, a stage-2 ``ahd_checkpoint`` and
``init_checkpoint``) gets a file whose hyper-parameters hold a pickled payload that would create a marker file;
each must refuse it with one line naming the file and the class, exit 1, and leave no marker and no output.
"""

from __future__ import annotations

import builtins
import warnings

import pytest
import torch

from tvau_lightning.checkpoints import IDENTITY_KEY, CheckpointError, read_checkpoint
from tvau_lightning.cli import main as tvau


class _Payload:
    """Unpickling this calls ``exec`` with code that writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _poisoned(source, tmp_path, name):
    ckpt = torch.load(source, map_location="cpu", weights_only=False)  # our own fixture: trusted
    marker = tmp_path / f"{name}.marker"
    ckpt["hyper_parameters"]["note"] = _Payload(marker)
    path = tmp_path / f"{name}.ckpt"
    torch.save(ckpt, path)
    return path, marker


def test_read_checkpoint_refuses_a_payload_and_names_the_class(fitted_ahd, tmp_path):
    path, marker = _poisoned(fitted_ahd.checkpoint, tmp_path, "ahd")
    with pytest.raises(CheckpointError, match=r"refusing to load .*ahd\.ckpt: it needs the Python global 'exec'"):
        read_checkpoint(path)
    assert not marker.exists()
    assert read_checkpoint(fitted_ahd.checkpoint)["state_dict"]  # the genuine file still loads


def test_cli_entry_points_refuse_payloads(fitted_ahd, fitted_rae, tmp_path, capsys):
    video = next(v for v in fitted_ahd.data.videos.values() if v.abnormal).path
    ahd, ahd_marker = _poisoned(fitted_ahd.checkpoint, tmp_path, "ahd")
    rae, rae_marker = _poisoned(fitted_rae.checkpoint, tmp_path, "rae")
    runs = {
        "analyze": ["analyze", str(video), "--ckpt", str(ahd), "--out", str(tmp_path / "out_a"), "--quiet"],
        "analyze-rae": ["analyze", str(video), "--ckpt", str(fitted_ahd.checkpoint), "--rae-ckpt", str(rae),
                        "--out", str(tmp_path / "out_b"), "--quiet"],
        "chat": ["chat", str(video), "--rae-ckpt", str(rae), "--ckpt", str(fitted_ahd.checkpoint)],
        "merge-lora": ["merge-lora", "--ckpt", str(rae), "--out", str(tmp_path / "merged")],
    }
    for name, argv in runs.items():
        assert tvau(argv) == 1, name
        err = capsys.readouterr().err.strip()
        assert "refusing to load" in err and "'exec'" in err, (name, err)
        assert len(err.splitlines()) == 1, (name, err)
    assert not ahd_marker.exists() and not rae_marker.exists()
    assert not any((tmp_path / d).exists() for d in ("out_a", "out_b", "merged"))


def test_stage2_refuses_a_payload_as_ahd_or_init_checkpoint(fitted_ahd, fitted_rae, tmp_path):
    from tvau_lightning.backbones.lora import LoRASettings  # noqa: F401 - the task's argument types
    from tvau_lightning.backbones.types import BackboneConfig
    from tvau_lightning.tasks.rae import RAETask

    ahd, ahd_marker = _poisoned(fitted_ahd.checkpoint, tmp_path, "ahd")
    rae, rae_marker = _poisoned(fitted_rae.checkpoint, tmp_path, "rae")
    config = BackboneConfig(path=str(fitted_ahd.backbone), dtype="float32")
    with pytest.raises(CheckpointError, match="'exec'"):
        RAETask(config, ahd_checkpoint=str(ahd))
    with pytest.raises(CheckpointError, match="'exec'"):
        RAETask(config, ahd_checkpoint=str(fitted_ahd.checkpoint), init_checkpoint=str(rae))
    assert not ahd_marker.exists() and not rae_marker.exists()


def test_checkpoints_record_their_backbone(fitted_ahd, fitted_rae):
    for path in (fitted_ahd.checkpoint, fitted_rae.checkpoint):
        identity = read_checkpoint(path)[IDENTITY_KEY]
        assert identity["family"] == "qwen2_5_vl" and len(identity["fingerprint"]) == 64
        assert identity["layers"]


def test_a_stage1_head_refuses_another_backbone_with_matching_widths(fitted_ahd, tiny_backbone_dir, tmp_path,
                                                                    capsys):
    """The tiny LLaVA shares the tiny Qwen's widths: without the recorded identity this ran and gave garbage."""
    from tvau_lightning.inference.models import load_ahd_model
    from tvau_lightning.modules.anomaly_model import load_ahd

    llava = tiny_backbone_dir("llava")
    with pytest.raises(CheckpointError, match=r"qwen2_5_vl backbone.*llava.*--force-backbone"):
        load_ahd_model(fitted_ahd.checkpoint, backbone=str(llava), dtype="float32")
    video = next(v for v in fitted_ahd.data.videos.values() if v.abnormal).path
    out = tmp_path / "out"
    assert tvau(["analyze", str(video), "--ckpt", str(fitted_ahd.checkpoint), "--backbone", str(llava),
                 "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "qwen2_5_vl" in err and "llava" in err and "--force-backbone" in err and not out.exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_ahd(fitted_ahd.checkpoint, backbone_path=str(llava), force_backbone=True)
    assert model.backbone.family == "llava" and any("--force-backbone" in str(w.message) for w in caught)
