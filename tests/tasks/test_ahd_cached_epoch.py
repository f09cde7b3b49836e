"""Cached epochs that only read the cache: every clip file holds the clip's targets, the DataModule serves the
splits from the files alone once the task opened its cache, and an epoch (training + validation) decodes no
frame — the video reader raises if it is ever opened. With batches of several clips in the main process the
loader reads the files into reused buffers (``CachedClipDataset`` ``auto`` → ``read``) and serves the targets the
videos give and the grids the mapped files hold — every batch kept to the end, so a buffer reused too early would
show (tiny Qwen2.5-VL, small synthetic UBnormal, CPU)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tvau_lightning.backbones.types import BackboneConfig
from tvau_lightning.data.feature_cache import (
    CachedClipDataset,
    FeatureCache,
    collate_cached_clips,
    feature_key,
)
from tvau_lightning.data.types import collate_clips
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.modules.feature_extraction import fill_feature_cache
from tvau_lightning.tasks.ahd import AHDTask


def make_task(qwen_dir, **kwargs) -> AHDTask:
    torch.manual_seed(0)
    return AHDTask(BackboneConfig(path=str(qwen_dir), dtype="float32"), logit_scale=10.0, log_heatmaps=0, **kwargs)


def make_data(dataset, batch_size: int = 1) -> UBnormalDataModule:
    return UBnormalDataModule(root=str(dataset.root), split_dir=str(dataset.split_dir), clip_len=8,
                              frame_size=(64, 96), batch_size=batch_size, num_workers=0)


@pytest.fixture(scope="module")
def cache_dir(small_ubnormal, tiny_qwen_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cached_epoch") / "cache"
    fill_feature_cache(make_task(tiny_qwen_dir), make_data(small_ubnormal), out, splits=("train", "val"))
    return out


def test_cache_files_hold_each_clips_targets(cache_dir, small_ubnormal):
    dataset = make_data(small_ubnormal).dataset("val")
    cached = CachedClipDataset.from_dataset(FeatureCache.open(cache_dir), dataset)
    assert len(cached) == len(dataset) > 0
    for i in range(len(dataset)):
        live, item = dataset[i], cached[i]
        got = item.sample
        assert torch.equal(got.masks, live.masks) and got.masks.dtype == torch.bool
        for name in ("frame_labels", "frame_index", "valid"):
            assert torch.equal(getattr(got, name), getattr(live, name)), name
        assert got.original_size == tuple(live.original_size) and got.fps == pytest.approx(live.fps)
        assert got.video_id == live.video_id
        assert (got.gt_boxes is None) == (live.gt_boxes is None)
        if live.gt_boxes is not None:
            assert torch.equal(got.gt_boxes, live.gt_boxes)
        assert got.frames.shape == live.frames.shape and got.frames.stride() == (0, 0, 0, 0)
    batch = collate_cached_clips([cached[0], cached[1]])
    reference = collate_clips([dataset[0], dataset[1]])
    assert batch.frame_size == reference.frame_size and torch.equal(batch.masks, reference.masks)
    assert feature_key(1) in batch.extras and batch.extras[feature_key(1)].shape[0] == 2


def test_a_cached_epoch_opens_no_video(cache_dir, small_ubnormal, tiny_qwen_dir, tmp_path, monkeypatch):
    dm = make_data(small_ubnormal)
    datasets = [dm.dataset("train"), dm.dataset("val")]
    opened: list[str] = []

    def no_video(self, video_id):  # noqa: ANN001, ANN202
        opened.append(video_id)
        raise AssertionError(f"a cached epoch opened video {video_id}")

    for ds in datasets:
        ds._readers.clear()
        monkeypatch.setattr(type(ds), "_open_reader", no_video)
    task = make_task(tiny_qwen_dir, feature_cache=str(cache_dir))
    calls: list[int] = []
    task.backbone.visual.register_forward_hook(lambda *_: calls.append(1))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=dm)
    assert opened == [] and calls == []
    assert trainer.num_training_batches == len(datasets[0]) and "val/micro_auc" in trainer.callback_metrics
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

def test_batches_read_into_reused_buffers_equal_the_videos_and_the_mapped_files(cache_dir, small_ubnormal):
    dm = make_data(small_ubnormal, batch_size=2)
    live = dm.dataset("val")
    cache = FeatureCache.open(cache_dir)
    dm.read_from_feature_cache(cache)
    batches = list(dm.val_dataloader())  # the validation loader: in order
    assert len(batches) == (len(live) + 1) // 2 > 1
    mapped = CachedClipDataset.from_dataset(cache, live, reader="mmap")
    assert CachedClipDataset.from_dataset(cache, live).reader_for(2) == "read"
    for b, batch in enumerate(batches):
        indices = list(range(2 * b, min(2 * b + 2, len(live))))
        reference = collate_clips([live[i] for i in indices])
        for name in ("masks", "frame_labels", "frame_index", "valid"):
            assert torch.equal(getattr(batch, name), getattr(reference, name)), (b, name)
        assert batch.video_id == reference.video_id and batch.frame_size == reference.frame_size
        for i, index in enumerate(indices):
            grids = mapped[index].features
            for layer, grid in grids.items():
                assert torch.equal(batch.extras[feature_key(layer)][i], grid), (b, layer)


def test_a_cached_epoch_in_batches_opens_no_video(cache_dir, small_ubnormal, tiny_qwen_dir, tmp_path, monkeypatch):
    dm = make_data(small_ubnormal, batch_size=2)
    dataset = dm.dataset("train")

    def no_video(self, video_id):  # noqa: ANN001, ANN202
        raise AssertionError(f"a cached epoch opened video {video_id}")

    dataset._readers.clear()
    monkeypatch.setattr(type(dataset), "_open_reader", no_video)
    task = make_task(tiny_qwen_dir, feature_cache=str(cache_dir))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=dm)
    assert trainer.num_training_batches == (len(dataset) + 1) // 2
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_threaded_fill_of_an_evaluation_split_equals_the_map_fill_and_resumes(small_ubnormal, tiny_qwen_dir,
                                                                              tmp_path):
    """The fill reads evaluation splits as the DataModule's loaders do (each video once, by threads): its files
    equal those of the map-style fill (``eval_loading: processes``) clip by clip, and a resumed fill computes only
    the missing clips."""
    task = make_task(tiny_qwen_dir)
    settings = dict(root=str(small_ubnormal.root), split_dir=str(small_ubnormal.split_dir), clip_len=8,
                    frame_size=(64, 96))
    threaded = UBnormalDataModule(**settings, num_workers=2)
    assert threaded.eval_loading == "threads"
    out = tmp_path / "threads"
    report = fill_feature_cache(task, threaded, out, splits=("val",))
    fill_feature_cache(task, UBnormalDataModule(**settings, num_workers=0, eval_loading="processes"),
                       tmp_path / "map", splits=("val",))  # a map-style Subset over the clips, in order
    reference, cache = FeatureCache.open(tmp_path / "map"), FeatureCache.open(out)
    clips = threaded.dataset("val").clips
    assert report.splits["val"]["written"] == len(clips) == cache.num_clips() > 2

    def same_files() -> None:
        for video_id, indices in clips:
            frames = list(indices) + [-1] * (8 - len(indices))
            (grids, targets), (expected, expected_targets) = (cache.read_clip(video_id, frames),
                                                              reference.read_clip(video_id, frames))
            for layer in expected:
                assert torch.equal(grids[layer], expected[layer]), (video_id, frames, layer)
            assert torch.equal(targets["masks"], expected_targets["masks"])

    same_files()
    for video_id, indices in clips[:2]:
        cache.path_for(video_id, list(indices) + [-1] * (8 - len(indices))).unlink()
    again = fill_feature_cache(task, threaded, out, splits=("val",))
    assert again.splits["val"]["written"] == 2 and again.splits["val"]["already_cached"] == len(clips) - 2
    same_files()
