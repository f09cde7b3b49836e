"""Video sources: UBnormal and ShanghaiTech (both protocols) through their DataModules' API, user folders, arrays."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.builder.sources import (
    ArrayVideoSource,
    SourceError,
    folder_videos,
    shanghaitech_videos,
    ubnormal_videos,
)
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule


def test_ubnormal_sources_match_the_synthetic_ground_truth(synthetic_ubnormal):
    data = synthetic_ubnormal
    sources = ubnormal_videos(data.root, data.split_dir, "training")
    assert [s.video_id for s in sources] == data.split("training")
    for source in sources:
        truth = data.videos[source.video_id]
        assert (source.dataset, source.num_frames, source.size, source.fps) == ("ubnormal", truth.num_frames, data.size, data.fps)
        assert source.path == truth.path and source.path.is_file()
        np.testing.assert_array_equal(source.frame_labels(), truth.frame_labels)
        assert source.label == int(truth.abnormal)
        tracks = source.gt_tracks()
        assert len(tracks) == len(truth.tracks)
        for got, expected in zip(tracks, truth.tracks):
            np.testing.assert_array_equal(got, expected)
        objects = source.object_tracks()
        expected_ids = set(truth.normal_object_ids) | set(truth.track_object_ids)
        assert {int(k.split(":")[1]) for k in objects} == expected_ids
        # the anomalous object's box on its abnormal frames is the GT track's box (same png, same rule)
        for object_id, gt in zip(truth.track_object_ids, truth.tracks):
            rows = {int(r[0]): r for r in objects[f"object:{object_id}"]}
            for row in gt:
                np.testing.assert_array_equal(rows[int(row[0])], row)
        frames = source.read_frames([0, 5])
        assert frames.shape == (2, *data.size, 3) and frames.dtype == np.uint8
        if truth.abnormal:
            f = int(truth.tracks[0][0, 0])
            mask = source.anomaly_masks([f])[0]
            x1, y1, x2, y2 = truth.tracks[0][0, 1:]
            assert mask[y1: y2 + 1, x1: x2 + 1].any() and mask.dtype == bool
            assert not source.anomaly_masks([0])[0].any() or truth.frame_labels[0] == 1


def test_shanghaitech_sources_both_protocols(synthetic_shanghaitech):
    data = synthetic_shanghaitech
    module = ShanghaiTechDataModule(str(data.root), protocol="tvau")
    for split in ("train", "val"):
        sources = shanghaitech_videos(data.root, "tvau", split)
        assert [s.video_id for s in sources] == module.split_video_ids(split)
        for source in sources:
            truth = data.videos[source.video_id]
            np.testing.assert_array_equal(source.frame_labels(), truth.frame_labels)
            assert source.path.is_dir()  # testing videos are frame folders
            if truth.abnormal:
                tracks = source.gt_tracks()
                assert tracks and all(t.shape[1] == 5 for t in tracks)
                # on a track's first frame, the mask lies inside that frame's track boxes and touches each
                frame = int(tracks[0][0, 0])
                mask = source.anomaly_masks([frame])[0]
                inside = np.zeros_like(mask)
                for track in tracks:
                    for _, x1, y1, x2, y2 in track[track[:, 0] == frame]:
                        assert mask[y1: y2 + 1, x1: x2 + 1].any()
                        inside[y1: y2 + 1, x1: x2 + 1] = True
                assert mask.any() and not (mask & ~inside).any()
    standard = shanghaitech_videos(data.root, "standard", "train")
    assert [s.video_id for s in standard] == sorted(data.split("training"))
    for source in standard:
        assert source.label == 0 and source.gt_tracks() == []
        assert not source.anomaly_masks([0, 1]).any()
        assert source.path.suffix == ".avi"
    with pytest.raises(SourceError, match="train, val or test"):
        shanghaitech_videos(data.root, "tvau", "training")


def _write_frames(folder, frames):
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{k:03d}.png")


def _square_video(num_frames=12, size=(40, 60)):
    frames = np.full((num_frames, *size, 3), 90, np.uint8)
    masks = np.zeros((num_frames, *size), bool)
    for t in range(num_frames):
        frames[t, 10:20, 5 + 3 * t: 15 + 3 * t] = (250, 30, 20)
        masks[t, 10:20, 5 + 3 * t: 15 + 3 * t] = True
    return frames, masks


def test_user_folder_layout(tmp_path, synthetic_ubnormal):
    root = tmp_path / "mine"
    frames, masks = _square_video()
    _write_frames(root / "videos" / "walk", frames)  # a frame folder with an .npy mask
    _write_frames(root / "videos" / "png_masks", frames)  # a frame folder with per-frame mask pngs
    _write_frames(root / "videos" / "quiet", frames)  # labelled normal in labels.json
    any_mp4 = next(v for v in synthetic_ubnormal.videos.values() if not v.abnormal)
    shutil.copy(any_mp4.path, root / "videos" / "clip.mp4")  # a video file with frame ranges
    (root / "masks" / "png_masks").mkdir(parents=True)
    np.save(root / "masks" / "walk.npy", masks.astype(np.uint8))
    for t in range(0, 12, 2):  # odd frames have no png → empty mask
        Image.fromarray(masks[t].astype(np.uint8) * 255).save(root / "masks" / "png_masks" / f"frame_{t:05d}.png")
    (root / "labels.json").write_text(json.dumps({"quiet": 0, "clip": [[3, 7], [20, 22]]}))

    sources = {s.video_id: s for s in folder_videos(root, fps=12.0)}
    assert sorted(sources) == ["clip", "png_masks", "quiet", "walk"]
    walk = sources["walk"]
    assert (walk.fps, walk.num_frames, walk.size, walk.dataset) == (12.0, 12, (40, 60), "custom")
    np.testing.assert_array_equal(walk.frame_labels(), np.ones(12))
    (track,) = walk.gt_tracks()
    # one square moving 3 px per frame: inclusive boxes (x1, y1, x2, y2) = (5 + 3t, 10, 14 + 3t, 19)
    np.testing.assert_array_equal(track, [[t, 5 + 3 * t, 10, 14 + 3 * t, 19] for t in range(12)])
    png = sources["png_masks"]
    np.testing.assert_array_equal(png.frame_labels(), [1, 0] * 6)
    np.testing.assert_array_equal(png.anomaly_masks([2, 3]), np.stack([masks[2], np.zeros_like(masks[3])]))
    assert sources["quiet"].label == 0 and sources["quiet"].anomaly_masks([0]) is None
    clip = sources["clip"]
    assert clip.fps == pytest.approx(synthetic_ubnormal.fps) and clip.path.suffix == ".mp4"
    expected = np.zeros(clip.num_frames, int)
    expected[3:8] = 1
    expected[20:23] = 1
    np.testing.assert_array_equal(clip.frame_labels(), expected)
    assert clip.gt_tracks() == []  # ranges but no masks: no anomaly track (no phase B dialogue)


@pytest.mark.parametrize(
    ("labels", "needle"),
    [({}, "has no labels"), ({"walk": 1}, "no masks to tell which frames"), ({"walk": [[5, 99]]}, "not a [start, end]"),
     ({"walk": "yes"}, "must be 0, 1 or a list"), ({"walk": 0, "ghost": 0}, "not in")],
)
def test_user_folder_errors(tmp_path, labels, needle):
    root = tmp_path / "mine"
    frames, _ = _square_video()
    _write_frames(root / "videos" / "walk", frames)
    (root / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(SourceError) as err:
        folder_videos(root)
    assert needle in str(err.value)


def test_user_folder_unlabelled_normal_and_layout_errors(tmp_path):
    root = tmp_path / "mine"
    frames, masks = _square_video()
    _write_frames(root / "videos" / "walk", frames)
    (source,) = folder_videos(root, unlabelled="normal")
    assert source.label == 0 and source.gt_tracks() == []
    (root / "masks").mkdir()
    np.save(root / "masks" / "walk.npy", masks[:5])
    with pytest.raises(SourceError, match="does not match the video"):
        folder_videos(root)
    with pytest.raises(SourceError, match="videos/<name>.mp4"):
        folder_videos(tmp_path / "nothing")


def test_array_source():
    frames, masks = _square_video()
    source = ArrayVideoSource("sq", frames, 10.0, "/tmp/sq.mp4", masks=masks)
    assert source.label == 1 and source.size == (40, 60)
    (track,) = source.gt_tracks()
    assert track[0].tolist() == [0, 5, 10, 14, 19]
    plain = ArrayVideoSource("plain", frames, 10.0, "/tmp/p.mp4")
    assert plain.label == 0 and plain.anomaly_masks([0]) is None and plain.gt_tracks() == []
    with pytest.raises(ValueError, match="uint8"):
        ArrayVideoSource("bad", frames.astype(float), 10.0, "x")
