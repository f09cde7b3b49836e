"""`tvau validate` / `tvau test` / `tvau fit` with the default EvaluationArtifacts callback, on the fitted demo-style
AHD: files, columns, values against independent computations, TensorBoard figures, and DDP (slow)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from tvau_lightning.evaluation import METRIC_NAMES, PER_VIDEO_COLUMNS
from tvau_lightning.evaluation.artifacts import timeline_filename
from tvau_lightning.metrics.functional import rbdc_tbdc

EVAL_FILES = ("metrics.json", "per_video.csv", "frame_scores.csv", "detections.csv", "gt_regions.csv",
              "roc.csv", "roc.png", "rbdr_tbdr.csv", "rbdr_tbdr.png")
COLUMNS = {
    "per_video.csv": list(PER_VIDEO_COLUMNS),
    "frame_scores.csv": ["video", "frame", "score", "label"],
    "detections.csv": ["video", "frame", "x1", "y1", "x2", "y2", "score"],
    "gt_regions.csv": ["video", "track", "frame", "x1", "y1", "x2", "y2"],
    "roc.csv": ["threshold", "fpr", "tpr"],
    "rbdr_tbdr.csv": ["threshold", "fpr", "rbdr", "tbdr"],
}


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def eval_config(fitted_ahd, tmp_path_factory) -> Path:
    """fitted_ahd's config with validation on, its own callbacks list kept (ModelCheckpoint into a scratch
    folder, so the shared checkpoint is never touched) and a TensorBoard logger."""
    out = tmp_path_factory.mktemp("eval_cli")
    config = yaml.safe_load(fitted_ahd.config.read_text())
    trainer = config["trainer"]
    trainer.update({"limit_val_batches": 1.0, "logger": True, "default_root_dir": str(out / "runs")})
    trainer["callbacks"][0]["init_args"]["dirpath"] = str(out / "ckpt")
    path = out / "eval.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def validated(eval_config, fitted_ahd, cli_runner_eval):
    metrics, trainer = cli_runner_eval(["validate", "--config", str(eval_config), "--ckpt_path", str(fitted_ahd.checkpoint),
                                        "--eval_artifacts.num_resamples", "64", "--eval_artifacts.seed", "5"])
    return {"logged": metrics, "log_dir": Path(trainer.log_dir), "eval": Path(trainer.log_dir) / "eval"}


@pytest.fixture(scope="module")
def cli_runner_eval():
    from tvau_lightning.cli import lightning_cli

    def run(args):
        cli = lightning_cli(list(args))
        return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}, cli.trainer

    return run


def _check_artifacts(eval_dir: Path, data, split: str, logged: dict[str, float], prefix: str, stage: str) -> None:
    """Every file, its columns, and its values against independent computations from the other files / the GT."""
    for name in EVAL_FILES:
        assert (eval_dir / name).is_file(), name
    for name, columns in COLUMNS.items():
        assert _csv(eval_dir / name)[0] == columns, name
    report = json.loads((eval_dir / "metrics.json").read_text())
    assert report["stage"] == stage and set(report["metrics"]) == set(METRIC_NAMES)
    assert set(report) >= {"bootstrap", "conventions", "counts", "files"}
    for m in METRIC_NAMES:
        entry = report["metrics"][m]
        assert entry["value"] == pytest.approx(logged[f"{prefix}/{m}"], abs=1e-6), m
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (m, entry)
        assert 0 < entry["valid_resamples"] <= report["bootstrap"]["num_resamples"]

    videos = data.split(split)
    _, per_video = _csv(eval_dir / "per_video.csv")
    rows = {r["video"]: r for r in per_video}
    assert sorted(rows) == sorted(videos)
    _, frames = _csv(eval_dir / "frame_scores.csv")
    _, dets = _csv(eval_dir / "detections.csv")
    _, gts = _csv(eval_dir / "gt_regions.csv")
    threshold = report["conventions"]["operating_threshold"]
    gt_tracks, detections = {}, {}
    for video in videos:
        truth = data.videos[video]
        row = rows[video]
        mine = [f for f in frames if f["video"] == video]
        labels = np.array([int(f["label"]) for f in mine])
        scores = np.array([float(f["score"]) for f in mine])
        assert [int(f["frame"]) for f in mine] == list(range(truth.num_frames))
        np.testing.assert_array_equal(labels, truth.frame_labels)
        assert int(row["frames"]) == truth.num_frames and int(row["abnormal_frames"]) == truth.frame_labels.sum()
        if 0 < labels.sum() < len(labels):
            assert float(row["auc"]) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
        else:
            assert row["auc"] == ""
        assert int(row["gt_tracks"]) == len(truth.tracks)
        # detected regions at the operating point, by brute force over the CSV rows (inclusive-pixel IoU)
        my_gt = np.array([[float(g[c]) for c in ("track", "frame", "x1", "y1", "x2", "y2")] for g in gts
                          if g["video"] == video]).reshape(-1, 6)
        my_det = np.array([[float(d[c]) for c in ("frame", "x1", "y1", "x2", "y2", "score")] for d in dets
                           if d["video"] == video]).reshape(-1, 6)
        assert int(row["gt_regions"]) == len(my_gt) and int(row["detections"]) == len(my_det)
        hit = []
        for g in my_gt:
            same = my_det[(my_det[:, 0] == g[1]) & (my_det[:, 5] >= threshold)]
            iw = np.clip(np.minimum(same[:, 3], g[4]) - np.maximum(same[:, 1], g[2]) + 1, 0, None)
            ih = np.clip(np.minimum(same[:, 4], g[5]) - np.maximum(same[:, 2], g[3]) + 1, 0, None)
            inter = iw * ih
            union = (same[:, 3] - same[:, 1] + 1) * (same[:, 4] - same[:, 2] + 1) + \
                (g[4] - g[2] + 1) * (g[5] - g[3] + 1) - inter
            hit.append(bool((inter / union >= 0.1).any()))
        assert int(row["detected_regions"]) == sum(hit), video
        gt_tracks[video] = [my_gt[my_gt[:, 0] == t][:, 1:] for t in np.unique(my_gt[:, 0])]
        detections[video] = my_det
        assert (eval_dir / "timelines" / timeline_filename(video)).is_file()
    rbdc, tbdc = rbdc_tbdc(gt_tracks, detections, num_frames=len(frames))
    assert report["metrics"]["rbdc"]["value"] == pytest.approx(rbdc, abs=1e-9)
    assert report["metrics"]["tbdc"]["value"] == pytest.approx(tbdc, abs=1e-9)
    micro = roc_auc_score([int(f["label"]) for f in frames], [float(f["score"]) for f in frames])
    assert report["metrics"]["micro_auc"]["value"] == pytest.approx(micro, abs=1e-9)
    _, roc = _csv(eval_dir / "roc.csv")
    fpr, tpr = np.array([float(r["fpr"]) for r in roc]), np.array([float(r["tpr"]) for r in roc])
    assert roc[0]["threshold"] == "inf" and fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(micro, abs=1e-9)


def _tensorboard_images(log_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events.Tags()["images"]


def test_validate_writes_the_artifacts_next_to_the_logs(validated, fitted_ahd):
    # the config sets its own trainer.callbacks (ModelCheckpoint): the default callback is there all the same
    assert validated["eval"].parent == validated["log_dir"] and "version_" in validated["log_dir"].name
    _check_artifacts(validated["eval"], fitted_ahd.data, "validation", validated["logged"], "val", "validate")
    report = json.loads((validated["eval"] / "metrics.json").read_text())
    assert report["bootstrap"]["num_resamples"] == 64 and report["bootstrap"]["seed"] == 5
    assert report["checkpoint"] == str(fitted_ahd.checkpoint)
    assert {"val/roc", "val/rbdr_tbdr", "val/timelines"} <= set(_tensorboard_images(validated["log_dir"]))
    # the report's `tvau analyze` lines name each video's file (from the DataModule), ready to paste
    html = (validated["eval"] / "report.html").read_text()
    commands = re.findall(r"tvau analyze (\S+) --ckpt", html)
    assert commands, "the report lists no worst video"
    files = {str(fitted_ahd.data.videos[v].path) for v in fitted_ahd.data.split("validation")}
    assert set(commands) <= files, (commands, files)


def test_test_subcommand_writes_into_out_dir(eval_config, fitted_ahd, cli_runner_eval, tmp_path):
    logged, _ = cli_runner_eval(["test", "--config", str(eval_config), "--ckpt_path", str(fitted_ahd.checkpoint),
                                 "--trainer.logger", "false", "--eval_artifacts.num_resamples", "32",
                                 "--eval_artifacts.out_dir", str(tmp_path / "mine"),
                                 "--eval_artifacts.timelines", "true"])
    _check_artifacts(tmp_path / "mine", fitted_ahd.data, "test", logged, "test", "test")


def test_fit_logs_figures_but_writes_no_bootstrap(eval_config, fitted_ahd, cli_runner_eval, tmp_path):
    _, trainer = cli_runner_eval(["fit", "--config", str(eval_config), "--trainer.max_epochs", "1",
                                  "--trainer.limit_train_batches", "1", "--trainer.default_root_dir", str(tmp_path)])
    log_dir = Path(trainer.log_dir)
    assert not list(tmp_path.rglob("metrics.json")) and not (log_dir / "eval").exists()
    assert {"val/roc", "val/rbdr_tbdr", "val/timelines"} <= set(_tensorboard_images(log_dir))
    # asked for: every validation epoch of fit writes its own folder
    _, trainer = cli_runner_eval(["fit", "--config", str(eval_config), "--trainer.max_epochs", "1",
                                  "--trainer.limit_train_batches", "1", "--trainer.default_root_dir", str(tmp_path / "b"),
                                  "--eval_artifacts.write", "always", "--eval_artifacts.num_resamples", "8"])
    report = json.loads((Path(trainer.log_dir) / "eval" / "epoch=0" / "metrics.json").read_text())
    assert report["stage"] == "fit" and report["bootstrap"]["num_resamples"] == 8


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_test_writes_once_and_equals_one_process(eval_config, fitted_ahd, tmp_path):
    common = [sys.executable, "-m", "tvau_lightning.cli", "test", "--config", str(eval_config),
              "--ckpt_path", str(fitted_ahd.checkpoint), "--trainer.logger", "false",
              "--eval_artifacts.num_resamples", "40", "--eval_artifacts.timelines", "false"]
    runs = {"one": ["--trainer.devices", "1"], "ddp": ["--trainer.strategy", "ddp", "--trainer.devices", "2"]}
    for name, extra in runs.items():
        proc = subprocess.run([*common, *extra, "--eval_artifacts.out_dir", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, ddp = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in runs)
    assert ddp["metrics"] == one["metrics"] and ddp["counts"] == one["counts"]
    for name in ("per_video.csv", "frame_scores.csv", "detections.csv", "gt_regions.csv", "rbdr_tbdr.csv"):
        assert (tmp_path / "ddp" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    # rank 0 alone wrote: no leftover temporary files, nothing written twice
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
