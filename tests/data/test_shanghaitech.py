"""ShanghaiTech Campus in its native layout, both protocols, against the synthetic writer's ground truth."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from tvau_lightning.data.clips import DatasetFormatError, DatasetWarning
from tvau_lightning.data.shanghaitech import (
    ShanghaiTechDataModule,
    ShanghaiTechDataset,
    pixel_mask_layout,
    split_by_video,
)


def _module(data, **kwargs) -> ShanghaiTechDataModule:
    kwargs = {"clip_len": 8, "frame_size": (30, 45), "gt_boxes": False, "num_workers": 0} | kwargs
    return ShanghaiTechDataModule(str(data.root), **kwargs)


def _testing(data) -> list[str]:
    return sorted(data.split("testing"))


def _collect(loader) -> Counter:
    seen: Counter = Counter()
    for batch in loader:
        for b in range(batch.batch_size):
            valid = batch.valid[b]
            seen.update((batch.video_id[b], int(i)) for i in batch.frame_index[b][valid])
            assert (batch.frame_index[b][~valid] == -1).all()
            assert not batch.masks[b][~valid].any()
    return seen


def _all_frames(data, video_ids) -> set:
    return {(v, f) for v in video_ids for f in range(data.videos[v].num_frames)}


# ------------------------------------------------------------------------------------------------ protocols
def test_standard_protocol_trains_on_normal_training_videos(synthetic_shanghaitech):
    dm = _module(synthetic_shanghaitech, batch_size=2, gt_boxes=True)
    dm.setup("fit")
    train = dm.dataset("train")
    assert train.video_ids == sorted(synthetic_shanghaitech.split("training"))
    assert train.sampling == "train"
    for video_id in train.video_ids:
        assert train.num_frames(video_id) == synthetic_shanghaitech.videos[video_id].num_frames
        assert not train.frame_labels(video_id).any() and train.gt_tracks(video_id) == []
    for batch in dm.train_dataloader():
        assert not batch.masks.any() and not batch.frame_labels.any()
        assert batch.fps.tolist() == [24.0] * batch.batch_size
        assert batch.original_size.tolist() == [list(synthetic_shanghaitech.size)] * batch.batch_size
        assert all(b.shape == (0, 6) for b in batch.gt_boxes)
    assert dm.dataset("val").video_ids == dm.dataset("test").video_ids == _testing(synthetic_shanghaitech)


@pytest.mark.parametrize("stride", [1, 3])
def test_standard_eval_loaders_cover_every_testing_frame_once(synthetic_shanghaitech, stride):
    dm = _module(synthetic_shanghaitech, frame_stride=stride, batch_size=3)
    expected = _all_frames(synthetic_shanghaitech, _testing(synthetic_shanghaitech))
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        seen = _collect(loader)
        assert set(seen) == expected and set(seen.values()) == {1}


def test_tvau_protocol_splits_testing_videos_by_video(synthetic_shanghaitech):
    testing = _testing(synthetic_shanghaitech)
    dm = _module(synthetic_shanghaitech, protocol="tvau", val_fraction=0.4, split_seed=3)
    train, val, test = (dm.dataset(s).video_ids for s in ("train", "val", "test"))
    assert not set(train) & set(val)
    assert sorted(train + val) == testing
    assert len(val) == 2  # round(0.4 * 5)
    assert test == val  # tvau_test="held_out": tested on videos never trained on
    # the clips the loaders actually produce respect the split
    train_videos = {v for batch in dm.train_dataloader() for v in batch.video_id}
    val_seen = _collect(dm.val_dataloader())
    assert train_videos == set(train)
    assert set(val_seen) == _all_frames(synthetic_shanghaitech, val) and set(val_seen.values()) == {1}
    # supervised training on testing videos: labels and masks come from the testing annotations
    ds = dm.dataset("train")
    assert ds.sampling == "train"
    assert any(ds.frame_labels(v).any() for v in train)
    every = _module(synthetic_shanghaitech, protocol="tvau", val_fraction=0.4, split_seed=3, tvau_test="all")
    assert every.dataset("test").video_ids == testing
    seen = _collect(every.test_dataloader())
    assert set(seen) == _all_frames(synthetic_shanghaitech, testing) and set(seen.values()) == {1}


def test_split_by_video_is_seeded_and_disjoint():
    ids = [f"{s:02d}_{k:04d}" for s in range(1, 4) for k in range(1, 12)]
    splits = {seed: split_by_video(ids, 0.2, seed) for seed in range(6)}
    for train, val in splits.values():
        assert not set(train) & set(val) and sorted(train + val) == sorted(ids)
        assert len(val) == round(0.2 * len(ids))
    assert split_by_video(list(reversed(ids)), 0.2, 4) == splits[4]  # input order does not matter
    assert len({tuple(v) for _, v in splits.values()}) > 1  # the seed changes the split
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_video(ids, 1.0, 0)
    with pytest.raises(DatasetFormatError, match="at least 2 testing videos"):
        split_by_video(ids[:1], 0.5, 0)


# ------------------------------------------------------------------------------------------------ labels and masks
def test_frame_labels_come_from_the_frame_masks(synthetic_shanghaitech):
    ds = ShanghaiTechDataset(synthetic_shanghaitech.root, "testing", clip_len=8, frame_size=None, gt_boxes=False)
    for video_id in ds.video_ids:
        np.testing.assert_array_equal(ds.frame_labels(video_id), synthetic_shanghaitech.videos[video_id].frame_labels)


def test_pixel_masks_in_both_layouts_match_the_drawn_objects(synthetic_shanghaitech):
    ds = ShanghaiTechDataset(synthetic_shanghaitech.root, "testing", clip_len=8, frame_size=None, gt_boxes=False)
    layouts = {v: ds.videos[v].mask_layout for v in ds.video_ids}
    assert "HWT" in layouts.values() and "THW" in layouts.values()
    for video_id in ds.video_ids:
        info = synthetic_shanghaitech.videos[video_id]
        expected = np.zeros((info.num_frames, *synthetic_shanghaitech.size), dtype=bool)
        for track in info.tracks:  # the anomalies are solid rectangles: the mask is their union
            for frame, x1, y1, x2, y2 in track:
                expected[frame, y1 : y2 + 1, x1 : x2 + 1] = True
        np.testing.assert_array_equal(ds.pixel_masks(video_id), expected)
        clip = np.array([info.num_frames - 1, 0, 5])
        np.testing.assert_array_equal(ds.pixel_masks(video_id, clip), expected[clip])


def test_items_carry_masks_aligned_with_red_anomalies(synthetic_shanghaitech):
    ds = ShanghaiTechDataset(synthetic_shanghaitech.root, "testing", clip_len=8, frame_size=None, gt_boxes=False)
    hwt = next(v for v in ds.video_ids if ds.videos[v].mask_layout == "HWT")
    seen = 0
    for index, (video_id, indices) in enumerate(ds.clips):
        if video_id != hwt:
            continue
        item = ds[index]
        np.testing.assert_array_equal(item.masks[item.valid].numpy(), ds.pixel_masks(hwt, indices))
        if item.masks.any():
            inside = item.frames[item.masks].float()
            assert (inside[:, 0] - inside[:, 2]).mean() > 100
            seen += 1
    assert seen


def test_mask_derived_gt_tracks_link_components_and_merge_touching_objects(synthetic_shanghaitech):
    # needs tvau_lightning.metrics.regions.masks_to_tracks (connected components, IoU >= 0.1 linking)
    ShanghaiTechDataset._warned_mask_tracks.clear()
    ds = ShanghaiTechDataset(synthetic_shanghaitech.root, "testing", clip_len=8, frame_size=None)
    merged = 0
    with pytest.warns(DatasetWarning, match="derived from the pixel masks.*NOT comparable with published"):
        for video_id in ds.video_ids:
            got = sorted((t.tolist() for t in ds.gt_tracks(video_id)), key=lambda t: (t[0][0], t[0][2]))
            drawn = synthetic_shanghaitech.videos[video_id]
            expected = sorted((t.tolist() for t in drawn.tracks), key=lambda t: (t[0][0], t[0][2]))
            if 20 in drawn.track_object_ids:  # two touching objects: one component, one mask-derived track
                assert len(got) == len(expected) - 1
                merged += 1
            else:
                assert got == expected
    assert merged == 1
    item = ds[0]
    assert item.gt_boxes is not None and item.gt_boxes.shape[1] == 6


def test_pixel_mask_layout_detection(tmp_path):
    path = tmp_path / "m.npy"
    assert pixel_mask_layout((30, 48, 64), 30, (48, 64), path) == "THW"
    assert pixel_mask_layout((48, 64, 30), 30, (48, 64), path) == "HWT"
    with pytest.raises(DatasetFormatError, match=r"m\.npy: shape \(8, 8, 8\) fits both"):
        pixel_mask_layout((8, 8, 8), 8, (8, 8), path)
    with pytest.raises(DatasetFormatError, match=r"m\.npy: pixel mask shape \(29, 48, 64\) does not match"):
        pixel_mask_layout((29, 48, 64), 30, (48, 64), path)


# ------------------------------------------------------------------------------------------------ errors
@pytest.fixture()
def copy(synthetic_shanghaitech, tmp_path):
    root = tmp_path / "shanghaitech"
    shutil.copytree(synthetic_shanghaitech.root, root)
    return root


def _tiny_video(root, name, num_frames, size):
    """A hand-made testing video (flat frames) with its masks, for shapes the writer does not produce."""
    folder = root / "testing" / "frames" / name
    folder.mkdir(parents=True)
    for k in range(num_frames):
        Image.fromarray(np.zeros((*size, 3), dtype=np.uint8)).save(folder / f"{k:03d}.jpg")
    np.save(root / "testing" / "test_frame_mask" / f"{name}.npy", np.zeros(num_frames, dtype=np.uint8))
    return root / "testing" / "test_pixel_mask" / f"{name}.npy"


def test_ambiguous_pixel_mask_is_an_error(copy):
    mask_path = _tiny_video(copy, "09_0001", 8, (8, 8))
    np.save(mask_path, np.zeros((8, 8, 8), dtype=np.uint8))
    with pytest.raises(DatasetFormatError, match=r"09_0001\.npy: shape \(8, 8, 8\) fits both .* save it as \(T, H, W\)"):
        ShanghaiTechDataset(copy, "testing", video_ids=["09_0001"])


def test_pixel_mask_shape_mismatch(copy, synthetic_shanghaitech):
    video_id = _testing(synthetic_shanghaitech)[1]
    frames = synthetic_shanghaitech.videos[video_id].num_frames
    np.save(copy / "testing" / "test_pixel_mask" / f"{video_id}.npy", np.zeros((frames - 1, 120, 180), np.uint8))
    with pytest.raises(DatasetFormatError, match=rf"{video_id}\.npy: pixel mask shape \({frames - 1}, 120, 180\) "
                                                 rf"does not match the video \({frames} frames of 120x180\)"):
        ShanghaiTechDataset(copy, "testing")


def test_frame_mask_length_mismatch(copy, synthetic_shanghaitech):
    video_id = _testing(synthetic_shanghaitech)[0]
    np.save(copy / "testing" / "test_frame_mask" / f"{video_id}.npy", np.zeros(3, np.uint8))
    with pytest.raises(DatasetFormatError, match=rf"{video_id}\.npy: frame mask shape \(3,\) does not match"):
        ShanghaiTechDataset(copy, "testing")


@pytest.mark.parametrize("folder", ["test_frame_mask", "test_pixel_mask"])
def test_missing_masks(copy, synthetic_shanghaitech, folder):
    video_id = _testing(synthetic_shanghaitech)[2]
    (copy / "testing" / folder / f"{video_id}.npy").unlink()
    with pytest.raises(FileNotFoundError, match=rf"not found: .*{folder}/{video_id}\.npy"):
        ShanghaiTechDataset(copy, "testing")


def test_missing_root_and_folders(copy, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ShanghaiTech root not found: .*absent"):
        ShanghaiTechDataset(tmp_path / "absent", "testing")
    shutil.rmtree(copy / "training")
    dm = ShanghaiTechDataModule(str(copy), clip_len=8)
    with pytest.raises(FileNotFoundError, match=r"training/videos.*protocol='tvau'"):
        dm.setup("fit")
    dm.setup("test")  # testing alone needs no training videos
    shutil.rmtree(copy / "testing" / "frames")
    with pytest.raises(FileNotFoundError, match=r"testing/frames"):
        ShanghaiTechDataModule(str(copy), clip_len=8).setup("test")


def test_unknown_video_ids(copy):
    with pytest.raises(FileNotFoundError, match=r"\['77_0001'\] not found"):
        ShanghaiTechDataset(copy, "testing", video_ids=["77_0001"])


def test_argument_validation(copy):
    with pytest.raises(ValueError, match="protocol"):
        ShanghaiTechDataModule(str(copy), protocol="paper")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val_fraction"):
        ShanghaiTechDataModule(str(copy), protocol="tvau", val_fraction=0.0)
    with pytest.raises(ValueError, match="clip_len"):
        ShanghaiTechDataset(copy, "testing", clip_len=0)


def test_corrupt_training_video_names_the_path(copy, synthetic_shanghaitech):
    video_id = sorted(synthetic_shanghaitech.split("training"))[0]
    (copy / "training" / "videos" / f"{video_id}.avi").write_bytes(b"RIFF....AVI garbage")
    with pytest.raises(Exception, match=rf"{video_id}\.avi"):
        ShanghaiTechDataModule(str(copy), clip_len=8).setup("fit")


def test_items_are_torch_tensors_of_the_documented_types(synthetic_shanghaitech):
    ds = ShanghaiTechDataset(synthetic_shanghaitech.root, "testing", clip_len=8, frame_size=(30, 45), gt_boxes=False)
    item = ds[len(ds) - 1]  # the last clip of the last video: padded
    assert item.frames.dtype == torch.uint8 and item.frames.shape == (8, 30, 45, 3)
    assert item.masks.dtype == torch.bool and item.frame_labels.dtype == torch.int64
    assert item.frame_index.dtype == torch.int64 and item.valid.dtype == torch.bool
    assert item.fps == 24.0 and item.original_size == synthetic_shanghaitech.size


# ------------------------------------------------------------------------------------------------ published tracks
def _read_published(path) -> dict[int, list[list[int]]]:
    """The test's own reading of a published track file: rows per track_id, sorted by frame."""
    tracks: dict[int, list[list[int]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            track_id, *row = (int(v) for v in line.split(","))
            tracks.setdefault(track_id, []).append(row)
    return {k: sorted(v) for k, v in sorted(tracks.items())}


def test_gt_tracks_dir_gives_the_published_tracks_exactly(synthetic_shanghaitech):
    """Real layout (jpg frame folders, frame and pixel masks) + published-format track files whose tracks differ
    from the masks' connected components: gt_tracks are the files', and RBDC/TBDC differ from mask-derived."""
    from tvau_lightning.metrics.functional import rbdc_tbdc

    data = synthetic_shanghaitech
    assert (data.root / "testing" / "frames" / "01_0001" / "000.jpg").is_file() and data.tracks_dir is not None
    dm = _module(data, protocol="standard", gt_boxes=True, gt_tracks_dir=str(data.tracks_dir))
    ds = dm.dataset("test")
    with_file = [v for v in ds.video_ids if (data.tracks_dir / f"{v}.txt").is_file()]
    assert with_file and len(with_file) < len(ds.video_ids)  # normal testing videos have no file
    for video_id in ds.video_ids:
        got = [t.tolist() for t in ds.gt_tracks(video_id)]
        if video_id in with_file:
            assert got == list(_read_published(data.tracks_dir / f"{video_id}.txt").values())
        else:
            assert got == []
    # a published file may list a track's rows out of frame order: the track is still sorted by frame
    first = (data.tracks_dir / f"{with_file[0]}.txt").read_text().splitlines()
    frames = [int(line.split(",")[1]) for line in first if line.startswith("0,")]
    assert frames != sorted(frames) and ds.gt_tracks(with_file[0])[0][:, 0].tolist() == sorted(frames)
    # clip items carry the published boxes
    item = next(ds[i] for i in range(len(ds)) if ds[i].gt_boxes.shape[0])
    tracks = ds.gt_tracks(item.video_id)
    for frame, k, *box in item.gt_boxes.tolist():
        assert [frame, *box] in tracks[k].tolist()

    ShanghaiTechDataset._warned_mask_tracks.clear()
    masks = _module(data, protocol="standard", gt_boxes=True).dataset("test")
    with pytest.warns(DatasetWarning, match="not set"):
        derived = {v: masks.gt_tracks(v) for v in masks.video_ids}
    published = {v: ds.gt_tracks(v) for v in ds.video_ids}
    assert sum(map(len, derived.values())) < sum(map(len, published.values()))
    # detections: exactly the published boxes of every track but the touching object's
    detections = {}
    for video_id, tracks in published.items():
        drawn = data.videos[video_id]
        rows = [[*row, 0.9] for k, t in enumerate(tracks) if drawn.track_object_ids[k] != 20 for row in t.tolist()]
        detections[video_id] = np.asarray(rows, dtype=float).reshape(-1, 6)
    total = ds.total_frames()
    got_published = rbdc_tbdc(published, detections, total)
    got_derived = rbdc_tbdc(derived, detections, total)
    assert got_published != pytest.approx(got_derived)


def test_gt_tracks_dir_errors_name_the_file_line_and_fix(copy, synthetic_shanghaitech):
    root = copy
    tracks = root / "annotations" / "ShanghaiTech"
    video_id = sorted(p.stem for p in tracks.glob("??_????.txt"))[0]
    path = tracks / f"{video_id}.txt"
    lines = path.read_text().splitlines()
    for bad, pattern in (("0;12;1;2;3;4", r"line 2: expected 'track_id,frame,x_min,y_min,x_max,y_max'"),
                         ("0,12,1,2,3", r"line 2: expected"),
                         ("0,12,9,2,3,4", r"line 2: box \(9, 2, 3, 4\) has its min corner past its max corner"),
                         ("0,-1,1,2,3,4", r"line 2: expected"),
                         (lines[0], r"line 2: track 0 already has a box on frame \d+ \(line 1\)")):
        path.write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n")
        with pytest.raises(DatasetFormatError, match=rf"{video_id}\.txt {pattern}"):
            ShanghaiTechDataModule(str(root), gt_tracks_dir=str(tracks), frame_size=None).dataset("test")
    with pytest.raises(FileNotFoundError, match="gt_tracks_dir not found: .*nowhere; point it at"):
        ShanghaiTechDataModule(str(root), gt_tracks_dir=str(root / "nowhere"))
    empty = root / "empty_tracks"
    empty.mkdir()
    (empty / "01_001.txt").write_text("0,1,1,1,2,2\n")
    with pytest.raises(DatasetFormatError, match="holds no track file of any of the"):
        ShanghaiTechDataModule(str(root), gt_tracks_dir=str(empty), frame_size=None).dataset("test")


def test_track_file_numbers_in_float_notation_are_accepted(tmp_path):
    from tvau_lightning.data.shanghaitech import read_track_file

    path = tmp_path / "01_0001.txt"
    np.savetxt(path, np.array([[1, 5, 1, 2, 3, 4], [1, 4, 0, 0, 1, 1], [0, 2, 5, 5, 6, 6]]), delimiter=",")
    assert "e+00" in path.read_text()
    got = read_track_file(path)
    assert [k for k, _ in got] == [0, 1]
    assert got[1][1].tolist() == [[4, 0, 0, 1, 1], [5, 1, 2, 3, 4]]
