"""XD-Violence in its native layout, against the synthetic writer's exact ground truth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tvau_lightning.data.clips import DatasetFormatError
from tvau_lightning.data.temporal_annotations import XD_VIOLENCE_CODES
from tvau_lightning.data.xd_violence import XDViolenceDataModule


def _dm(root, **kwargs) -> XDViolenceDataModule:
    return XDViolenceDataModule(str(root), **({"clip_len": 8, "frame_size": None, "num_workers": 0} | kwargs))


@pytest.fixture()
def copy(synthetic_xd_violence, tmp_path):
    out = tmp_path / "xd"
    shutil.copytree(synthetic_xd_violence.out, out)
    return out


def _expected_categories(truth, per_segment: bool) -> np.ndarray:
    cats = np.zeros((truth.num_frames, len(XD_VIOLENCE_CODES)), dtype=bool)
    for code, first, stop in truth.segments:
        codes = (code,) if per_segment else truth.categories
        for c in codes:
            cats[first:stop, XD_VIOLENCE_CODES.index(c)] = True
    cats[~cats[:, 1:].any(axis=1), 0] = True
    return cats


def test_written_layout_is_the_native_one(synthetic_xd_violence):
    data = synthetic_xd_violence
    names = sorted(p.name for p in (data.root / "test").iterdir())
    assert any(n.endswith("_label_A.mp4") for n in names) and any(n.endswith("_label_B1-B2-0.mp4") for n in names)
    lines = data.annotation_file.read_text().splitlines()
    assert lines[-1].split()[0].endswith(".mp4")  # one line with the suffix, as in the official file
    assert all(len(line.split()) % 2 == 1 for line in lines)


def test_train_split_multi_labels(synthetic_xd_violence):
    data = synthetic_xd_violence
    ds = _dm(data.root).dataset("train")
    assert sorted(ds.video_ids) == sorted(data.split("train"))
    multi = next(v for v in ds.video_ids if v.endswith("label_B1-B2-0"))
    assert [XD_VIOLENCE_CODES[k] for k in np.flatnonzero(ds.video_labels(multi))] == ["B1", "B2"]
    assert set(ds.frame_labels(multi).tolist()) == {-1}


def test_test_split_labels_and_label_sets(synthetic_xd_violence):
    data = synthetic_xd_violence
    dm = _dm(data.root)
    ds = dm.dataset("test")
    assert sorted(ds.video_ids) == sorted(data.split("test"))
    for video_id in ds.video_ids:
        truth = data.videos[video_id]
        np.testing.assert_array_equal(ds.frame_labels(video_id), truth.frame_labels())
        # annotations.txt has no per-segment category: a two-label video's segments carry both labels
        np.testing.assert_array_equal(ds.frame_categories(video_id), _expected_categories(truth, per_segment=False))
    assert dm.category_names == ("Normal", "Fighting", "Shooting", "Riot", "Abuse", "Car accident", "Explosion")


def test_per_segment_category_file(synthetic_xd_violence, tmp_path):
    data = synthetic_xd_violence
    lines = []
    for video_id in data.split("test"):
        truth = data.videos[video_id]
        if truth.segments:
            lines.append(" ".join([video_id, *(f"{c} {a} {b}" for c, a, b in truth.segments)]))
    path = tmp_path / "annotations_multiclasses.txt"
    path.write_text("\n".join(lines) + "\n")
    ds = _dm(data.root, annotation_file=str(path)).dataset("test")
    for video_id in ds.video_ids:
        np.testing.assert_array_equal(ds.frame_categories(video_id),
                                      _expected_categories(data.videos[video_id], per_segment=True))


def test_annotated_video_missing_from_the_folder(copy):
    victim = next(p for p in (copy / "test").iterdir() if "label_G" in p.name)
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=rf"annotated in .*annotations.txt are not under .*{victim.stem[:12]}"):
        _dm(copy).dataset("test")


def test_abnormal_test_video_without_annotation(copy):
    path = copy / "annotations.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line for line in lines if "label_B2-0-0" not in line) + "\n")
    with pytest.raises(DatasetFormatError, match="label_B2-0-0.mp4 \\(labels B2\\) has no line in"):
        _dm(copy).dataset("test")


def test_video_name_without_labels(copy):
    next((copy / "train").iterdir()).rename(copy / "train" / "holiday_clip.mp4")
    with pytest.raises(DatasetFormatError, match="'holiday_clip.mp4' carries no '_label_"):
        _dm(copy).dataset("train")


def test_empty_or_missing_folder(copy):
    with pytest.raises(FileNotFoundError, match="XD-Violence folder not found"):
        _dm(copy, train_dir="Train").dataset("train")
    (copy / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="holds no .mp4 videos"):
        _dm(copy, train_dir="empty").dataset("train")
