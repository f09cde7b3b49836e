"""Memory-mapped reads of cache files: :func:`map_safetensors` gives exactly what the safetensors library reads
(every dtype a cache file holds), views that can be written without touching the file, and clip targets that
round-trip through :meth:`FeatureCache.write` / :meth:`FeatureCache.read_clip`."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from tvau_lightning.data.feature_cache import FeatureCache, FeatureCacheError, map_safetensors


def test_mapped_tensors_equal_the_library_read(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "a_bf16": torch.randn((3, 5, 7), generator=g).to(torch.bfloat16),
        "b_f16": torch.randn((4, 3), generator=g).half(),
        "c_f32": torch.randn((2, 2), generator=g),
        "d_i64": torch.arange(12).reshape(3, 4),
        "e_bool": torch.rand((3, 9, 5), generator=g) > 0.5,
        "f_f64": torch.tensor([29.97], dtype=torch.float64),
        "g_empty": torch.zeros((0, 6), dtype=torch.int64),
    }
    path = tmp_path / "clip.safetensors"
    save_file(tensors, str(path), metadata={"video_id": "v"})
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mapped, meta = map_safetensors(path)
    reference = load_file(str(path))
    assert meta == {"video_id": "v"} and sorted(mapped) == sorted(reference)
    for name, tensor in reference.items():
        assert mapped[name].dtype == tensor.dtype and torch.equal(mapped[name], tensor), name
    mapped["c_f32"].add_(1.0)  # copy-on-write: the view is writable, the file stays as it was
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_clip_targets_round_trip_and_files_without_targets_are_refused(tmp_path):
    cache = FeatureCache.create(tmp_path / "cache", fingerprint={"t": 1}, layers=[1, 3], storage_dtype="bfloat16")
    frames = [4, 5, 6, -1]
    grids = {1: torch.randn(2, 3, 4, 8), 3: torch.randn(2, 3, 4, 8)}
    masks = torch.rand(4, 12, 16) > 0.7
    targets = {"masks": masks, "frame_labels": torch.tensor([0, 1, 1, 0]), "frame_index": torch.tensor(frames),
               "valid": torch.tensor([True, True, True, False]), "fps": 29.97,
               "original_size": torch.tensor([720, 1280]), "gt_boxes": torch.tensor([[5, 0, 1, 2, 3, 4]])}
    cache.write("v/1", frames, grids, targets=targets)
    features, got = cache.read_clip("v/1", frames)
    for layer in (1, 3):
        assert torch.equal(features[layer], grids[layer].to(torch.bfloat16))
    assert torch.equal(got["masks"], masks) and got["fps"] == pytest.approx(29.97)
    assert got["original_size"] == (720, 1280) and torch.equal(got["gt_boxes"], targets["gt_boxes"])
    for name in ("frame_labels", "frame_index", "valid"):
        assert torch.equal(got[name], targets[name])
    assert got["video_labels"] is None and got["frame_categories"] is None
    cache.write("v/2", frames, grids)  # features only
    assert torch.equal(cache.read("v/2", frames)[3], grids[3].to(torch.bfloat16))
    with pytest.raises(FeatureCacheError, match="not the clip's targets.*--overwrite"):
        cache.read_clip("v/2", frames)
    with pytest.raises(FeatureCacheError, match="missing \\['valid'\\]"):
        cache.write("v/3", frames, grids, targets={k: v for k, v in targets.items() if k != "valid"})
