"""The feature-cache store (data/feature_cache.py) on hand-made tensors: no backbone involved."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from tvau_lightning.data.feature_cache import (
    CACHE_FORMAT_VERSION,
    FeatureCache,
    FeatureCacheError,
    MissingFeaturesError,
    attach_cached_features,
    data_fingerprint,
    feature_key,
    fingerprint_differences,
)
from tvau_lightning.data.types import ClipBatch

LAYERS = [1, 3]
FINGERPRINT = {"backbone": {"family": "toy", "vision_weights": "abc"}, "data": {"frame_size": [64, 96], "clip_len": 4}}


def grids(seed: int, shape=(2, 3, 4, 5)) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.randn(shape, generator=g) * 3 for layer in LAYERS}


def new_cache(root, **kwargs) -> FeatureCache:
    return FeatureCache.create(root, fingerprint=kwargs.pop("fingerprint", FINGERPRINT), layers=LAYERS, **kwargs)


def test_round_trip_in_the_storage_dtype(tmp_path):
    cache = new_cache(tmp_path / "c", storage_dtype="float16")
    feats = grids(0)
    cache.write("video_a", [4, 5, 6, 7], feats)
    back = cache.read("video_a", torch.tensor([4, 5, 6, 7]))
    assert sorted(back) == LAYERS
    for layer in LAYERS:
        assert back[layer].dtype == torch.float16
        assert torch.equal(back[layer], feats[layer].half())
    bf16 = new_cache(tmp_path / "b", storage_dtype="bfloat16")
    bf16.write("video_a", [4, 5, 6, 7], feats)
    assert torch.equal(bf16.read("video_a", [4, 5, 6, 7])[1], feats[1].bfloat16())


def test_clips_are_keyed_by_video_and_exact_frame_indices(tmp_path):
    cache = new_cache(tmp_path / "c")
    cache.write("v/1", [0, 1, 2, 3], grids(1))
    cache.write("v/1", [0, 2, 4, 6], grids(2))  # same first frame, another stride
    cache.write("v/1", [28, 29, -1, -1], grids(3))  # a padded last clip
    cache.write("v1", [0, 1, 2, 3], grids(4))  # a video id that equals the other one once '/' is dropped
    assert cache.num_clips() == 4
    assert torch.equal(cache.read("v/1", [0, 2, 4, 6])[3], grids(2)[3].half())
    assert torch.equal(cache.read("v/1", [28, 29, -1, -1])[1], grids(3)[1].half())
    assert torch.equal(cache.read("v1", [0, 1, 2, 3])[1], grids(4)[1].half())
    assert not cache.contains("v/1", [28, 29])  # unpadded indices are another clip
    assert not cache.contains("v/1", [0, 1, 2, 4])
    assert cache.path_for("v/1", [0, 1, 2, 3]).parent.name == "v%2F1"  # no nested folders from ids


def test_read_batch_stacks_clips_and_attaches_them_to_a_clip_batch(tmp_path):
    cache = new_cache(tmp_path / "c")
    cache.write("a", [0, 1, 2, 3], grids(5))
    cache.write("b", [8, 9, -1, -1], grids(6))
    frame_index = torch.tensor([[0, 1, 2, 3], [8, 9, -1, -1]])
    batch = ClipBatch(frames=torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8), masks=torch.zeros(2, 4, 8, 8, dtype=torch.bool),
                      frame_labels=torch.zeros(2, 4, dtype=torch.long), frame_index=frame_index,
                      valid=frame_index >= 0, video_id=["a", "b"], fps=torch.ones(2), original_size=torch.ones(2, 2))
    attach_cached_features(batch, cache)
    for layer in LAYERS:
        got = batch.extras[feature_key(layer)]
        assert got.shape == (2, 2, 3, 4, 5)
        assert torch.equal(got[0], grids(5)[layer].half()) and torch.equal(got[1], grids(6)[layer].half())


def test_missing_clips_are_named(tmp_path):
    cache = new_cache(tmp_path / "c")
    cache.write("a", [0, 1, 2, 3], grids(0))
    with pytest.raises(MissingFeaturesError, match=r"1 clip\(s\) not in the feature cache.*'b' frames 4..5 \(2 frames \+ 2 padding\)"):
        cache.read_batch(["a", "b"], torch.tensor([[0, 1, 2, 3], [4, 5, -1, -1]]))
    with pytest.raises(MissingFeaturesError, match="tvau cache-features"):
        cache.read("zzz", [0])


def test_other_settings_never_share_a_folder(tmp_path):
    root = tmp_path / "c"
    cache = new_cache(root)
    cache.write("a", [0, 1, 2, 3], grids(0))
    again = new_cache(root)  # same settings: reused, clips kept (an interrupted fill resumes)
    assert again.contains("a", [0, 1, 2, 3])
    other = {**FINGERPRINT, "data": {"frame_size": [128, 192], "clip_len": 4}}
    with pytest.raises(FeatureCacheError, match=r"data\.frame_size: cache \[64, 96\], now \[128, 192\].*--overwrite"):
        new_cache(root, fingerprint=other)
    with pytest.raises(FeatureCacheError, match=r"storage_dtype: cache \"float16\", now \"bfloat16\""):
        new_cache(root, storage_dtype="bfloat16")
    rebuilt = new_cache(root, fingerprint=other, overwrite=True)
    assert rebuilt.num_clips() == 0 and not rebuilt.contains("a", [0, 1, 2, 3])
    assert json.loads((root / "manifest.json").read_text())["fingerprint"]["data"]["frame_size"] == [128, 192]


def test_open_checks_the_expected_identity(tmp_path):
    root = tmp_path / "c"
    new_cache(root)
    opened = FeatureCache.open(root, {"layers": LAYERS, **FINGERPRINT})
    assert opened.layers == LAYERS and opened.storage_dtype == torch.float16
    FeatureCache.open(root, {"backbone": FINGERPRINT["backbone"]})  # only the given sections are compared
    with pytest.raises(FeatureCacheError, match=r"stale.*layers: cache \[1, 3\], now \[1, 2\]"):
        FeatureCache.open(root, {"layers": [1, 2]})
    with pytest.raises(FeatureCacheError, match=r"backbone\.vision_weights: cache \"abc\", now \"xyz\""):
        FeatureCache.open(root, {"backbone": {"family": "toy", "vision_weights": "xyz"}})
    with pytest.raises(FeatureCacheError, match="no feature cache at .*fill it first"):
        FeatureCache.open(tmp_path / "nothing")


def test_format_version_and_foreign_folders(tmp_path):
    root = tmp_path / "c"
    new_cache(root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "format_version": CACHE_FORMAT_VERSION + 1}))
    with pytest.raises(FeatureCacheError, match="cache format"):
        FeatureCache.open(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(FeatureCacheError, match="not a readable feature-cache manifest"):
        FeatureCache.open(root)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(FeatureCacheError, match="not a feature cache"):
        new_cache(foreign)


def test_a_file_from_other_settings_is_refused(tmp_path):
    """A clip file copied over from a cache of other settings is detected by its stored fingerprint."""
    a = new_cache(tmp_path / "a")
    b = new_cache(tmp_path / "b", fingerprint={**FINGERPRINT, "backbone": {"family": "toy", "vision_weights": "zz"}})
    src = b.write("v", [0, 1, 2, 3], grids(0))
    dst = a.path_for("v", [0, 1, 2, 3])
    dst.parent.mkdir(parents=True)
    shutil.copyfile(src, dst)
    with pytest.raises(FeatureCacheError, match="other settings"):
        a.read("v", [0, 1, 2, 3])
    shutil.copyfile(a.write("w", [5, 6], grids(1)), dst)  # the right settings, but another clip
    with pytest.raises(FeatureCacheError, match="holds another clip"):
        a.read("v", [0, 1, 2, 3])


def test_fp16_overflow_is_refused_with_the_fix(tmp_path):
    cache = new_cache(tmp_path / "c")
    feats = grids(0)
    feats[3][0, 0, 0, 0] = 1e5
    with pytest.raises(FeatureCacheError, match="bfloat16"):
        cache.write("a", [0, 1, 2, 3], feats)
    assert cache.num_clips() == 0
    with pytest.raises(FeatureCacheError, match=r"expected features of layers \[1, 3\]"):
        cache.write("a", [0, 1, 2, 3], {1: feats[1]})


def test_data_fingerprint_and_differences():
    dm = SimpleNamespace(frame_size=(64, 96), resize_mode="bilinear", clip_len=8, frame_stride=2)
    fp = data_fingerprint(dm)
    assert fp["frame_size"] == [64, 96] and fp["clip_len"] == 8 and fp["frame_stride"] == 2
    assert fp["resize_mode"] == "bilinear" and fp["datamodule"].endswith("SimpleNamespace")
    assert fingerprint_differences(fp, json.loads(json.dumps(fp))) == []  # tuples and lists are the same
    assert fingerprint_differences({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) == ["a.b: cache 2, now 1",
                                                                                 'a.c: cache 3, now "<absent>"']
