"""Synthetic native-format writers: deterministic, exact ground truth, reachable from `tvau synth-data`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.cli import main
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
from tvau_lightning.data.synthetic import MANIFEST_NAME, write_synthetic_ubnormal
from tvau_lightning.data.ubnormal import UBnormalDataset
from tvau_lightning.data.video import open_video

SMALL = {"videos_per_split": 2, "abnormal_per_split": 1, "num_frames": 14, "height": 48, "width": 64}


def _annotation_arrays(data):
    return {p.relative_to(data.root).as_posix(): np.asarray(Image.open(p)) for p in sorted(data.root.rglob("*.png"))}


def test_same_seed_same_dataset(tmp_path):
    a = write_synthetic_ubnormal(tmp_path / "a", seed=5, **SMALL)
    b = write_synthetic_ubnormal(tmp_path / "b", seed=5, **SMALL)
    pngs_a, pngs_b = _annotation_arrays(a), _annotation_arrays(b)
    assert pngs_a.keys() == pngs_b.keys() and len(pngs_a) == 6 * 14
    assert all(np.array_equal(pngs_a[k], pngs_b[k]) for k in pngs_a)
    texts = sorted(p.relative_to(a.root).as_posix() for p in a.root.rglob("*.txt"))
    assert texts == sorted(p.relative_to(b.root).as_posix() for p in b.root.rglob("*.txt"))
    assert all((a.root / t).read_text() == (b.root / t).read_text() for t in texts)
    for video_id, info in a.videos.items():
        frames_a = open_video(info.path).read(list(range(14))).int()
        frames_b = open_video(b.videos[video_id].path).read(list(range(14))).int()
        assert (frames_a - frames_b).abs().max() <= 2  # same pixels up to encoder nondeterminism
    c = write_synthetic_ubnormal(tmp_path / "c", seed=6, **SMALL)
    pngs_c = _annotation_arrays(c)
    assert any(not np.array_equal(pngs_a[k], pngs_c[k]) for k in pngs_a)


def test_manifest_records_the_ground_truth(tmp_path):
    data = write_synthetic_ubnormal(tmp_path / "ub", seed=1, **SMALL)
    manifest = json.loads((data.root / MANIFEST_NAME).read_text())
    assert manifest["dataset"] == "ubnormal" and manifest["size"] == [48, 64]
    for video_id, info in data.videos.items():
        record = manifest["videos"][video_id]
        assert record["frame_labels"] == info.frame_labels.tolist()
        assert record["tracks"] == [t.tolist() for t in info.tracks]
    # and the UBnormal reader agrees with it
    ds = UBnormalDataset(data.root, data.split_dir, split="test", clip_len=4, frame_size=None)
    for video_id in ds.video_ids:
        assert ds.frame_labels(video_id).tolist() == manifest["videos"][video_id]["frame_labels"]


def test_anomalies_are_bigger_and_faster_than_normal_objects(synthetic_ubnormal):
    for info in synthetic_ubnormal.videos.values():
        for track in info.tracks:
            video = info.path.parent / f"{info.video_id}_annotations"
            frame = int(track[0, 0])
            ids = np.asarray(Image.open(video / f"{info.video_id}_{frame:04d}_gt.png"))
            x1, y1, x2, y2 = track[0, 1:]
            area = (x2 - x1 + 1) * (y2 - y1 + 1)
            normal_areas = [(ids == o).sum() for o in info.normal_object_ids if (ids == o).any()]
            assert normal_areas and area > 2 * max(normal_areas)
            centres = (track[:, 1:3] + track[:, 3:5]) / 2
            assert np.abs(np.diff(centres, axis=0)).sum(axis=1).mean() > 2.0  # px per frame; people walk ~1


def test_cli_writes_shanghaitech_that_the_datamodule_reads(tmp_path, capsys):
    out = tmp_path / "st"
    code = main(["synth-data", "--dataset", "shanghaitech", "--out", str(out), "--videos", "3", "--abnormal", "2",
                 "--train-videos", "2", "--frames", "14", "--height", "48", "--width", "64", "--seed", "2"])
    assert code == 0
    assert "wrote synthetic shanghaitech: 5 videos of 48x64" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "training" / "videos").iterdir()) == ["01_001.avi", "02_001.avi"]
    assert len(list((out / "testing" / "frames").iterdir())) == 3
    assert np.load(out / "testing" / "test_pixel_mask" / "01_0001.npy").shape == (48, 64, 14)  # stored (H, W, T)
    dm = ShanghaiTechDataModule(str(out), clip_len=4, frame_size=None, gt_boxes=False)
    dm.setup("fit")
    assert len(dm.dataset("train").video_ids) == 2 and len(dm.dataset("val").video_ids) == 3
    assert dm.dataset("val").frame_labels("01_0001").any()


def test_cli_writes_ubnormal(tmp_path):
    out = tmp_path / "ub"
    assert main(["synth-data", "--dataset", "ubnormal", "--out", str(out), "--videos", "1", "--frames", "12",
                 "--height", "40", "--width", "48"]) == 0
    assert sorted(p.name for p in (out / "scripts").iterdir()) == sorted(
        f"{k}_{s}_video_names.txt" for k in ("abnormal", "normal") for s in ("training", "validation", "test")
    )
    assert len(list(out.glob("Scene*/*.mp4"))) == 3


def test_cli_rejects_bad_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["synth-data", "--dataset", "ubnormal", "--out", str(tmp_path / "x"), "--height", "41"])
    assert info.value.code == 2
    assert "even and at least 32x32" in capsys.readouterr().err
