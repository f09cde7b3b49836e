"""Checkpoint loading for inference: stored-path resolution, settings, and errors that name the file."""

from __future__ import annotations

import pytest
import torch

from tvau_lightning.inference.models import (
    CheckpointError,
    clip_settings,
    dtype_name,
    load_ahd_model,
    load_rae_task,
    read_checkpoint,
    resolve_device,
    resolve_stored_path,
)


def test_resolve_stored_path(tmp_path, monkeypatch):
    (tmp_path / "proj" / "models" / "m").mkdir(parents=True)
    ckpt = tmp_path / "proj" / "runs" / "x" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_stored_path("models/m", ckpt) == str(tmp_path / "proj" / "models" / "m")
    assert resolve_stored_path("proj/models/m", ckpt) == "proj/models/m"  # exists from here: kept as given
    assert resolve_stored_path("Qwen/Qwen2.5-VL-7B-Instruct", ckpt) == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_clip_settings_and_device_dtype():
    assert clip_settings({"datamodule_hyper_parameters": {"frame_size": [448, 448], "clip_len": 16}}).clip_len == 16
    dialogue = clip_settings({"datamodule_hyper_parameters": {"frame_size": [336, 336], "num_frames": 8}})
    assert (dialogue.frame_size, dialogue.clip_len) == ((336, 336), 8)
    assert clip_settings({}).frame_size is None
    assert dtype_name("auto", torch.device("cpu")) == "float32" and dtype_name("bf16", torch.device("cpu")) == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_name("int8", torch.device("cpu"))
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")


def test_wrong_or_broken_checkpoints_are_named(tmp_path, fitted_ahd, fitted_rae):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt"):
        read_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")
    torch.save({"weights": 1}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="no AHD weights"):
        load_ahd_model(fitted_rae.checkpoint)
    with pytest.raises(CheckpointError, match="no RAE/LoRA weights"):
        load_rae_task(fitted_ahd.checkpoint)
    moved = torch.load(fitted_rae.checkpoint, map_location="cpu", weights_only=False)
    moved["hyper_parameters"]["ahd_checkpoint"] = "gone/ahd.ckpt"
    torch.save(moved, tmp_path / "rae.ckpt")
    with pytest.raises(CheckpointError, match="--ckpt AHD.ckpt"):
        load_rae_task(tmp_path / "rae.ckpt")
    task = load_rae_task(tmp_path / "rae.ckpt", ahd_checkpoint=str(fitted_ahd.checkpoint))  # the override fixes it
    assert task.hparams.ahd_checkpoint == str(fitted_ahd.checkpoint) and not task.training


def test_ahd_task_loads_the_checkpoint_weights_exactly(fitted_ahd):
    task = load_ahd_model(fitted_ahd.checkpoint, dtype="float32")
    state = torch.load(fitted_ahd.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in task.ahd.state_dict().items():
        assert torch.equal(value, state[f"ahd.{key}"]), key
    assert not task.training and task.backbone.dtype == torch.float32
