"""Frame labels of a user's video: from a labels file, or found beside the video in UBnormal/ShanghaiTech layout."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.data.clips import DatasetWarning
from tvau_lightning.data.labels import find_frame_labels, read_frame_labels
from tvau_lightning.data.synthetic import write_synthetic_ubnormal


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    """A tiny UBnormal whose test video's _new_tracks.txt covers fewer frames than its _tracks.txt."""
    return write_synthetic_ubnormal(tmp_path_factory.mktemp("labels") / "ub", videos_per_split=1,
                                    abnormal_per_split=1, num_frames=24, num_scenes=1, normal_objects=1,
                                    new_tracks="narrow")


def _ranges_to_labels(lines, n):
    labels = np.zeros(n, dtype=np.int64)
    for _, start, end in lines:
        labels[start:end + 1] = 1
    return labels


def test_ubnormal_labels_come_from_tracks_not_new_tracks(narrow):
    (video_id,) = narrow.split("test")
    info = narrow.videos[video_id]
    labels, source = find_frame_labels(info.path, info.num_frames)
    assert source.name == f"{video_id}_tracks.txt"
    np.testing.assert_array_equal(labels, _ranges_to_labels(info.label_tracks, info.num_frames))
    region = _ranges_to_labels([(o, s, e) for o, (s, e) in zip(info.track_object_ids, info.track_ranges)], 24)
    assert (labels != region).any()  # the two files differ; the labels follow _tracks.txt


def test_only_new_tracks_is_used_with_a_warning(narrow, tmp_path):
    import shutil

    (video_id,) = narrow.split("test")
    root = tmp_path / "copy"
    shutil.copytree(narrow.root, root)
    video = next(root.glob(f"Scene*/{video_id}.mp4"))
    annotations = video.parent / f"{video_id}_annotations"
    (annotations / f"{video_id}_tracks.txt").unlink()
    with pytest.warns(DatasetWarning, match="frame labels taken from .*_new_tracks.txt"):
        labels, source = find_frame_labels(video, 24)
    assert source.name == f"{video_id}_new_tracks.txt" and labels.any()
    (annotations / f"{video_id}_new_tracks.txt").unlink()
    labels, source = find_frame_labels(video, 24)  # an annotated video without tracks is normal
    assert not labels.any() and source == annotations


def test_shanghaitech_frame_folder_labels(synthetic_shanghaitech):
    video_id = sorted(synthetic_shanghaitech.split("testing"))[0]
    info = synthetic_shanghaitech.videos[video_id]
    labels, source = find_frame_labels(info.path, info.num_frames)
    assert source.name == f"{video_id}.npy" and source.parent.name == "test_frame_mask"
    np.testing.assert_array_equal(labels, info.frame_labels)
    with pytest.raises(ValueError, match=f"expected {info.num_frames + 1} labels"):
        find_frame_labels(info.path, info.num_frames + 1)


def test_labels_files(tmp_path):
    (tmp_path / "l.txt").write_text("\ufeff0 0,1\n1 0")
    assert read_frame_labels(tmp_path / "l.txt", 5).tolist() == [0, 0, 1, 1, 0]
    np.save(tmp_path / "l.npy", np.array([1, 0, 0]))
    assert read_frame_labels(tmp_path / "l.npy", 3).tolist() == [1, 0, 0]
    (tmp_path / "v_tracks.txt").write_text("3,1,2\n4,4,9")
    assert read_frame_labels(tmp_path / "v_tracks.txt", 6).tolist() == [0, 1, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="expected 4 labels of 0 or 1"):
        read_frame_labels(tmp_path / "l.npy", 4)
    (tmp_path / "bad.txt").write_text("0 2 1")
    with pytest.raises(ValueError, match="with other numbers"):
        read_frame_labels(tmp_path / "bad.txt", 3)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))  # a pickle inside: never loaded
    with pytest.raises(ValueError, match=r"obj\.npy: not a numeric \.npy array"):
        read_frame_labels(tmp_path / "obj.npy", 1)
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        read_frame_labels(tmp_path / "none.txt", 1)
    assert find_frame_labels(tmp_path / "l.npy", 3) is None
