"""The stage-1 feature cache never serves the features of a video that was replaced after the cache was filled:
a fill recomputes that video (naming it), a reader is refused (naming it); a touched or copied video keeps its
clips."""

import os
import shutil

import pytest
import torch

from tvau_lightning.data.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    dataset_video_paths,
    video_identity,
)
from tvau_lightning.data.ubnormal import UBnormalDataset

LAYERS = [1, 2]


def features(seed):
    g = torch.Generator().manual_seed(seed)
    return {i: torch.randn(2, 3, 4, 8, generator=g) for i in LAYERS}


def fill(cache, paths, clips=((0, 1, 2, 3), (4, 5, 6, 7))):
    """What a fill does per split: sync the videos, then write the clips that are missing. Returns the
    (video, clip) pairs written."""
    notes = cache.sync_videos(paths, note=lambda text: None)
    written = []
    for seed, video_id in enumerate(paths):
        for frames in clips:
            if not cache.contains(video_id, frames):
                cache.write(video_id, frames, features(seed))
                written.append((video_id, frames))
    return notes, written


@pytest.fixture
def data(synthetic_ubnormal, tmp_path):
    """A private copy of the synthetic UBnormal (its videos are replaced by the tests) and its test split."""
    root = tmp_path / "ubnormal"
    shutil.copytree(synthetic_ubnormal.root, root)
    split_dir = root / synthetic_ubnormal.split_dir.relative_to(synthetic_ubnormal.root)
    dataset = UBnormalDataset(root, split_dir, "test", clip_len=4, frame_size=(32, 48))
    return dataset, dataset_video_paths(dataset)


def test_a_replaced_video_is_recomputed_by_a_fill_and_refused_to_a_reader(data, tmp_path):
    dataset, paths = data
    assert sorted(paths) == sorted(dataset.video_ids) and all(p.is_file() for p in paths.values())
    cache = FeatureCache.create(tmp_path / "cache", fingerprint={"data": {"x": 1}}, layers=LAYERS)
    notes, written = fill(cache, paths)
    assert notes == [] and len(written) == 2 * len(paths)
    assert fill(cache, paths) == ([], [])  # nothing changed: nothing recomputed

    replaced, other = sorted(paths)[:2]
    video = paths[replaced]
    kept = cache.read(other, (0, 1, 2, 3))
    before = video_identity(video)
    shutil.copyfile(paths[other], video)  # the user replaces one video by another file
    assert video_identity(video)["digest"] != before["digest"]

    with pytest.raises(FeatureCacheError) as info:  # training reads the cache: refused, naming the video
        FeatureCache.open(cache.root).sync_videos(paths, invalidate=False)
    message = str(info.value)
    assert f"is stale for 1 video(s) replaced since it was filled: {replaced!r} ({video}: " in message
    assert "Run `tvau cache-features` again with the same config: it recomputes only these videos" in message
    assert cache.contains(replaced, (0, 1, 2, 3))  # a reader deletes nothing

    notes, written = fill(cache, paths)
    assert notes == [f"feature cache {cache.root}: video {replaced!r} ({video}) was replaced since its features were "
                     f"cached ({_change(before, video)}); its 2 cached clip(s) were deleted and are computed again"]
    assert written == [(replaced, (0, 1, 2, 3)), (replaced, (4, 5, 6, 7))]  # only the replaced video
    torch.testing.assert_close(cache.read(other, (0, 1, 2, 3))[1], kept[1])
    FeatureCache.open(cache.root).sync_videos(paths, invalidate=False)  # fresh again


def _change(before, video):
    size = os.path.getsize(video)
    return f"size {before['size']} → {size} bytes" if size != before["size"] else "same size, other content"


def test_same_size_other_content_is_caught_and_a_touched_video_is_not(data, tmp_path):
    _, paths = data
    cache = FeatureCache.create(tmp_path / "cache", fingerprint={}, layers=LAYERS)
    fill(cache, paths)
    first, second = sorted(paths)[:2]
    # touched (or copied without keeping times): other mtime, same content → the clips stay
    stat = paths[first].stat()
    os.utime(paths[first], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert fill(cache, paths) == ([], [])
    FeatureCache.open(cache.root).sync_videos(paths, invalidate=False)
    # the same number of bytes, other content in the first MiB (a re-encode of the same length)
    blob = bytearray(paths[second].read_bytes())
    blob[100:110] = bytes(255 - b for b in blob[100:110])
    paths[second].write_bytes(bytes(blob))
    with pytest.raises(FeatureCacheError, match=f"{second!r} .*same size, other content"):
        FeatureCache.open(cache.root).sync_videos(paths, invalidate=False)
    notes, written = fill(cache, paths)
    assert len(notes) == 1 and f"video {second!r}" in notes[0] and len(written) == 2


def test_frame_folders_and_missing_videos(tmp_path):
    folder = tmp_path / "frames" / "01_0014"
    folder.mkdir(parents=True)
    for t in range(3):
        (folder / f"{t:03d}.jpg").write_bytes(bytes([t]) * 50)
    cache = FeatureCache.create(tmp_path / "cache", fingerprint={}, layers=LAYERS)
    fill(cache, {"01_0014": folder})
    (folder / "001.jpg").write_bytes(bytes([9]) * 50)  # one frame replaced, same size
    with pytest.raises(FeatureCacheError, match="'01_0014'"):
        cache.sync_videos({"01_0014": folder}, invalidate=False)
    with pytest.raises(FeatureCacheError, match=f"cannot read video {tmp_path / 'gone.mp4'}"):
        cache.sync_videos({"gone": tmp_path / "gone.mp4"})
