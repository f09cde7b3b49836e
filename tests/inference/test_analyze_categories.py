"""`tvau analyze` with a weakly supervised category AHD (``WeakAHDTask``): the class names reach the model, the
per-frame categories in ``scores.csv`` match the model's own class maps, ``summary.json`` ranks the categories,
tracks carry their dominant category and ``report.html`` embeds it all; a binary AHD's outputs mention no
category."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from tvau_lightning.cli import main as tvau

UCF_NAMES = ["Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
             "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"]
CLIP_LEN, FRAME_SIZE = 8, (32, 64)


def _page_data(page) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S)
    assert match, "no data element in the page"
    return json.loads(match.group(1))


def _csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def weak(tmp_path_factory, tiny_backbone_dir):
    """A WeakAHDTask trained 2 steps on a tiny synthetic UCF-Crime, saved as a checkpoint."""
    from types import SimpleNamespace

    from lightning.pytorch import Trainer, seed_everything

    from tvau_lightning.backbones.types import BackboneConfig
    from tvau_lightning.data.synthetic_weak import write_synthetic_ucf_crime
    from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
    from tvau_lightning.tasks.weak_ahd import WeakAHDTask

    seed_everything(0)  # the task's random initialisation and the training order: the same outputs every run
    tmp = tmp_path_factory.mktemp("weak_analyze")
    data = write_synthetic_ucf_crime(tmp / "ucf", categories=("Abuse", "Arson"), train_per_category=1,
                                     test_per_category=1, normal_train=1, normal_test=1, num_frames=20, height=32,
                                     width=64)
    dm = UCFCrimeDataModule(str(data.root), split_dir=str(data.split_dir), clip_len=CLIP_LEN, frame_size=FRAME_SIZE,
                            num_workers=0)
    task = WeakAHDTask(BackboneConfig(path=str(tiny_backbone_dir("qwen2_5_vl")), dtype="float32"),
                       categories=UCF_NAMES, lr=1e-2, logit_scale=10.0)  # an unsaturated heatmap
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      default_root_dir=str(tmp))
    trainer.fit(task, dm)
    path = tmp / "weak.ckpt"
    trainer.save_checkpoint(path)
    video = next(v for v in data.videos.values() if v.split == "test" and "Arson" in v.categories)
    return SimpleNamespace(checkpoint=path, video=video.path, tmp=tmp, task=task, datamodule=dm)


def _independent(weak) -> dict[str, np.ndarray]:
    """The model's outputs on the video's frames, computed here: non-overlapping clips of CLIP_LEN frames (the
    last padded with its last frame), per frame the grid heatmap and the class probability maps of its step."""
    from tvau_lightning.data.transforms import resize_frames
    from tvau_lightning.data.video import open_video
    from tvau_lightning.modules.anomaly_model import load_ahd

    model = load_ahd(weak.checkpoint)
    source = open_video(weak.video)
    n = source.num_frames
    heat, probs = [], []
    for start in range(0, n, CLIP_LEN):
        index = np.arange(start, min(n, start + CLIP_LEN))
        frames = resize_frames(source.read(index), FRAME_SIZE)
        frames = torch.cat([frames, frames[-1:].expand(CLIP_LEN - len(index), *frames.shape[1:])])
        with torch.no_grad():
            out = model(frames[None])
        step = np.arange(CLIP_LEN) // model.temporal_factor
        heat.append(out.heatmap[0, step].float().numpy()[: len(index)])
        probs.append(out.logits[0, step].float().softmax(dim=1).numpy()[: len(index)])
    heat, probs = np.concatenate(heat), np.concatenate(probs)  # (N, H', W'), (N, K, H', W')
    full = torch.nn.functional.interpolate(torch.from_numpy(heat)[:, None], size=tuple(source.size), mode="bilinear",
                                           align_corners=False)
    return {"heat": heat, "probs": probs, "class_scores": probs.reshape(*probs.shape[:2], -1).max(axis=2),
            "frame_scores": full.flatten(1).amax(dim=1).numpy(), "size": np.array(source.size)}


@pytest.fixture(scope="module")
def analyzed(weak):
    expected = _independent(weak)
    # a threshold in the widest gap between the middle frame scores, so that some frames are above it (regions
    # exist) and some below
    ranked = np.sort(expected["frame_scores"])
    middle = ranked[len(ranked) // 4: len(ranked) - len(ranked) // 4]
    gap = int(np.argmax(np.diff(middle)))
    assert middle[gap + 1] - middle[gap] > 1e-4, f"frame scores too close to split: {ranked}"
    threshold = float(middle[gap] + middle[gap + 1]) / 2
    out = weak.tmp / "analyzed"
    code = tvau(["analyze", str(weak.video), "--ckpt", str(weak.checkpoint), "--out", str(out), "--quiet",
                 "--batch-size", "2", "--threshold", f"{threshold:.6f}"])
    assert code == 0
    return out, expected, threshold


def test_category_checkpoint_exposes_its_class_names(weak, tmp_path):
    from tvau_lightning.inference.export import export_checkpoint
    from tvau_lightning.modules.anomaly_model import load_ahd

    model = load_ahd(weak.checkpoint)
    assert model.class_names == UCF_NAMES and model.ahd.num_classes == len(UCF_NAMES)
    # the (C+1)-class decoder is rebuilt exactly: same prototypes, same heatmaps as the task that trained it
    torch.testing.assert_close(model.ahd.prototypes, weak.task.ahd.prototypes.cpu())
    clip = torch.randint(0, 256, (1, CLIP_LEN, *FRAME_SIZE, 3), dtype=torch.uint8)
    weak.task.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(clip).heatmap, weak.task.heatmap_model(clip).heatmap)
    folder = export_checkpoint(weak.checkpoint, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config["class_names"] == UCF_NAMES
    assert load_ahd(folder).class_names == UCF_NAMES
    # a hand-written config.json that gives only the top-level class names
    del config["hyper_parameters"]["categories"]
    (folder / "config.json").write_text(json.dumps(config))
    assert load_ahd(folder).class_names == UCF_NAMES
    config["class_names"] = UCF_NAMES[:3]
    (folder / "config.json").write_text(json.dumps(config))
    from tvau_lightning.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="names 3 categories"):
        load_ahd(folder)


def test_scores_csv_categories_match_the_class_maps(analyzed):
    out, expected, _ = analyzed
    rows = _csv(out / "scores.csv")
    assert list(rows[0]) == ["frame", "score", "category", "category_score"]
    scores = expected["class_scores"]
    assert len(rows) == len(scores)
    for f, row in enumerate(rows):
        k = int(np.argmax(scores[f, 1:])) + 1
        assert float(row["category_score"]) == pytest.approx(scores[f, k], abs=2e-5)
        top2 = np.sort(scores[f, 1:])[-2:]
        if top2[1] - top2[0] > 1e-5:  # a tie may break either way in float rounding
            assert row["category"] == UCF_NAMES[k], f"frame {f}"
        else:
            assert float(row["category_score"]) == pytest.approx(top2[1], abs=2e-5)


def test_summary_ranks_the_categories_over_the_frames_above_the_threshold(analyzed):
    out, expected, threshold = analyzed
    summary = json.loads((out / "summary.json").read_text())
    rows = _csv(out / "scores.csv")
    frame_scores = np.array([float(r["score"]) for r in rows])
    above = frame_scores > threshold
    assert above.any() and not above.all()
    assert summary["class_names"] == UCF_NAMES and summary["category_basis"] == "above_threshold"
    ranking = summary["categories"]
    assert sorted(r["name"] for r in ranking) == sorted(UCF_NAMES[1:])
    scores = expected["class_scores"]
    for r in ranking:
        k = UCF_NAMES.index(r["name"])
        assert r["score"] == pytest.approx(scores[above, k].mean(), abs=2e-5)
        assert r["max"] == pytest.approx(scores[:, k].max(), abs=2e-5)
        assert r["frames"] == sum(1 for f in np.flatnonzero(above) if rows[f]["category"] == r["name"])
    assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
    assert summary["top_category"] == ranking[0]["name"]


def test_tracks_carry_their_dominant_category(analyzed):
    out, expected, _ = analyzed
    regions = json.loads((out / "regions.json").read_text())
    assert regions["tracks"], "the threshold should leave regions"
    height, width = (int(v) for v in expected["size"])
    probs = expected["probs"]
    grid_h, grid_w = probs.shape[2:]
    row_cell = np.arange(height) * grid_h // height  # the grid cell holding each pixel
    col_cell = np.arange(width) * grid_w // width
    for track in regions["tracks"]:
        per_box = []
        for f, (x1, y1, x2, y2) in zip(track["frames"], track["boxes"]):
            rows, cols = np.unique(row_cell[y1:y2 + 1]), np.unique(col_cell[x1:x2 + 1])
            per_box.append(probs[f][:, rows][:, :, cols].reshape(len(UCF_NAMES), -1).max(axis=1))
        per_box = np.array(per_box)
        k = int(per_box[:, 1:].sum(axis=0).argmax()) + 1
        assert track["category"] == UCF_NAMES[k]
        assert track["category_score"] == pytest.approx(per_box[:, k].mean(), abs=2e-5)
    for frame in regions["frames"]:
        assert frame["category"] in UCF_NAMES[1:]
        assert all(r["category"] in UCF_NAMES[1:] for r in frame["regions"])


def test_report_shows_the_categories(analyzed):
    out, _, _ = analyzed
    data = _page_data(out / "report.html")
    rows = _csv(out / "scores.csv")
    summary = json.loads((out / "summary.json").read_text())
    cats = data["categories"]
    assert cats["names"] == UCF_NAMES
    assert [cats["names"][k] for k in cats["frame"]] == [r["category"] for r in rows]
    assert cats["score"] == pytest.approx([float(r["category_score"]) for r in rows], abs=1e-4)
    assert len(set(cats["colors"][1:])) == len(UCF_NAMES) - 1 and cats["colors"][0] is None
    assert data["summary"]["top_category"] == summary["top_category"]
    regions = json.loads((out / "regions.json").read_text())
    assert {t["id"]: t["category"] for t in data["tracks"]} == {t["id"]: t["category"] for t in regions["tracks"]}


def test_binary_checkpoint_outputs_have_no_categories(fitted_ahd, tmp_path):
    from tvau_lightning.modules.anomaly_model import load_ahd

    assert load_ahd(fitted_ahd.checkpoint).class_names is None
    video_id = next(v for v in fitted_ahd.data.split("test") if fitted_ahd.data.videos[v].abnormal)
    out = tmp_path / "binary"
    assert tvau(["analyze", str(fitted_ahd.data.videos[video_id].path), "--ckpt", str(fitted_ahd.checkpoint),
                 "--out", str(out), "--quiet"]) == 0
    assert list(_csv(out / "scores.csv")[0]) == ["frame", "score", "label"]
    summary = json.loads((out / "summary.json").read_text())
    assert not {"class_names", "categories", "top_category", "category_basis"} & set(summary)
    regions = json.loads((out / "regions.json").read_text())
    assert "category" not in json.dumps(regions)
    data = _page_data(out / "report.html")
    assert "categories" not in data and all(t["category"] is None for t in data["tracks"])


def test_predict_writes_the_class_scores_of_every_frame(weak, tmp_path):
    """`tvau predict`'s HeatmapWriter keeps a category AHD's per-frame class scores: every test frame once, with
    the class names, and the CSV's category is the top anomaly class of those scores."""
    from lightning.pytorch import Trainer

    from tvau_lightning.inference.writers import HeatmapWriter

    out = tmp_path / "predictions"
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[HeatmapWriter(str(out))], default_root_dir=str(tmp_path))
    trainer.predict(weak.task, datamodule=weak.datamodule, return_predictions=False)
    dataset = weak.datamodule.dataset("test")
    rows = _csv(out / "frame_scores.csv")
    assert list(rows[0]) == ["video_id", "frame", "score", "category", "category_score"]
    for video_id in dataset.video_ids:
        saved = np.load(out / f"{video_id}.npz")
        assert saved["class_names"].tolist() == UCF_NAMES
        classes = saved["frame_class_scores"]
        assert saved["frame_index"].tolist() == list(range(dataset.num_frames(video_id)))
        assert classes.shape == (dataset.num_frames(video_id), len(UCF_NAMES))
        assert ((classes >= 0) & (classes <= 1)).all()
        mine = [r for r in rows if r["video_id"] == video_id]
        top = classes[:, 1:].argmax(axis=1) + 1
        assert [r["category"] for r in mine] == [UCF_NAMES[k] for k in top]
        np.testing.assert_allclose([float(r["category_score"]) for r in mine], classes[np.arange(len(top)), top],
                                   atol=1e-6)
