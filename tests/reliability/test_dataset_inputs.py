"""Real-archive inconsistencies and hostile names in dataset inputs: each is warned about (naming the video) or
refused with the file, line and fix — never a silent label, never a path outside the dataset root.

Covers issue 12 item 3 (UBnormal png/frame count mismatches, png gaps, self-contradicting ground truth, BOM)
with ``strict`` making each an error, ShanghaiTech track-file inconsistencies, and issue 14 item 7 (names read
from split files stay inside the dataset).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tvau_lightning.data.clips import DatasetFormatError, DatasetWarning
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
from tvau_lightning.data.synthetic import write_synthetic_ubnormal
from tvau_lightning.data.ubnormal import UBnormalDataset, check_inside, parse_tracks_file

FRAMES = 24


@pytest.fixture(scope="module")
def tiny_ubnormal(tmp_path_factory):
    """2 videos per split (1 abnormal, 1 normal), 24 frames; the test split's abnormal video has both tracks files."""
    return write_synthetic_ubnormal(tmp_path_factory.mktemp("reliability") / "ubnormal", videos_per_split=2,
                                    abnormal_per_split=1, num_frames=FRAMES, num_scenes=1, normal_objects=1)


@pytest.fixture()
def data(tiny_ubnormal, tmp_path):
    """A private copy that a test may damage: ``(root, split_dir, abnormal test video, normal test video)``."""
    root = tmp_path / "ubnormal"
    shutil.copytree(tiny_ubnormal.root, root)
    abnormal, normal = (v for v in tiny_ubnormal.split("test"))
    assert tiny_ubnormal.videos[abnormal].abnormal and not tiny_ubnormal.videos[normal].abnormal
    return root, root / "scripts", abnormal, normal


def _annotations(root, video_id):
    return next(root.glob(f"Scene*/{video_id}_annotations"))


def _build(root, split_dir, **kwargs) -> UBnormalDataset:
    return UBnormalDataset(root, split_dir, split="test", clip_len=8, frame_size=None, **kwargs)


def _evaluated(ds, video_id) -> list[int]:
    return sorted(int(f) for v, idx in ds.clips for f in idx if v == video_id)


# --------------------------------------------------------------------------------- frame counts and png gaps
def test_png_count_differs_from_decoded_frames_every_video_in_one_warning(data):
    root, split_dir, abnormal, normal = data
    (_annotations(root, abnormal) / f"{abnormal}_{FRAMES - 1:04d}_gt.png").unlink()  # one png short
    extra = _annotations(root, normal)
    shutil.copy(extra / f"{normal}_0000_gt.png", extra / f"{normal}_{FRAMES:04d}_gt.png")  # one png too many
    with pytest.warns(DatasetWarning) as caught:
        ds = _build(root, split_dir)
    counts = [str(w.message) for w in caught if "decoded frames" in str(w.message)]
    assert len(counts) == 1  # one warning lists every such video, with both counts
    assert f"{abnormal}: {FRAMES - 1} annotation pngs, {FRAMES} decoded frames" in counts[0]
    assert f"{normal}: {FRAMES + 1} annotation pngs, {FRAMES} decoded frames" in counts[0]
    assert "strict=True" in counts[0]
    # the frames both sides have are evaluated, each exactly once
    assert _evaluated(ds, abnormal) == list(range(FRAMES - 1))
    assert _evaluated(ds, normal) == list(range(FRAMES))
    assert ds.total_frames() == 2 * FRAMES - 1 and len(ds.frame_labels(abnormal)) == FRAMES - 1
    ds[next(i for i, (v, _) in enumerate(ds.clips) if v == abnormal)]  # items still load
    with pytest.raises(DatasetFormatError, match=rf"(?s)disagree.*{abnormal}: {FRAMES - 1} annotation pngs.*{normal}"):
        _build(root, split_dir, strict=True)


def test_gap_in_png_numbering_skips_the_frame_with_a_warning(data):
    root, split_dir, abnormal, _ = data
    (_annotations(root, abnormal) / f"{abnormal}_0005_gt.png").unlink()
    with pytest.warns(DatasetWarning, match=rf"{abnormal}: {FRAMES - 1} annotation pngs, {FRAMES} decoded frames, "
                                            r"missing pngs \['0005'\] → 23 frames evaluated"):
        ds = _build(root, split_dir)
    assert _evaluated(ds, abnormal) == [f for f in range(FRAMES) if f != 5]
    assert all(5 not in idx for v, idx in ds.clips if v == abnormal)
    with pytest.raises(DatasetFormatError, match=r"missing pngs \['0005'\]"):
        _build(root, split_dir, strict=True)


# --------------------------------------------------------------------------------- contradicting ground truth
def test_tracks_object_id_in_no_png(data):
    root, split_dir, abnormal, _ = data
    path = _annotations(root, abnormal) / f"{abnormal}_tracks.txt"
    lines = parse_tracks_file(path)
    path.write_text("".join(f"99,{t.start},{t.end}\n" for t in lines[:1]))
    with pytest.warns(DatasetWarning, match=rf"{abnormal}: object id 99 of {abnormal}_tracks\.txt line 1 appears in "
                                            rf"none of the pngs of frames {lines[0].start}–{lines[0].end}"):
        ds = _build(root, split_dir)
    assert ds.frame_labels(abnormal)[lines[0].start] == 1  # the authors' labels still come from the line
    with pytest.raises(DatasetFormatError, match="object id 99"):
        _build(root, split_dir, strict=True)


def test_track_starting_after_the_video_ends(data):
    root, split_dir, abnormal, _ = data
    path = _annotations(root, abnormal) / f"{abnormal}_tracks.txt"
    before = _build(root, split_dir).frame_labels(abnormal).copy()
    path.write_text(path.read_text() + "12,100,110\n")
    number = len(path.read_text().splitlines())
    with pytest.warns(DatasetWarning, match=rf"{abnormal}: {abnormal}_tracks\.txt line {number} starts at frame 100, "
                                            rf"after the video's last evaluated frame {FRAMES - 1} → ignored"):
        ds = _build(root, split_dir)
    np.testing.assert_array_equal(ds.frame_labels(abnormal), before)
    with pytest.raises(DatasetFormatError, match="starts at frame 100"):
        _build(root, split_dir, strict=True)


def test_empty_tracks_file_for_a_video_listed_as_abnormal(data):
    root, split_dir, abnormal, _ = data
    (_annotations(root, abnormal) / f"{abnormal}_tracks.txt").write_text("")
    with pytest.warns(DatasetWarning, match=rf"{abnormal}: .*{abnormal}_tracks\.txt is empty although "
                                            r"abnormal_test_video_names\.txt lists it as abnormal → no abnormal frames"):
        ds = _build(root, split_dir)
    assert not ds.frame_labels(abnormal).any()
    with pytest.raises(DatasetFormatError, match="is empty although"):
        _build(root, split_dir, strict=True)


def test_video_in_both_the_abnormal_and_the_normal_list(data):
    root, split_dir, abnormal, _ = data
    normal_list = split_dir / "normal_test_video_names.txt"
    normal_list.write_text(normal_list.read_text() + f"{abnormal}\n")
    with pytest.warns(DatasetWarning, match=rf"listed both as abnormal and as normal.*\n  {abnormal} "
                                            r"\(abnormal_test_video_names\.txt line 1 and normal_test_video_names\.txt "
                                            r"line 2\): treated as abnormal"):
        ds = _build(root, split_dir)
    assert ds.videos[abnormal].abnormal and ds.frame_labels(abnormal).any()
    with pytest.warns(DatasetWarning, match="listed both"):  # also when the normal videos are left out
        _build(root, split_dir, include_normal=False)
    with pytest.raises(DatasetFormatError, match=rf"listed both as abnormal and as normal.*\n  {abnormal}"):
        _build(root, split_dir, strict=True)


def test_bom_at_the_start_of_a_split_file(data):
    root, split_dir, abnormal, _ = data
    listing = split_dir / "abnormal_test_video_names.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + listing.read_bytes())
    with pytest.warns(DatasetWarning, match=r"abnormal_test_video_names\.txt starts with a byte-order mark \(BOM\); "
                                            "it was removed"):
        ds = _build(root, split_dir)
    assert abnormal in ds.videos  # the first name is read without the BOM
    with pytest.raises(DatasetFormatError, match="starts with a byte-order mark"):
        _build(root, split_dir, strict=True)


# --------------------------------------------------------------------------------- names that leave the dataset
@pytest.mark.parametrize("name", ["../../etc/passwd", "..", "Scene1/abnormal_scene_1_scenario_1", "/etc/passwd",
                                  "a\\..\\b", "C:evil", "~root", ".hidden", "bad\x01name"])
def test_split_file_names_cannot_leave_the_dataset_root(data, name):
    root, split_dir, abnormal, _ = data
    listing = split_dir / "abnormal_test_video_names.txt"
    listing.write_text(f"{abnormal}\n{name}\n")
    with pytest.raises(DatasetFormatError, match=r"abnormal_test_video_names\.txt line 2: .* is not a bare video "
                                                 r"name .* — fix the line"):
        _build(root, split_dir)


def test_resolved_path_must_stay_inside_the_root(tmp_path):
    root = tmp_path / "data"
    (root / "Scene1").mkdir(parents=True)
    source = tmp_path / "list.txt"
    assert check_inside(root / "Scene1" / "v.mp4", root, source, 1) == root / "Scene1" / "v.mp4"
    with pytest.raises(DatasetFormatError, match=r"list\.txt line 3: the name leads to .*outside the dataset root"):
        check_inside(root / "Scene1" / ".." / ".." / "v.mp4", root, source, 3)


# --------------------------------------------------------------------------------- ShanghaiTech track files
@pytest.fixture()
def shanghaitech(synthetic_shanghaitech, tmp_path):
    root = tmp_path / "shanghaitech"
    shutil.copytree(synthetic_shanghaitech.root, root)
    return root, root / "annotations" / "ShanghaiTech"


def test_shanghaitech_boxes_past_the_video_end_and_missing_files(shanghaitech, synthetic_shanghaitech):
    root, tracks = shanghaitech
    with_file = sorted(p.stem for p in tracks.glob("??_????.txt"))
    late, gone = with_file[0], with_file[1]
    length = synthetic_shanghaitech.videos[late].num_frames
    path = tracks / f"{late}.txt"
    path.write_text(path.read_text() + f"0,{length + 3},1,1,5,5\n")
    (tracks / f"{gone}.txt").unlink()
    with pytest.warns(DatasetWarning) as caught:
        ds = ShanghaiTechDataModule(str(root), gt_tracks_dir=str(tracks), frame_size=None).dataset("test")
    messages = "\n".join(str(w.message) for w in caught)
    assert f"{late}: track 0 of {path} has 1 boxes on frames {length + 3}" in messages
    assert f"{gone}: no {gone}.txt, but its frame mask has" in messages
    assert ds.gt_tracks(gone) == [] and ds.gt_tracks(late)[0][:, 0].max() < length
    with pytest.raises(DatasetFormatError, match="past the end of their video"):
        ShanghaiTechDataModule(str(root), gt_tracks_dir=str(tracks), frame_size=None, strict=True).dataset("test")
