"""`tvau synth-data --dataset ucf_crime|xd_violence` writes the native layouts the DataModules read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tvau_lightning.commands.synth_data import synth_data_main
from tvau_lightning.data.synthetic_weak import (
    CATEGORY_LOOKS,
    MANIFEST_NAME,
    SHAPES,
    shape_mask,
    write_synthetic_ucf_crime,
)
from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
from tvau_lightning.data.xd_violence import XDViolenceDataModule


def test_every_category_has_its_own_look():
    looks = list(CATEGORY_LOOKS.values())
    assert len(looks) >= 13 and len(set(looks)) == len(looks)
    assert len({colour for colour, _ in looks}) == len(looks)


def test_shapes_differ_and_fit_their_radius():
    masks = {s: shape_mask(s, 41, 41, 20, 20, 10) for s in SHAPES}
    for name, mask in masks.items():
        ys, xs = np.nonzero(mask)
        assert mask[20, 20] != (name == "ring")  # the ring is hollow
        assert xs.min() >= 10 and xs.max() <= 30 and ys.min() >= 10 and ys.max() <= 30, name
    assert len({m.tobytes() for m in masks.values()}) == len(SHAPES)
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask("star", 8, 8, 4, 4, 2)


@pytest.mark.parametrize("dataset", ["ucf_crime", "xd_violence"])
def test_cli_writes_a_dataset_its_datamodule_reads(dataset, tmp_path, capsys):
    out = tmp_path / dataset
    assert synth_data_main(["--dataset", dataset, "--out", str(out), "--frames", "16", "--height", "32",
                            "--width", "64", "--seed", "4"]) == 0
    assert f"wrote synthetic {dataset}" in capsys.readouterr().out
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    shutil.rmtree(out / "synthetic_masks")  # the pixel masks are the writer's secret: the DataModule never reads them
    if dataset == "ucf_crime":
        dm = UCFCrimeDataModule(manifest["root"], split_dir=manifest["split_dir"], clip_len=4, frame_size=None)
    else:
        dm = XDViolenceDataModule(manifest["root"], clip_len=4, frame_size=None)
    test = dm.dataset("test")
    for video_id in test.video_ids:
        expected = np.zeros(manifest["videos"][video_id]["num_frames"], dtype=np.int64)
        for _, first, stop in manifest["videos"][video_id]["segments"]:
            expected[first:stop] = 1
        np.testing.assert_array_equal(test.frame_labels(video_id), expected)
    item = dm.dataset("train")[0]
    assert item.video_labels is not None and not item.masks.any()


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(ValueError, match="UCF-Crime anomaly categories"):
        write_synthetic_ucf_crime(tmp_path, categories=("Riot",))
    with pytest.raises(SystemExit):
        synth_data_main(["--dataset", "ucf_crime", "--out", str(tmp_path / "x"), "--frames", "8"])


def test_pixel_labelled_datasets_still_route_to_their_writer(tmp_path, capsys):
    assert synth_data_main(["--dataset", "shanghaitech", "--out", str(tmp_path / "st"), "--videos", "1",
                            "--abnormal", "1", "--train-videos", "1", "--frames", "12", "--height", "32",
                            "--width", "64"]) == 0
    assert "wrote synthetic shanghaitech" in capsys.readouterr().out
