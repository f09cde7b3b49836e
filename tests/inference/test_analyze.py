"""`tvau analyze` end to end on synthetic videos: output files against the source and the ground truth, scores
against the DataModule's own clip path, frame folders, stored relative paths, bf16, and failures that leave
nothing behind."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tvau_lightning.cli import main as tvau
from tvau_lightning.commands import analyze as analyze_command
from tvau_lightning.data.labels import find_frame_labels, read_frame_labels
from tvau_lightning.inference import analyze as analyze_module
from tvau_lightning.inference.analyze import link_detections


def _abnormal_test_video(fitted_ahd):
    video_id = next(v for v in fitted_ahd.data.split("test") if fitted_ahd.data.videos[v].abnormal)
    return fitted_ahd.data.videos[video_id]


def _read_video(path: Path) -> tuple[np.ndarray, float]:
    """Every frame and the fps, decoded with PyAV directly (independently of tvau's video readers)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


def _iou(a, b) -> float:
    """Inclusive-pixel IoU, written out independently of metrics.regions."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def analyzed(fitted_ahd, tmp_path_factory):
    video = _abnormal_test_video(fitted_ahd)
    out = tmp_path_factory.mktemp("analyze") / "result"
    code = tvau(["analyze", str(video.path), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out), "--quiet",
                 "--batch-size", "3"])
    assert code == 0
    return video, out


def test_output_files(analyzed):
    _, out = analyzed
    assert sorted(p.name for p in out.iterdir()) == [".tvau-output", "overlay.mp4", "regions.json", "report.html",
                                                     "report_media", "scores.csv", "summary.json"]
    assert not list(out.parent.glob(".result.*")), "staging folders left behind"


def test_overlay_video_has_every_frame_at_the_source_rate(analyzed):
    video, out = analyzed
    source, source_fps = _read_video(video.path)
    overlay, fps = _read_video(out / "overlay.mp4")
    assert overlay.shape[0] == source.shape[0] == video.num_frames
    assert fps == pytest.approx(source_fps)
    h, w = source.shape[1:3]
    assert overlay.shape[2] == w + w % 2 and overlay.shape[1] > h and overlay.shape[1] % 2 == 0
    # the strip under the frame is the dark timeline, the frame itself still resembles the source
    strip = overlay[:, h + 2:, :, :].astype(float)
    assert strip.mean() < source.astype(float).mean()
    diff = np.abs(overlay[:, :h, :w].astype(float) - source.astype(float)).mean()
    assert 0 < diff < 80


def test_scores_csv_rows_labels_and_accuracy(analyzed):
    video, out = analyzed
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == list(range(video.num_frames))
    labels = np.array([int(r["label"]) for r in rows])
    assert (labels == video.frame_labels).all()  # found beside the video (UBnormal tracks file)
    scores = np.array([float(r["score"]) for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, scores) > 0.9
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-5)
    assert summary["num_frames"] == video.num_frames and summary["clip_len"] == 8 and summary["frame_size"] == [64, 96]


def test_scores_match_the_datamodule_clip_path(analyzed, fitted_ahd):
    """Clip cutting, padding and resizing of analyze vs the UBnormal DataModule's evaluation clips."""
    from tvau_lightning.data.types import collate_clips
    from tvau_lightning.data.ubnormal import UBnormalDataModule
    from tvau_lightning.inference.models import load_ahd_model
    from tvau_lightning.modules.ahd import frame_scores
    from tvau_lightning.modules.grid import upsample_heatmap

    video, out = analyzed
    task = load_ahd_model(fitted_ahd.checkpoint, device="cpu", dtype="float32")
    dm = UBnormalDataModule(root=str(fitted_ahd.data.root), split_dir=str(fitted_ahd.data.split_dir), clip_len=8,
                            frame_size=(64, 96))
    dataset = dm.dataset("test")
    expected = np.full(video.num_frames, np.nan)
    for i, (video_id, _) in enumerate(dataset.clips):
        if video_id != video.video_id:
            continue
        batch = collate_clips([dataset[i]])
        with torch.no_grad():
            heat = task(batch.frames).heatmap
        full = upsample_heatmap(heat, num_frames=8, frame_size=tuple(batch.original_size[0].tolist()),
                                temporal_factor=task.temporal_factor)
        keep = batch.valid[0]
        expected[batch.frame_index[0][keep].numpy()] = frame_scores(full)[0][keep].numpy()
    with (out / "scores.csv").open() as fh:
        got = np.array([float(r["score"]) for r in csv.DictReader(fh)])
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_regions_json_schema_boxes_and_tracks(analyzed):
    video, out = analyzed
    doc = json.loads((out / "regions.json").read_text())
    h, w = doc["height"], doc["width"]
    assert (h, w) == (120, 180) and doc["num_frames"] == video.num_frames and doc["fps"] == pytest.approx(30.0)
    assert [f["frame"] for f in doc["frames"]] == list(range(video.num_frames))
    tracks = doc["tracks"]
    assert [t["id"] for t in tracks] == list(range(len(tracks))) and tracks
    per_track: dict[int, list] = {}
    for f in doc["frames"]:
        assert set(f) == {"frame", "score", "regions"}
        for r in f["regions"]:
            assert set(r) == {"box", "score", "track"}
            x1, y1, x2, y2 = r["box"]
            assert all(isinstance(v, int) for v in r["box"])
            assert 0 <= x1 <= x2 <= w - 1 and 0 <= y1 <= y2 <= h - 1
            assert 0.5 < r["score"] <= f["score"] + 1e-6  # a region is above threshold; the frame score is the max
            per_track.setdefault(r["track"], []).append((f["frame"], r["box"], r["score"]))
    for t in tracks:
        assert set(t) == {"id", "start", "end", "max_score", "frames", "boxes", "scores"}
        assert t["frames"] == list(range(t["start"], t["end"] + 1))  # consecutive frames
        assert [(f, b) for f, b, _ in per_track[t["id"]]] == list(zip(t["frames"], t["boxes"]))
        assert t["max_score"] == pytest.approx(max(t["scores"]))
    # the anomaly is found where it is: most ground-truth boxes are hit by a region (the RBDC criterion)
    gt = np.concatenate(video.tracks)
    regions = {f["frame"]: [r["box"] for r in f["regions"]] for f in doc["frames"]}
    hits = [any(_iou(row[1:], box) >= 0.1 for box in regions[int(row[0])]) for row in gt]
    assert np.mean(hits) > 0.8
    # and regions stay where the anomaly is: frames without one have few detections
    normal = video.frame_labels == 0
    assert sum(len(regions[f]) for f in np.nonzero(normal)[0]) <= 0.2 * normal.sum()


def test_frame_folder_with_relative_backbone_path_and_explicit_sizes(fitted_ahd, tmp_path, monkeypatch, capsys):
    """A checkpoint that stores a relative backbone path and no DataModule settings, and a frame folder."""
    video = _abnormal_test_video(fitted_ahd)
    frames, _ = _read_video(video.path)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames[:20]):
        Image.fromarray(frame).save(folder / f"{i}.png")  # unpadded numbers: numeric order, not lexicographic
    project = tmp_path / "project"
    shutil.copytree(fitted_ahd.backbone, project / "models" / "tiny")
    ckpt = torch.load(fitted_ahd.checkpoint, map_location="cpu", weights_only=False)
    ckpt["hyper_parameters"]["backbone"]["path"] = "models/tiny"
    del ckpt["datamodule_hyper_parameters"]
    (project / "runs" / "ckpt").mkdir(parents=True)
    torch.save(ckpt, project / "runs" / "ckpt" / "ahd.ckpt")
    monkeypatch.chdir(tmp_path)  # "models/tiny" does not exist from here: found relative to the checkpoint
    args = ["analyze", "frames", "--ckpt", "project/runs/ckpt/ahd.ckpt", "--out", "res", "--quiet", "--fps", "12"]
    assert tvau(args) == 1
    assert "--frame-size" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()
    assert tvau([*args, "--frame-size", "64", "96", "--clip-len", "6"]) == 0
    overlay, fps = _read_video(tmp_path / "res" / "overlay.mp4")
    assert overlay.shape[0] == 20 and fps == pytest.approx(12.0)
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["clip_len"] == 6 and summary["backbone"] == str(project / "models" / "tiny")
    assert len((tmp_path / "res" / "scores.csv").read_text().splitlines()) == 21


def test_existing_output_needs_overwrite_and_bf16_on_cpu(analyzed, fitted_ahd, tmp_path, capsys):
    """An existing folder is kept without --overwrite and replaced with it; bf16 gives nearly the fp32 scores."""
    video, fp32_out = analyzed
    out = tmp_path / "result"
    out.mkdir()
    (out / ".tvau-output").write_text("{}")  # an earlier output of tvau (a folder of the user's is never replaced)
    (out / "keep.txt").write_text("mine")
    args = ["analyze", str(video.path), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out), "--quiet",
            "--device", "cpu", "--dtype", "bfloat16"]
    assert tvau(args) == 1
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert tvau([*args, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "overlay.mp4").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]
    assert json.loads((out / "summary.json").read_text())["dtype"] == "bfloat16"
    read = lambda p: np.loadtxt(p / "scores.csv", delimiter=",", skiprows=1)[:, 1]  # noqa: E731
    np.testing.assert_allclose(read(out), read(fp32_out), atol=0.1)


def test_unreadable_video_is_a_clear_error_and_leaves_nothing(fitted_ahd, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    out = tmp_path / "nested" / "result"
    assert tvau(["analyze", str(bad), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "error" in err
    assert not out.exists() and not (tmp_path / "nested").exists()
    assert tvau(["analyze", str(tmp_path / "missing.mp4"), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out),
                 "--quiet"]) == 1
    assert "missing.mp4" in capsys.readouterr().err and not out.exists()


def test_failure_while_writing_leaves_no_partial_output(analyzed, fitted_ahd, tmp_path, monkeypatch):
    video, _ = analyzed
    models = analyze_command.load_models(ckpt=str(fitted_ahd.checkpoint), rae_ckpt=None, device="cpu")
    monkeypatch.setattr(analyze_command, "load_models", lambda **kwargs: models)

    def broken_writer(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(analyze_module, "write_video", broken_writer)
    out = tmp_path / "result"
    with pytest.raises(RuntimeError, match="disk full"):
        tvau(["analyze", str(video.path), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(out), "--quiet"])
    assert list(tmp_path.iterdir()) == []


def test_link_detections_keeps_scores_and_ids():
    det = np.array([
        [0, 10, 10, 20, 20, 0.9],
        [0, 50, 50, 60, 60, 0.7],
        [1, 12, 11, 22, 21, 0.8],   # continues the first
        [2, 52, 52, 62, 62, 0.6],   # frame 1 has no box near (50, 50): a new track
        [2, 12, 11, 22, 21, 0.95],  # continues the first again, same box as frame 1
    ])
    tracks, ids = link_detections(det, link_iou=0.1)
    assert ids.tolist() == [0, 1, 0, 2, 0]
    assert tracks[0].frames.tolist() == [0, 1, 2] and tracks[0].scores.tolist() == [0.9, 0.8, 0.95]
    assert tracks[0].boxes.tolist() == [[10, 10, 20, 20], [12, 11, 22, 21], [12, 11, 22, 21]]
    assert [t.frames.tolist() for t in tracks[1:]] == [[0], [2]]
    assert link_detections(np.zeros((0, 6)))[0] == []


def test_frame_labels_from_files(tmp_path, fitted_ahd):
    (tmp_path / "l.txt").write_text("0 0 1\n1,0")
    assert read_frame_labels(tmp_path / "l.txt", 5).tolist() == [0, 0, 1, 1, 0]
    np.save(tmp_path / "l.npy", np.array([1, 0, 0]))
    assert read_frame_labels(tmp_path / "l.npy", 3).tolist() == [1, 0, 0]
    (tmp_path / "v_tracks.txt").write_text("3,1,2\n4,4,9")
    assert read_frame_labels(tmp_path / "v_tracks.txt", 6).tolist() == [0, 1, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="expected 4 labels"):
        read_frame_labels(tmp_path / "l.npy", 4)
    (tmp_path / "bad.txt").write_text("0 2 1")
    with pytest.raises(ValueError, match="other numbers"):
        read_frame_labels(tmp_path / "bad.txt", 3)
    normal_id = next(v for v in fitted_ahd.data.split("test") if not fitted_ahd.data.videos[v].abnormal)
    normal = fitted_ahd.data.videos[normal_id]
    labels, source = find_frame_labels(normal.path, normal.num_frames)
    assert labels.sum() == 0 and source.name.endswith("_annotations")
    assert find_frame_labels(tmp_path / "l.npy", 3) is None


def test_an_error_in_the_model_stops_the_prefetching_thread():
    """analyze_video decodes ahead in a thread; a model that fails mid-video must not leave it running, even
    while the traceback (and with it the function's frame) is kept, as a notebook keeps the last one."""
    import threading

    from tvau_lightning.inference.analyze import analyze_video

    class Frames:
        num_frames, fps, size, path = 64, 30.0, (16, 24), "frames.mp4"

        def read(self, indices):  # noqa: ANN001, ANN202
            return torch.zeros((len(indices), 16, 24, 3), dtype=torch.uint8)

    calls = []

    def failing_model(batch):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the model failed")
        return torch.zeros((batch.shape[0], 4, 2, 3))

    with pytest.raises(RuntimeError, match="the model failed") as failure:
        analyze_video(failing_model, Frames(), frame_size=(16, 24), clip_len=8, temporal_factor=2)
    assert failure.tb is not None  # the traceback (and the loop's frame) still held, as a notebook keeps it
    assert not [t for t in threading.enumerate() if t.name.startswith("tvau-analyze")]
