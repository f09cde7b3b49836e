"""Stage 1 end to end through `tvau`: learning, checkpoint round trips, resume after a kill, DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

METRICS = ("micro_auc", "macro_auc", "rbdc", "tbdc")


@pytest.fixture(scope="module")
def ahd_setup(small_ubnormal, tiny_qwen_dir, tmp_path_factory, cli_runner):
    """A config for tiny-Qwen AHD on the small synthetic UBnormal, and one short fit of it."""
    out = tmp_path_factory.mktemp("ahd_fit")
    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "tvau_lightning.tasks.ahd.AHDTask",
            "init_args": {"backbone": {"path": str(tiny_qwen_dir), "dtype": "float32"}, "logit_scale": 10.0,
                          "lr": 3.0e-3, "log_heatmaps": 1},
        },
        "data": {
            "class_path": "tvau_lightning.data.ubnormal.UBnormalDataModule",
            "init_args": {"root": str(small_ubnormal.root), "split_dir": str(small_ubnormal.split_dir),
                          "clip_len": 8, "frame_size": [64, 96]},
        },
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "default_root_dir": str(out),
            "callbacks": [{
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(out / "ckpt"), "filename": "best", "monitor": "val/micro_auc",
                              "mode": "max", "save_last": True, "enable_version_counter": False},
            }],
        },
    }
    import yaml

    cfg = out / "ahd.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    untrained = cli_runner(["validate", "--config", str(cfg)])
    fitted = cli_runner(["fit", "--config", str(cfg)])
    return {"config": cfg, "out": out, "untrained": untrained, "fitted": fitted}


def test_short_fit_learns_to_localise(ahd_setup):
    """The honest learning test: a mis-ordered grid or a temporal shift would keep these near chance."""
    before, after = ahd_setup["untrained"], ahd_setup["fitted"]
    assert after["val/micro_auc"] > 0.9 and after["val/micro_auc"] > before["val/micro_auc"] + 0.2
    assert after["val/rbdc"] > 0.5 and after["val/rbdc"] > before["val/rbdc"] + 0.3
    assert after["val/tbdc"] > 0.5 and after["val/tbdc"] > before["val/tbdc"] + 0.3
    assert after["train/loss"] < 0.5 * before["val/loss"]


def test_checkpoint_holds_the_ahd_only_and_reproduces_validation(ahd_setup, cli_runner):
    last = ahd_setup["out"] / "ckpt" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith("ahd.") for k in state), sorted(state)[:5]
    assert "ahd.prototypes" in state
    again = cli_runner(["validate", "--config", str(ahd_setup["config"]), "--ckpt_path", str(last)])
    for m in METRICS:
        assert again[f"val/{m}"] == pytest.approx(ahd_setup["fitted"][f"val/{m}"], abs=1e-6), m


def test_metrics_do_not_depend_on_how_evaluation_loads(ahd_setup, cli_runner):
    """Threads (the default: clips of several videos interleave in a varying order), worker processes and the
    main process alone must give the same validation metrics."""
    last = ahd_setup["out"] / "ckpt" / "last.ckpt"
    runs = {name: cli_runner(["validate", "--config", str(ahd_setup["config"]), "--ckpt_path", str(last), *extra])
            for name, extra in (("threads", ["--data.init_args.num_workers", "2"]),
                                ("processes", ["--data.init_args.num_workers", "2",
                                               "--data.init_args.eval_loading", "processes"]),
                                ("main", ["--data.init_args.num_workers", "0"]))}
    for m in METRICS:
        assert runs["threads"][f"val/{m}"] == pytest.approx(runs["main"][f"val/{m}"], abs=1e-6), m
        assert runs["processes"][f"val/{m}"] == pytest.approx(runs["main"][f"val/{m}"], abs=1e-6), m


def test_test_subcommand_on_best_checkpoint(ahd_setup, cli_runner):
    best = ahd_setup["out"] / "ckpt" / "best.ckpt"
    result = cli_runner(["test", "--config", str(ahd_setup["config"]), "--ckpt_path", str(best)])
    assert set(f"test/{m}" for m in METRICS) <= set(result)
    assert all(0.0 <= result[f"test/{m}"] <= 1.0 for m in METRICS)


KILLER = '''
import os
from lightning.pytorch.callbacks import Callback

class KillAtStep(Callback):
    """Hard-kill the process (no cleanup, like SIGKILL) once training reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args, **kwargs):
        if trainer.global_step >= self.step:
            os._exit(17)
'''


def test_resume_after_a_hard_kill(ahd_setup, tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    ckpt_dir = tmp_path / "ckpt"
    base = [sys.executable, "-m", "tvau_lightning.cli", "fit", "--config", str(ahd_setup["config"]),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "2",
            "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={ckpt_dir}", "--trainer.callbacks.save_last=true",
            "--trainer.callbacks.every_n_train_steps=2"]
    killed = subprocess.run([*base, "--trainer.callbacks+=killer.KillAtStep", "--trainer.callbacks.step=6"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == 17, killed.stderr[-3000:]
    last = ckpt_dir / "last.ckpt"
    step_at_kill = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 2 <= step_at_kill < 8
    resumed = subprocess.run([*base, "--ckpt_path", str(last)], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] == 8 and final["epoch"] == 1


def _read_csv_metrics(log_dir: Path) -> dict[str, float]:
    files = sorted(log_dir.rglob("metrics.csv"))
    assert files, f"no metrics.csv under {log_dir}"
    out: dict[str, float] = {}
    with files[-1].open() as fh:
        for row in csv.DictReader(fh):
            out.update({k: float(v) for k, v in row.items() if v not in ("", None) and k.startswith("test/")})
    return out


@pytest.mark.ddp
def test_ddp_fit_runs_and_test_metrics_match_one_process(ahd_setup, tmp_path):
    common = [sys.executable, "-m", "tvau_lightning.cli"]
    ddp = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    ckpt_dir = tmp_path / "ckpt"
    fit = subprocess.run([*common, "fit", "--config", str(ahd_setup["config"]), *ddp,
                          "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "1",
                          "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
                          "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
                          f"--trainer.callbacks.dirpath={ckpt_dir}", "--trainer.callbacks.save_last=true"],
                         capture_output=True, text=True, timeout=900)
    assert fit.returncode == 0, fit.stderr[-3000:]
    last = ckpt_dir / "last.ckpt"
    results = {}
    for name, extra in (("one", ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]), ("ddp", ddp)):
        log_dir = tmp_path / f"logs_{name}"
        proc = subprocess.run([*common, "test", "--config", str(ahd_setup["config"]), *extra,
                               "--ckpt_path", str(last), "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                               "--trainer.logger.save_dir", str(log_dir)],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = _read_csv_metrics(log_dir)
    for m in METRICS:
        assert results["ddp"][f"test/{m}"] == pytest.approx(results["one"][f"test/{m}"], abs=1e-6), m


def test_predict_writes_per_video_heatmaps(ahd_setup, cli_runner, small_ubnormal, tmp_path):
    import numpy as np

    out = tmp_path / "pred"
    cli_runner(["predict", "--config", str(ahd_setup["config"]),
                "--ckpt_path", str(ahd_setup["out"] / "ckpt" / "last.ckpt"),
                "--trainer.callbacks+=tvau_lightning.inference.writers.HeatmapWriter",
                f"--trainer.callbacks.output_dir={out}"])
    test_videos = small_ubnormal.split("test")
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(test_videos)
    for vid in test_videos:
        data = np.load(out / f"{vid}.npz")
        n = small_ubnormal.videos[vid].num_frames
        assert data["frame_index"].tolist() == list(range(n))  # every frame exactly once
        assert data["heatmap"].shape[0] == n and data["heatmap"].shape[1:] == (16, 24)
        assert ((data["frame_scores"] >= 0) & (data["frame_scores"] <= 1)).all()
    rows = (out / "frame_scores.csv").read_text().splitlines()
    assert rows[0] == "video_id,frame,score"
    assert len(rows) - 1 == sum(small_ubnormal.videos[v].num_frames for v in test_videos)
