"""UCF-Crime in its native layout, against the synthetic writer's exact ground truth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from tvau_lightning.data.clips import DatasetFormatError
from tvau_lightning.data.synthetic_weak import CATEGORY_LOOKS, MASK_DIR
from tvau_lightning.data.temporal_annotations import UCF_CRIME_CATEGORIES
from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
from tvau_lightning.data.video import open_video


def _dm(data, **kwargs) -> UCFCrimeDataModule:
    kwargs = {"clip_len": 8, "frame_size": None, "num_workers": 0} | kwargs
    return UCFCrimeDataModule(str(data.root), split_dir=str(data.split_dir), **kwargs)


@pytest.fixture()
def copy(synthetic_ucf_crime, tmp_path):
    """A private copy a test may damage: (videos root, split dir)."""
    out = tmp_path / "ucf"
    shutil.copytree(synthetic_ucf_crime.out, out)
    return out / "Videos", out / "Anomaly_Detection_splits"


def test_written_layout_is_the_native_one(synthetic_ucf_crime):
    data = synthetic_ucf_crime
    lines = (data.split_dir / "Anomaly_Train.txt").read_text().splitlines()
    assert "Abuse/Abuse001_x264.mp4" in lines and "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4" in lines
    assert "Testing_Normal_Videos_Anomaly/Normal_Videos_001_x264.mp4" in (data.split_dir / "Anomaly_Test.txt").read_text()
    annotation = data.annotation_file.read_text().splitlines()
    assert "Normal_Videos_001_x264.mp4  Normal  -1  -1  -1  -1  " in annotation
    two = [line for line in annotation if not line.endswith("-1  -1  ")]
    assert len(two) == 1  # the first abnormal test video has two ranges
    for line in lines:
        assert (data.root / line).is_file()


def test_train_split_gives_video_labels_only(synthetic_ucf_crime):
    data = synthetic_ucf_crime
    dm = _dm(data)
    ds = dm.dataset("train")
    assert sorted(ds.video_ids) == sorted(data.split("train"))
    for video_id in ds.video_ids:
        truth = data.videos[video_id]
        expected = np.zeros(len(UCF_CRIME_CATEGORIES), dtype=bool)
        expected[UCF_CRIME_CATEGORIES.index(truth.categories[0])] = True
        np.testing.assert_array_equal(ds.video_labels(video_id), expected)
        assert set(ds.frame_labels(video_id).tolist()) == ({0} if truth.categories == ("Normal",) else {-1})
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=dm.collate_fn)))
    assert batch.video_labels.shape == (2, 14) and batch.frame_categories is None
    assert not batch.masks.any() and batch.gt_boxes is None


def test_test_split_frame_labels_and_categories_equal_the_drawn_ones(synthetic_ucf_crime):
    data = synthetic_ucf_crime
    ds = _dm(data).dataset("test")
    assert sorted(ds.video_ids) == sorted(data.split("test"))
    for video_id in ds.video_ids:
        truth = data.videos[video_id]
        np.testing.assert_array_equal(ds.frame_labels(video_id), truth.frame_labels())
        cats = ds.frame_categories(video_id)
        column = UCF_CRIME_CATEGORIES.index(truth.categories[0])
        if column:
            np.testing.assert_array_equal(cats[:, column], truth.frame_labels().astype(bool))
        assert (cats.sum(axis=1) == 1).all() and (cats[:, 0] == (truth.frame_labels() == 0)).all()
    # every frame once, categories padded with False
    seen = {v: [] for v in ds.video_ids}
    for item in ds:
        index = item.frame_index[item.valid].numpy()
        seen[item.video_id] += index.tolist()
        np.testing.assert_array_equal(item.frame_categories[item.valid].numpy(), ds.frame_categories(item.video_id)[index])
        assert not item.frame_categories[~item.valid].any()
    assert all(sorted(f) == list(range(ds.num_frames(v))) for v, f in seen.items())


def test_other_range_conventions_shift_the_labels(synthetic_ucf_crime):
    data = synthetic_ucf_crime
    ds = _dm(data, range_convention="zero_based_exclusive").dataset("test")
    for video_id in ds.video_ids:  # the file holds (first + 1, stop): read as [s, e) that is one frame later
        expected = np.zeros(data.videos[video_id].num_frames, dtype=np.int64)
        for _, first, stop in data.videos[video_id].segments:
            expected[first + 1:stop] = 1
        np.testing.assert_array_equal(ds.frame_labels(video_id), expected)
    with pytest.raises(ValueError, match="unknown range_convention"):
        _dm(data, range_convention="one_based")


def test_side_masks_hold_the_category_look(synthetic_ucf_crime):
    data = synthetic_ucf_crime
    for video_id in data.split("test"):
        truth = data.videos[video_id]
        masks = truth.masks()
        assert truth.mask_file.parent.name == MASK_DIR
        np.testing.assert_array_equal(masks.reshape(len(masks), -1).any(axis=1), truth.frame_labels().astype(bool))
        if truth.categories == ("Normal",):
            continue
        colour, _ = CATEGORY_LOOKS[UCF_CRIME_CATEGORIES.index(truth.categories[0])]
        frame = int(np.flatnonzero(truth.frame_labels())[0]) + 1
        pixels = open_video(truth.path).read([frame])[0].numpy()[masks[frame]]
        assert np.abs(np.median(pixels, axis=0) - colour).max() < 40  # the video shows the category's colour


def test_normal_videos_found_where_the_archive_unpacks_them(copy):
    root, split_dir = copy
    (root / "Training_Normal_Videos_Anomaly").rename(root / "Training-Normal-Videos-Part-1")
    dm = UCFCrimeDataModule(str(root), split_dir=str(split_dir), clip_len=8, frame_size=None)
    assert any(v.startswith("Normal_Videos0") for v in dm.dataset("train").video_ids)
    assert not any("Normal" in v for v in UCFCrimeDataModule(
        str(root), split_dir=str(split_dir), clip_len=8, include_normal=False).dataset("train").video_ids)


def test_missing_video_is_named(copy):
    root, split_dir = copy
    (root / "Arson" / "Arson001_x264.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 video\(s\) listed in .*Anomaly_Train.txt are not under .*'Arson001_x264'"):
        UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("train")


def test_test_video_without_annotation_or_with_another_category(copy):
    root, split_dir = copy
    path = split_dir / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    lines = path.read_text().splitlines()
    victim = next(line for line in lines if line.startswith("Explosion"))
    path.write_text("\n".join(line for line in lines if line != victim) + "\n")
    name = victim.split()[0][:-4]
    with pytest.raises(DatasetFormatError, match=f"test video '{name}' .* has no line in"):
        UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("test")
    path.write_text("\n".join(lines).replace(f"{name}.mp4  Explosion", f"{name}.mp4  Arson") + "\n")
    with pytest.raises(DatasetFormatError, match="is annotated 'Arson' but its name says 'Explosion'"):
        UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("test")


def test_unknown_category_in_a_split_list(copy):
    root, split_dir = copy
    with (split_dir / "Anomaly_Train.txt").open("a") as handle:
        handle.write("Kidnapping/Kidnapping001_x264.mp4\n")
    with pytest.raises(DatasetFormatError, match="cannot tell the UCF-Crime category of 'Kidnapping001_x264'"):
        UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("train")


def test_datamodule_loaders_batch_clips(synthetic_ucf_crime):
    dm = _dm(synthetic_ucf_crime, frame_size=(32, 48), batch_size=3)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch.frames.shape == (3, 8, 32, 48, 3) and batch.frame_categories.shape == (3, 8, 14)
    assert dm.categories[0] == "Normal" and len(dm.categories) == 14
    assert next(iter(dm.val_dataloader())).frame_categories is not None  # val reads the test split


def test_annotation_under_the_repository_name_is_found(copy):
    root, split_dir = copy
    (split_dir / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").rename(split_dir / "Temporal_Anomaly_Annotation.txt")
    dm = UCFCrimeDataModule(str(root), split_dir=str(split_dir), clip_len=8)
    assert dm.annotation_file.endswith("Temporal_Anomaly_Annotation.txt") and dm.dataset("test").video_ids


def test_a_name_found_twice_is_an_error_unless_the_copies_are_twins(copy):
    root, split_dir = copy
    (root / "Training_Normal_Videos_Anomaly").rename(root / "Training-Normal-Videos-Part-1")
    (root / "Normal_Videos_event").mkdir()
    twin = root / "Normal_Videos_event" / "Normal_Videos001_x264.mp4"
    shutil.copy(root / "Training-Normal-Videos-Part-1" / "Normal_Videos001_x264.mp4", twin)
    assert "Normal_Videos001_x264" in UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("train").video_ids
    twin.write_bytes(twin.read_bytes()[:-10])  # no longer the same file
    with pytest.raises(DatasetFormatError, match="several files under .* share its name"):
        UCFCrimeDataModule(str(root), split_dir=str(split_dir)).dataset("train")
