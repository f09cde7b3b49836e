"""UBnormal in its native layout, against the synthetic writer's exact ground truth."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from tvau_lightning.data.clips import DatasetFormatError
from tvau_lightning.data.synthetic import write_synthetic_ubnormal
from tvau_lightning.data.types import ClipBatch
from tvau_lightning.data.ubnormal import (
    UBnormalDataModule,
    UBnormalDataset,
    largest_region_box,
    parse_tracks_file,
    scene_of,
)
from tvau_lightning.data.video import VideoReadError


def _dataset(data, split="test", **kwargs) -> UBnormalDataset:
    kwargs = {"clip_len": 8, "frame_size": None} | kwargs
    return UBnormalDataset(data.root, data.split_dir, split=split, **kwargs)


def _annotations(data, video_id) -> Path:
    return data.videos[video_id].path.parent / f"{video_id}_annotations"


def _png(data, video_id, frame) -> np.ndarray:
    return np.asarray(Image.open(_annotations(data, video_id) / f"{video_id}_{frame:04d}_gt.png"))


def _expected_mask(data, video_id, frame) -> np.ndarray:
    info = data.videos[video_id]  # masks follow the _tracks.txt lines, like the frame labels
    active = [o for o, s, e in info.label_tracks if s <= frame <= e]
    return np.isin(_png(data, video_id, frame), active)


@pytest.fixture()
def copy(synthetic_ubnormal, tmp_path):
    """A private copy of the synthetic dataset that a test may damage; returns (root, split_dir)."""
    root = tmp_path / "ubnormal"
    shutil.copytree(synthetic_ubnormal.root, root)
    return root, root / "scripts"


# ------------------------------------------------------------------------------------------------ listing
def test_splits_list_the_split_files_videos(synthetic_ubnormal):
    for split in ("training", "validation", "test"):
        ds = _dataset(synthetic_ubnormal, split)
        assert ds.video_ids == synthetic_ubnormal.split(split)
        for video_id in ds.video_ids:
            assert ds.num_frames(video_id) == synthetic_ubnormal.videos[video_id].num_frames
            assert ds.original_size(video_id) == synthetic_ubnormal.size
    # the DataModule accepts the short split spellings too
    assert _dataset(synthetic_ubnormal, "train").video_ids == synthetic_ubnormal.split("training")
    assert _dataset(synthetic_ubnormal, "val").video_ids == synthetic_ubnormal.split("validation")
    abnormal_only = _dataset(synthetic_ubnormal, include_normal=False)
    assert all(v.startswith("abnormal") for v in abnormal_only.video_ids) and abnormal_only.video_ids


def test_scene_number_parsing():
    assert scene_of("abnormal_scene_4_scenario_2") == 4
    assert scene_of("normal_scene_17_scenario_3_fog") == 17
    assert scene_of("abnormal_Scene12_scenario_1") == 12
    assert scene_of("weird_video") is None


def test_video_in_an_unexpected_scene_folder_is_found(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = synthetic_ubnormal.split("test")[0]
    scene = scene_of(video_id)
    elsewhere = root / "Scene99"
    elsewhere.mkdir()
    shutil.move(root / f"Scene{scene}" / f"{video_id}.mp4", elsewhere)
    shutil.move(root / f"Scene{scene}" / f"{video_id}_annotations", elsewhere)
    ds = UBnormalDataset(root, split_dir, split="test", clip_len=8, frame_size=None)
    assert ds.videos[video_id].video_path == elsewhere / f"{video_id}.mp4"
    assert ds[0].video_id == video_id


# ------------------------------------------------------------------------------------------------ labels
def test_frame_labels_match_the_tracks(synthetic_ubnormal):
    for split in ("training", "validation", "test"):
        ds = _dataset(synthetic_ubnormal, split)
        for video_id in ds.video_ids:
            expected = synthetic_ubnormal.videos[video_id].frame_labels
            np.testing.assert_array_equal(ds.frame_labels(video_id), expected)
            assert ds.frame_labels(video_id).dtype == np.int64


def test_new_tracks_file_gives_the_region_tracks_only(synthetic_ubnormal):
    """The default synthetic _new_tracks.txt splits each range in two: same frames, twice the tracks."""
    overridden = [v for v in synthetic_ubnormal.videos
                  if (_annotations(synthetic_ubnormal, v) / f"{v}_new_tracks.txt").is_file()]
    assert overridden, "the synthetic data must contain a _new_tracks.txt case"
    for video_id in overridden:
        ds = _dataset(synthetic_ubnormal, synthetic_ubnormal.videos[video_id].split)
        old = parse_tracks_file(_annotations(synthetic_ubnormal, video_id) / f"{video_id}_tracks.txt")
        new = parse_tracks_file(_annotations(synthetic_ubnormal, video_id) / f"{video_id}_new_tracks.txt")
        assert len(new) == 2 * len(old)
        assert list(ds.tracks(video_id)) == old and list(ds.region_tracks(video_id)) == new
        assert ds.videos[video_id].tracks_path.name == f"{video_id}_tracks.txt"
        assert ds.videos[video_id].region_tracks_path.name == f"{video_id}_new_tracks.txt"
        assert len(ds.gt_tracks(video_id)) == len(new)


def test_frame_labels_follow_tracks_and_regions_follow_new_tracks(tmp_path):
    """_tracks.txt and _new_tracks.txt cover different frames: labels and masks follow the first, RBDC/TBDC
    tracks the second (the authors' write_frame_level_ground_truth.py / create_tracks_for_tbdc_rbdc.py)."""
    data = write_synthetic_ubnormal(tmp_path / "ub", videos_per_split=1, abnormal_per_split=1, num_frames=24,
                                    num_scenes=1, normal_objects=1, new_tracks="narrow")
    (video_id,) = [v for v in data.split("test")]
    annotations = _annotations(data, video_id)
    old = parse_tracks_file(annotations / f"{video_id}_tracks.txt")
    new = parse_tracks_file(annotations / f"{video_id}_new_tracks.txt")
    labels_old = np.zeros(24, dtype=np.int64)
    for t in old:
        labels_old[t.start: t.end + 1] = 1
    labels_new = np.zeros(24, dtype=np.int64)
    for t in new:
        labels_new[t.start: t.end + 1] = 1
    assert (labels_old != labels_new).any()
    dm = UBnormalDataModule(str(data.root), str(data.split_dir), clip_len=8, frame_size=None,
                            gt_box_convention="inclusive")
    ds = dm.dataset("test")
    np.testing.assert_array_equal(ds.frame_labels(video_id), labels_old)
    tracks = ds.gt_tracks(video_id)
    assert [(int(t[0, 0]), int(t[-1, 0])) for t in tracks] == [(t.start, t.end) for t in new]
    for got, expected in zip(tracks, data.videos[video_id].tracks):
        np.testing.assert_array_equal(got, expected)
    # masks: the object on every frame of the _tracks.txt range, including the frames _new_tracks.txt leaves out
    only_old = [f for f in range(24) if labels_old[f] and not labels_new[f]]
    assert only_old
    masks = ds._read_masks(video_id, np.array(only_old))
    assert all(masks[i].any() for i in range(len(only_old)))
    # the DataModule's default writes boxes as the authors do: one past the last pixel
    authors = UBnormalDataModule(str(data.root), str(data.split_dir), clip_len=8, frame_size=None).dataset("test")
    for got, inclusive in zip(authors.gt_tracks(video_id), tracks):
        np.testing.assert_array_equal(got, inclusive + np.array([0, 0, 0, 1, 1]))


def test_largest_region_is_chosen_by_bounding_rectangle_area():
    """The authors keep the contour whose boundingRect w*h is largest, not the one with most pixels."""
    ids = np.zeros((30, 40), dtype=np.uint8)
    ids[2:8, 2:8] = 5  # a solid 6x6 square: 36 pixels, rectangle 36
    ids[12:26, 20] = 5  # an L of 14 + 13 = 27 pixels, rectangle 14x14 = 196
    ids[25, 21:34] = 5
    assert largest_region_box(ids, 5) == (20, 12, 33, 25)
    assert largest_region_box(ids, 5, "authors") == (20, 12, 34, 26)
    assert largest_region_box(ids, 7) is None
    ids[0, 39] = 9  # one pixel: w = h = 1
    assert largest_region_box(ids, 9) == (39, 0, 39, 0) and largest_region_box(ids, 9, "authors") == (39, 0, 40, 1)
    tie = np.zeros((20, 20), dtype=np.uint8)
    tie[2:5, 10:13] = 3  # two 3x3 squares: OpenCV lists contours last-found first, so the lower one wins
    tie[12:15, 1:4] = 3
    assert largest_region_box(tie, 3) == (1, 12, 3, 14)


def test_largest_region_box_equals_the_authors_opencv_rule():
    """Only where OpenCV is installed (it is not a dependency): the authors' get_bbox on random masks."""
    cv2 = pytest.importorskip("cv2")

    def authors(mask):  # create_tracks_for_tbdc_rbdc.py: contours, first largest boundingRect, (x, y, x+w, y+h)
        contours, _ = cv2.findContours(np.uint8(mask * 255), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        rects = [cv2.boundingRect(c) for c in contours]
        x, y, w, h = max(rects, key=lambda r: r[2] * r[3])  # max() keeps the first of equal areas
        return x, y, x + w, y + h

    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = rng.integers(3, 50, 2)
        ids = np.zeros((height, width), dtype=np.uint8)
        for _ in range(rng.integers(1, 8)):
            h, w = rng.integers(1, max(2, height // 2)), rng.integers(1, max(2, width // 2))
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            ids[y:y + h, x:x + w] = 7
        ids[rng.random((height, width)) < rng.uniform(0.0, 0.3)] = 7
        assert largest_region_box(ids, 7, "authors") == authors(ids == 7)


def test_one_line_tracks_file_without_newline(synthetic_ubnormal):
    one_line = []
    for video_id, info in synthetic_ubnormal.videos.items():
        path = _annotations(synthetic_ubnormal, video_id) / f"{video_id}_tracks.txt"
        if info.abnormal and path.is_file() and "\n" not in path.read_text():
            one_line.append((video_id, path))
    assert one_line, "the synthetic data must contain a one-line tracks file"
    for video_id, path in one_line:
        tracks = parse_tracks_file(path)
        info = synthetic_ubnormal.videos[video_id]
        assert [(t.object_id, t.start, t.end) for t in tracks] == [
            (info.track_object_ids[0], *info.track_ranges[0])
        ]


def test_tracks_parser_accepts_float_notation_and_blank_lines(tmp_path):
    path = tmp_path / "v_tracks.txt"
    path.write_text("3.000000e+00,1.000000e+01,2.000000e+01\n\n 5, 0, 7 \n")
    assert [(t.object_id, t.start, t.end) for t in parse_tracks_file(path)] == [(3, 10, 20), (5, 0, 7)]


# ------------------------------------------------------------------------------------------------ masks
def test_masks_hold_tracked_objects_only_within_their_range(synthetic_ubnormal):
    ds = _dataset(synthetic_ubnormal, "training")
    checked_outside = checked_normal = 0
    for index in range(len(ds)):
        item = ds[index]
        info = synthetic_ubnormal.videos[item.video_id]
        for k in np.flatnonzero(item.valid.numpy()):
            frame = int(item.frame_index[k])
            ids = _png(synthetic_ubnormal, item.video_id, frame)
            mask = item.masks[k].numpy()
            np.testing.assert_array_equal(mask, _expected_mask(synthetic_ubnormal, item.video_id, frame))
            normal_pixels = np.isin(ids, info.normal_object_ids)
            assert not (mask & normal_pixels).any()
            checked_normal += int(normal_pixels.any())
            for object_id, (start, end) in zip(info.track_object_ids, info.track_ranges):
                if not start <= frame <= end and (ids == object_id).any():
                    assert not mask[ids == object_id].any()  # the object is in the png but not abnormal yet
                    checked_outside += 1
            assert bool(mask.any()) == bool(item.frame_labels[k])
    assert checked_normal > 0
    assert checked_outside > 0, "the synthetic data must show a tracked object outside its range"


def test_resized_masks_are_nearest_samples_of_the_original(synthetic_ubnormal):
    full = _dataset(synthetic_ubnormal, "test")
    half = _dataset(synthetic_ubnormal, "test", frame_size=(60, 90))
    for index in range(len(full)):
        a, b = full[index], half[index]
        assert b.frames.shape[1:] == (60, 90, 3) and b.masks.shape[1:] == (60, 90)
        # a factor-2 nearest-exact resize samples the odd rows/columns (pixel centres)
        assert torch.equal(b.masks, a.masks[:, 1::2, 1::2])


def test_anomalies_are_red_where_the_mask_is(synthetic_ubnormal):
    # frames and masks are aligned in space and time: masked pixels are the red/orange object
    ds = _dataset(synthetic_ubnormal, "test")
    seen = 0
    for index in range(len(ds)):
        item = ds[index]
        if not item.masks.any():
            continue
        frames = item.frames.float()
        inside = frames[item.masks]
        assert (inside[:, 0] - inside[:, 2]).mean() > 100  # red minus blue
        outside = frames[~item.masks]
        assert (outside[:, 0] - outside[:, 2]).mean() < 40
        seen += 1
    assert seen > 0


# ------------------------------------------------------------------------------------------------ tracks
def test_gt_tracks_are_the_largest_region_boxes(synthetic_ubnormal):
    split_frames = 0
    for split in ("training", "validation", "test"):
        ds = _dataset(synthetic_ubnormal, split)
        for video_id in ds.video_ids:
            info = synthetic_ubnormal.videos[video_id]
            tracks = ds.gt_tracks(video_id)
            assert len(tracks) == len(info.tracks)  # one track per tracks line (none for normal videos)
            for got, expected, object_id in zip(tracks, info.tracks, info.track_object_ids):
                assert got.shape[1] == 5 and got.dtype == np.int64
                np.testing.assert_array_equal(got, expected)  # the writer's main body, not the detached part
                for frame in got[:, 0]:
                    _, count = ndimage.label(_png(synthetic_ubnormal, video_id, int(frame)) == object_id,
                                             structure=np.ones((3, 3)))
                    split_frames += count > 1
    assert split_frames > 0, "the synthetic data must contain objects split into several regions"


def test_clip_gt_boxes_are_the_video_tracks_on_the_clip_frames(synthetic_ubnormal):
    ds = _dataset(synthetic_ubnormal, "validation")
    for index in range(len(ds)):
        item = ds[index]
        frames = set(item.frame_index[item.valid].tolist())
        expected = sorted(
            [int(row[0]), k, *map(int, row[1:])]
            for k, track in enumerate(synthetic_ubnormal.videos[item.video_id].tracks)
            for row in track
            if int(row[0]) in frames
        )
        assert item.gt_boxes.dtype == torch.int64 and item.gt_boxes.shape[1] == 6
        assert sorted(item.gt_boxes.tolist()) == expected


# ------------------------------------------------------------------------------------------------ loaders
@pytest.mark.parametrize(("stride", "batch_size"), [(1, 2), (2, 3)])
def test_eval_loaders_cover_every_frame_exactly_once(synthetic_ubnormal, stride, batch_size):
    dm = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                            frame_stride=stride, frame_size=(32, 48), batch_size=batch_size, num_workers=0)
    for split, loader, names in (("val", dm.val_dataloader(), "validation"), ("test", dm.test_dataloader(), "test")):
        ds = dm.dataset(split)
        seen: Counter = Counter()
        for batch in loader:
            assert isinstance(batch, ClipBatch)
            assert batch.frames.shape[1:] == (8, 32, 48, 3) and batch.frames.dtype == torch.uint8
            for b in range(batch.batch_size):
                valid, index = batch.valid[b], batch.frame_index[b]
                video_id = batch.video_id[b]
                seen.update((video_id, int(i)) for i in index[valid])
                assert (index[~valid] == -1).all()
                assert not batch.masks[b][~valid].any() and not batch.frame_labels[b][~valid].any()
                if (~valid).any():  # padding repeats the last real frame
                    last = int(valid.nonzero().max())
                    assert (batch.frames[b][~valid] == batch.frames[b][last]).all()
                np.testing.assert_array_equal(batch.frame_labels[b][valid].numpy(),
                                              ds.frame_labels(video_id)[index[valid].numpy()])
                if valid.sum() > 1:
                    assert (index[valid].diff() == stride).all()
            assert batch.fps.tolist() == [30.0 / stride] * batch.batch_size  # the rate of the clip's frames
            assert batch.original_size.tolist() == [list(synthetic_ubnormal.size)] * batch.batch_size
        expected = {(v, f) for v in synthetic_ubnormal.split(names)
                    for f in range(synthetic_ubnormal.videos[v].num_frames)}
        assert set(seen) == expected and set(seen.values()) == {1}
        assert ds.total_frames() == len(expected)


def test_train_loader_gives_full_shuffled_windows(synthetic_ubnormal):
    dm = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                            frame_size=(32, 48), batch_size=4, train_clip_step=4, num_workers=0)
    dm.setup("fit")
    ds = dm.dataset("train")
    assert ds.sampling == "train"
    per_video = synthetic_ubnormal.videos[ds.video_ids[0]].num_frames
    assert len(ds) == len(ds.video_ids) * ((per_video - 8) // 4 + 1)
    torch.manual_seed(0)
    order = [b.video_id for b in dm.train_dataloader()]
    assert sum(len(o) for o in order) == len(ds)
    assert [v for o in order for v in o] != [v for v, _ in ds.clips]  # shuffled
    batch = next(iter(dm.train_dataloader()))
    assert batch.valid.all() and batch.frames.shape == (4, 8, 32, 48, 3)


def test_worker_processes_give_the_same_items(synthetic_ubnormal):
    dm0 = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                             frame_size=(32, 48), num_workers=0)
    dm2 = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                             frame_size=(32, 48), num_workers=2)
    dm2.dataset("test")[0]  # readers opened in the parent must not leak into the workers
    serial, parallel = list(dm0.test_dataloader()), list(dm2.test_dataloader())
    assert len(serial) == len(parallel) == len(dm0.dataset("test"))
    # evaluation loaders shard whole videos over the workers (SequentialEvaluationClips): the same items, in
    # another order
    key = lambda batch: (batch.video_id, batch.frame_index.tolist())  # noqa: E731
    serial, parallel = sorted(serial, key=key), sorted(parallel, key=key)
    for a, b in zip(serial, parallel):
        assert a.video_id == b.video_id and torch.equal(a.frames, b.frames) and torch.equal(a.masks, b.masks)


def test_predict_reads_the_test_split(synthetic_ubnormal):
    dm = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), clip_len=8,
                            frame_size=(32, 48), num_workers=0)
    assert dm.dataset("predict") is dm.dataset("test")
    assert len(dm.predict_dataloader()) == len(dm.dataset("test"))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        dm.dataset("dev")


# ------------------------------------------------------------------------------------------------ errors
def _build(root, split_dir, split="test"):
    return UBnormalDataset(root, split_dir, split=split, clip_len=8, frame_size=None)


def test_missing_root_and_split_dir(copy, tmp_path):
    root, split_dir = copy
    with pytest.raises(FileNotFoundError, match=r"UBnormal root not found: .*nowhere.*Scene1"):
        _build(tmp_path / "nowhere", split_dir)
    with pytest.raises(FileNotFoundError, match=r"split folder not found: .*nosplits.*video_names"):
        _build(root, tmp_path / "nosplits")


def test_missing_split_file(copy):
    root, split_dir = copy
    (split_dir / "normal_test_video_names.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"split file not found: .*normal_test_video_names\.txt.*split_dir"):
        _build(root, split_dir)


def test_listed_video_missing(copy):
    root, split_dir = copy
    listing = split_dir / "abnormal_test_video_names.txt"
    listing.write_text(listing.read_text() + "abnormal_scene_1_scenario_77\n")
    with pytest.raises(FileNotFoundError, match=r"'abnormal_scene_1_scenario_77' is listed in .*abnormal_test_video_names"
                                                r"\.txt but not found at .*Scene1/abnormal_scene_1_scenario_77\.mp4"):
        _build(root, split_dir)


def test_video_without_annotation_folder(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = synthetic_ubnormal.split("test")[-1]
    folder = next(root.glob(f"Scene*/{video_id}_annotations"))
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match=rf"annotation folder not found: .*{video_id}_annotations"):
        _build(root, split_dir)


def test_abnormal_video_without_tracks_file(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = synthetic_ubnormal.split("test")[0]
    for path in root.glob(f"Scene*/{video_id}_annotations/*tracks.txt"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"tracks file not found: .*{video_id}_tracks\.txt"):
        _build(root, split_dir)


def test_malformed_tracks_line(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = next(v for v in synthetic_ubnormal.split("test")
                    if not next(root.glob(f"Scene*/{v}_annotations")).joinpath(f"{v}_new_tracks.txt").exists()
                    and synthetic_ubnormal.videos[v].abnormal)
    path = next(root.glob(f"Scene*/{video_id}_annotations/{video_id}_tracks.txt"))
    path.write_text("10,1,5\n11,2,6\n7;12\n")
    with pytest.raises(DatasetFormatError) as info:
        _build(root, split_dir)
    assert f"{video_id}_tracks.txt line 3: expected 'object_id,start,end'" in str(info.value)
    assert "got '7;12'" in str(info.value)
    path.write_text("10,9,5\n")
    with pytest.raises(DatasetFormatError, match=r"line 1: start 9 is after end 5"):
        _build(root, split_dir)


def test_mask_shape_mismatch(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = synthetic_ubnormal.split("test")[0]
    start, _ = synthetic_ubnormal.videos[video_id].track_ranges[0]
    bad = next(root.glob(f"Scene*/{video_id}_annotations/{video_id}_{start:04d}_gt.png"))
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(bad)
    ds = _build(root, split_dir)
    item = next(i for i, (v, idx) in enumerate(ds.clips) if v == video_id and start in idx)
    with pytest.raises(DatasetFormatError, match=rf"{bad.name} is 10x12 but the video's other annotation pngs are "
                                                 r"120x180"):
        ds[item]
    # the first png sets the annotation size; a video of another size is refused
    first = next(root.glob(f"Scene*/{video_id}_annotations/{video_id}_0000_gt.png"))
    Image.fromarray(np.zeros((60, 90), dtype=np.uint8)).save(first)
    with pytest.raises(DatasetFormatError, match=rf"{video_id}\.mp4 is 120x180 but its annotation pngs .* are 60x90"):
        _build(root, split_dir)[0]


def test_corrupt_video_fails_the_listing_with_its_path(copy, synthetic_ubnormal):
    root, split_dir = copy
    video_id = synthetic_ubnormal.split("test")[0]
    next(root.glob(f"Scene*/{video_id}.mp4")).write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match=rf"{video_id}\.mp4.*listed in .*abnormal_test_video_names\.txt line 1"):
        _build(root, split_dir)  # the frame count is read when the split is listed
