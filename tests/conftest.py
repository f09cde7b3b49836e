"""Shared fixtures, built once per test run. Each block below is self-contained; add yours beside them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _open_logging_streams():
    """Libraries (Lightning) give their loggers a StreamHandler on the ``sys.stderr`` of the moment they are first
    imported; when that was inside a test that captured stderr (``capsys``), the stream is closed afterwards and
    every later log line becomes a "--- Logging error ---" traceback in another test's output. Rebind such
    handlers to the current stderr before each test."""
    import logging
    import sys

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.stderr  # not setStream(): it flushes the closed stream first
    yield

# --------------------------------------------------------------------------------------------- synthetic video data
# Small datasets in UBnormal's and ShanghaiTech's native layouts (tvau_lightning.data.synthetic), written once
# per session into a temporary folder; each fixture returns a SyntheticDataset (root, split_dir, exact ground
# truth per video). Tests that modify files must copy the folder first (see tests/data/test_ubnormal.py).


@pytest.fixture(scope="session")
def synthetic_ubnormal(tmp_path_factory):
    from tvau_lightning.data.synthetic import write_synthetic_ubnormal

    return write_synthetic_ubnormal(tmp_path_factory.mktemp("synthetic") / "ubnormal", seed=0)


@pytest.fixture(scope="session")
def small_ubnormal(tmp_path_factory):
    """A small synthetic UBnormal: 2 videos per split (1 abnormal), 32 frames of 120×180."""
    from tvau_lightning.data.synthetic import write_synthetic_ubnormal

    return write_synthetic_ubnormal(tmp_path_factory.mktemp("tasks") / "ubnormal", videos_per_split=2,
                                    abnormal_per_split=1, num_frames=32, seed=3)


@pytest.fixture(scope="session")
def synthetic_shanghaitech(tmp_path_factory):
    from tvau_lightning.data.synthetic import write_synthetic_shanghaitech

    return write_synthetic_shanghaitech(tmp_path_factory.mktemp("synthetic") / "shanghaitech", seed=0)


# --------------------------------------------------------------------------------------------- tiny backbones
# Tiny random backbones of every family (tvau_lightning.backbones.tiny), saved once per session so that the
# real loading path (load_backbone on a folder) is what tests exercise.


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory) -> Callable[[str], Path]:
    """``family → folder`` of a tiny random backbone saved with ``build_tiny_backbone(family, dir, seed=0)``.

    Built lazily, once per session. Tests that modify a folder must copy it first.
    """
    from tvau_lightning.backbones.tiny import build_tiny_backbone

    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            out = tmp_path_factory.mktemp(f"tiny_{family}") / "model"
            build_tiny_backbone(family, out, seed=0)
            cache[family] = out
        return cache[family]

    return get


# --------------------------------------------------------------------------------------------- a fitted stage-1 AHD
# A small synthetic UBnormal and an AHD fitted on it for a few seconds (tiny Qwen2.5-VL backbone), through the real
# `tvau fit` path, so its checkpoint has the real layout (ahd.* weights, hyper-parameters, DataModule
# hyper-parameters). It localises the synthetic anomalies well (frame AUC ~1). Used by the inference and notebook
# tests; tests must not modify these files (copy them first).


@pytest.fixture(scope="session")
def fitted_ahd(tmp_path_factory, tiny_backbone_dir, small_ubnormal):
    """``SimpleNamespace(data, backbone, checkpoint, config)`` of a briefly fitted stage-1 AHD."""
    from types import SimpleNamespace

    import yaml

    from tvau_lightning.cli import lightning_cli
    out = tmp_path_factory.mktemp("fitted_ahd")
    data = small_ubnormal
    backbone = tiny_backbone_dir("qwen2_5_vl")
    config = {
        "seed_everything": 0,
        "model": {"class_path": "tvau_lightning.tasks.ahd.AHDTask",
                  "init_args": {"backbone": {"path": str(backbone), "dtype": "float32"}, "logit_scale": 10.0,
                                "lr": 3.0e-3, "log_heatmaps": 0}},
        "data": {"class_path": "tvau_lightning.data.ubnormal.UBnormalDataModule",
                 "init_args": {"root": str(data.root), "split_dir": str(data.split_dir), "clip_len": 8,
                               "frame_size": [64, 96], "train_clip_step": 8, "include_normal": False}},
        "trainer": {"accelerator": "cpu", "max_epochs": 4, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                    "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(out),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(out / "ckpt"), "filename": "ahd",
                                                 "enable_version_counter": False}}]},
    }
    path = out / "ahd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    lightning_cli(["fit", "--config", str(path)])
    return SimpleNamespace(data=data, backbone=backbone, checkpoint=out / "ckpt" / "ahd.ckpt", config=path)


# --------------------------------------------------------------------------------------------- a fitted stage-2 RAE
# Phase-B dialogues of fitted_ahd's data (`tvau build-dataset --annotator ground-truth`) and an RAE + LoRA fitted on
# them for a few steps on top of that AHD (the real `tvau fit` path). A 64-wide random LLM does not produce
# meaningful text: tests check the dialogue mechanics, not the answers' content.


@pytest.fixture(scope="session")
def fitted_rae(tmp_path_factory, fitted_ahd):
    """``SimpleNamespace(dialogues, checkpoint, num_frames, frame_size)`` of a briefly fitted stage-2 RAE."""
    from types import SimpleNamespace

    import yaml

    from tvau_lightning.cli import lightning_cli
    from tvau_lightning.commands.build_dataset import build_dataset_main

    out = tmp_path_factory.mktemp("fitted_rae")
    data = fitted_ahd.data
    for split in ("training", "validation"):
        code = build_dataset_main(["--source", "ubnormal", "--root", str(data.root), "--split-dir", str(data.split_dir),
                                   "--split", split, "--annotator", "ground-truth", "--out", str(out / split),
                                   "--dense-records", "--no-progress"])  # ~1 s videos: every frame
        assert code == 0
    num_frames, frame_size = 4, [64, 96]
    config = {
        "seed_everything": 0,
        "model": {"class_path": "tvau_lightning.tasks.rae.RAETask",
                  "init_args": {"backbone": {"path": str(fitted_ahd.backbone), "dtype": "float32"},
                                "ahd_checkpoint": str(fitted_ahd.checkpoint),
                                "lora": {"rank": 4, "alpha": 8, "dropout": 0.0}, "lr": 2.0e-3, "max_new_tokens": 6,
                                "allow_sampling_mismatch": True}},  # 4 frames spread over each record
        "data": {"class_path": "tvau_lightning.data.dialogue.DialogueDataModule",
                 "init_args": {"train_file": str(out / "training" / "phase_b.jsonl"),
                               "val_file": str(out / "validation" / "phase_b.jsonl"),
                               "num_frames": num_frames, "frame_size": frame_size}},
        "trainer": {"accelerator": "cpu", "max_steps": 4, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                    "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(out),
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(out / "ckpt"), "filename": "rae",
                                                 "enable_version_counter": False}}]},
    }
    path = out / "rae.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    lightning_cli(["fit", "--config", str(path)])
    return SimpleNamespace(dialogues=out, checkpoint=out / "ckpt" / "rae.ckpt", num_frames=num_frames,
                           frame_size=tuple(frame_size), config=path)
