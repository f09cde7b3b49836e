"""Cache files read into reused buffers (:meth:`FeatureCache.read_clips`, :class:`ReadBuffers`,
``CachedClipDataset(reader="read")``): the same tensors as the memory-mapped path and as the safetensors library,
batches laid out so that collating copies nothing, a batch still held never overwritten by a later one (in the
main process and across DataLoader workers), and bad files refused naming the file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from tvau_lightning.data.feature_cache import (
    CachedClipDataset,
    FeatureCache,
    FeatureCacheError,
    ReadBuffers,
    collate_cached_clips,
    feature_key,
)

LAYERS = [2, 5]
CLIP_LEN = 4
FRAME_SIZE = (6, 10)


def fill(root, clips: int = 6):
    """A cache of ``clips`` clips with random grids, masks and a different number of GT boxes per clip."""
    cache = FeatureCache.create(root, fingerprint={"test": "read"}, layers=LAYERS, storage_dtype="bfloat16")
    g = torch.Generator().manual_seed(0)
    keys = []
    for k in range(clips):
        video_id, frames = f"video/{k % 2}", [k * CLIP_LEN + i for i in range(CLIP_LEN - (k == clips - 1))]
        frames += [-1] * (CLIP_LEN - len(frames))
        grids = {layer: torch.randn((2, 3, 5, 8), generator=g) for layer in LAYERS}
        targets = {"masks": torch.rand((CLIP_LEN, *FRAME_SIZE), generator=g) > 0.6,
                   "frame_labels": torch.randint(0, 2, (CLIP_LEN,), generator=g), "frame_index": torch.tensor(frames),
                   "valid": torch.tensor([f >= 0 for f in frames]), "fps": 25.0 + k,
                   "original_size": torch.tensor([480, 640 + k]),
                   "gt_boxes": torch.randint(0, 99, (k % 3, 6), generator=g)}
        cache.write(video_id, frames, grids, targets=targets)
        keys.append((video_id, frames))
    return cache, keys


def expected(cache: FeatureCache, key) -> dict[str, torch.Tensor]:
    """A clip's tensors as the safetensors library reads them (an independent reader)."""
    return load_file(str(cache.path_for(*key)))


def assert_batch_is(batch, cache: FeatureCache, keys) -> None:
    for b, key in enumerate(keys):
        ref = expected(cache, key)
        for layer in LAYERS:
            assert torch.equal(batch.extras[feature_key(layer)][b], ref[f"layer_{layer}"]), (key, layer)
        for name in ("masks", "frame_labels", "frame_index", "valid"):
            assert torch.equal(getattr(batch, name)[b], ref[f"target.{name}"]), (key, name)
        assert torch.equal(batch.gt_boxes[b], ref["target.gt_boxes"]), key
        assert float(batch.fps[b]) == pytest.approx(float(ref["target.fps"][0]))
        assert batch.original_size[b].tolist() == ref["target.original_size"].tolist()
        assert batch.video_id[b] == key[0]


def test_read_clips_equal_the_mapped_read_and_lay_a_batch_out_as_rows(tmp_path):
    cache, keys = fill(tmp_path / "cache")
    read = cache.read_clips(keys[:4])
    for key, (features, targets) in zip(keys, read):
        mapped, mapped_targets = cache.read_clip(*key)
        for layer in LAYERS:
            assert features[layer].dtype == torch.bfloat16 and torch.equal(features[layer], mapped[layer])
        for name in ("masks", "frame_labels", "frame_index", "valid", "gt_boxes"):
            assert torch.equal(targets[name], mapped_targets[name]), name
        assert targets["fps"] == mapped_targets["fps"] and targets["original_size"] == mapped_targets["original_size"]
    # equal-shaped tensors are consecutive rows of one block: the second clip's grid starts where the first ends
    first, second = read[0][0][LAYERS[0]], read[1][0][LAYERS[0]]
    assert second.data_ptr() == first.data_ptr() + first.numel() * first.element_size()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_collated_batches_are_views_of_the_read_buffer_and_equal_the_mapped_ones(tmp_path, batch_size):
    cache, keys = fill(tmp_path / "cache")
    read = CachedClipDataset(cache, keys, FRAME_SIZE, reader="read")
    mapped = CachedClipDataset(cache, keys, FRAME_SIZE, reader="mmap")
    indices = list(range(batch_size))
    items = read.__getitems__(indices)
    batch = collate_cached_clips(items)
    assert_batch_is(batch, cache, [keys[i] for i in indices])
    assert_batch_is(collate_cached_clips(mapped.__getitems__(indices)), cache, [keys[i] for i in indices])
    for layer in LAYERS:  # no collate copy: the batch tensor is the memory the files were read into
        assert batch.extras[feature_key(layer)].data_ptr() == items[0].features[layer].data_ptr()
    assert batch.masks.data_ptr() == items[0].sample.masks.data_ptr()
    assert batch.frames.shape == (batch_size, CLIP_LEN, *FRAME_SIZE, 3) and batch.frames.stride() == (0,) * 5


def test_a_batch_still_held_is_never_overwritten_and_a_released_buffer_is_reused(tmp_path):
    cache, keys = fill(tmp_path / "cache")
    dataset = CachedClipDataset(cache, keys, FRAME_SIZE, reader="read", buffer_slots=1)
    held = collate_cached_clips(dataset.__getitems__([0, 1]))
    grid = held.extras[feature_key(LAYERS[1])][1, 0]  # a view of a view: must keep the buffer marked in use
    ptr = held.masks.data_ptr()
    del held
    for start in (2, 4, 2):  # later batches, same sizes: a ring reusing the one slot would write over `grid`
        later = collate_cached_clips(dataset.__getitems__([start, start + 1]))
        assert later.masks.data_ptr() != ptr
        assert_batch_is(later, cache, keys[start : start + 2])
        del later
    assert torch.equal(grid, expected(cache, keys[1])[f"layer_{LAYERS[1]}"][0])
    allocations = dataset.buffers.allocations
    assert allocations >= 2  # the held buffer was left alone: the later batches got another one
    del grid
    ptrs = set()
    for start in (2, 4, 2):  # nothing held any more: the ring's buffer is read into again and again
        batch = collate_cached_clips(dataset.__getitems__([start, start + 1]))
        assert_batch_is(batch, cache, keys[start : start + 2])
        ptrs.add(batch.masks.data_ptr())
        del batch
    assert dataset.buffers.allocations == allocations and len(ptrs) == 1


def test_a_ring_reuses_its_buffers_while_the_caller_holds_one_batch_at_a_time(tmp_path):
    cache, keys = fill(tmp_path / "cache")
    dataset = CachedClipDataset(cache, keys, FRAME_SIZE, reader="read", buffer_slots=3)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_cached_clips)
    for _ in range(3):
        for b, batch in enumerate(loader):  # `batch` of the previous step is alive while the next one is read
            assert_batch_is(batch, cache, keys[2 * b : 2 * b + 2])
    assert dataset.buffers.allocations <= 3


@pytest.mark.parametrize(("reader", "batch_size"), [("auto", 1), ("read", 2)])
def test_batches_from_worker_processes_equal_the_files_and_stay_valid(tmp_path, reader, batch_size):
    cache, keys = fill(tmp_path / "cache", clips=8)
    dataset = CachedClipDataset(cache, keys, FRAME_SIZE, reader=reader, buffer_slots=1)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=2, collate_fn=collate_cached_clips)
    batches = list(loader)  # all held to the end: a worker reusing memory the main process reads would change one
    assert len(batches) == 8 // batch_size
    for b, batch in enumerate(batches):
        assert_batch_is(batch, cache, keys[b * batch_size : (b + 1) * batch_size])
        assert batch.extras[feature_key(LAYERS[0])].is_shared()  # read straight into shared memory


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule (with CUDA every batch is read, pinned)")
def test_auto_maps_single_clips_on_the_cpu_and_reads_batches(tmp_path):
    cache, keys = fill(tmp_path / "cache")
    dataset = CachedClipDataset(cache, keys, FRAME_SIZE)
    assert dataset.reader == "auto" and dataset.reader_for(1) == "mmap" and dataset.reader_for(4) == "read"
    assert CachedClipDataset(cache, keys, reader="read").reader_for(1) == "read"
    with pytest.raises(ValueError, match="reader must be"):
        CachedClipDataset(cache, keys, reader="mapped")
    with pytest.raises(ValueError, match="at least one slot"):
        ReadBuffers(0)


def test_damaged_files_are_refused_naming_the_file(tmp_path):
    cache, keys = fill(tmp_path / "cache")
    path = cache.path_for(*keys[1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # truncated
    with pytest.raises(FeatureCacheError, match=f"{path.name}.*ends 100 bytes early.*fill the cache again"):
        cache.read_clips(keys[:2])
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(FeatureCacheError, match=f"cannot read cached features .*{path.name}"):
        cache.read_clips(keys[:2])
    other = cache.path_for(*keys[2])
    path.write_bytes(other.read_bytes())  # another clip's file under this clip's name
    with pytest.raises(FeatureCacheError, match="holds another clip"):
        cache.read_clips(keys[:2])
