"""Evaluation reads each video once, front to back: :class:`SequentialEvaluationClips` yields exactly the items
of the map-style dataset, each clip once over all shards (DataLoader workers × DDP ranks), and its decoder only
ever moves forward (never a seek back, never a frame decoded twice); :class:`ThreadedEvaluationClips` does the
same with the videos dealt to threads that really run at once; DataModule loader defaults."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset

from tvau_lightning.data import clips as clips_module
from tvau_lightning.data.clips import SequentialEvaluationClips, default_num_workers
from tvau_lightning.data.decode_threads import ThreadedEvaluationClips, stop_decode_threads
from tvau_lightning.data.loader import ForkSafeDataLoader
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.data.video import VideoReadError


def make_data(dataset, **kwargs) -> UBnormalDataModule:
    return UBnormalDataModule(root=str(dataset.root), split_dir=str(dataset.split_dir), clip_len=4,
                              frame_size=(32, 48), **({"num_workers": 0} | kwargs))


class _ForwardOnlyReader:
    """Wraps a reader; records every read and fails on a read that goes back or repeats a frame."""

    def __init__(self, reader, log: list[int]) -> None:
        self._reader, self.log = reader, log

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self._reader, name)

    def read(self, indices):  # noqa: ANN001, ANN202
        frames = [int(f) for f in np.asarray(indices).reshape(-1)]
        if self.log and frames and frames[0] <= self.log[-1]:
            raise AssertionError(f"decoder moved back: frame {frames[0]} after {self.log[-1]}")
        assert frames == sorted(set(frames)), f"not one increasing read: {frames}"
        self.log.extend(frames)
        return self._reader.read(indices)


def _key(sample) -> tuple[str, tuple[int, ...]]:
    return sample.video_id, tuple(sample.frame_index.tolist())


@pytest.mark.parametrize("stride", [1, 2])
def test_sequential_items_equal_the_map_items_and_never_seek(small_ubnormal, stride, monkeypatch):
    dm = make_data(small_ubnormal, frame_stride=stride)
    dataset = dm.dataset("test")
    expected = {_key(dataset[i]): dataset[i] for i in range(len(dataset))}
    logs = _open_forward_only(dataset, monkeypatch)
    got = list(SequentialEvaluationClips(dataset))
    assert len(got) == len(dataset) == len(SequentialEvaluationClips(dataset))
    assert len({_key(s) for s in got}) == len(got)  # each clip once
    for sample in got:
        ref = expected[_key(sample)]
        assert torch.equal(sample.frames, ref.frames) and torch.equal(sample.masks, ref.masks)
        assert torch.equal(sample.valid, ref.valid) and torch.equal(sample.frame_labels, ref.frame_labels)
    for video_id, log in logs.items():  # every frame of every video decoded once, in order
        assert log == list(range(dataset.num_frames(video_id))), video_id


def test_videos_are_sharded_over_workers_and_ranks(synthetic_ubnormal, monkeypatch):
    dataset = make_data(synthetic_ubnormal).dataset("test")
    sequential = SequentialEvaluationClips(dataset)
    assert len({v for v, _ in dataset.clips}) >= 3
    seen: list[tuple[str, tuple[int, ...]]] = []
    videos_per_shard = []
    world, workers = 2, 2
    for rank in range(world):
        per_rank = 0
        for worker in range(workers):
            monkeypatch.setattr(clips_module, "shard_of_process", lambda r=rank, w=worker: (r, world, w, workers))
            items = list(sequential)
            per_rank += len(items)
            videos_per_shard.append({s.video_id for s in items})
            seen += [_key(s) for s in items]
        assert len(sequential) == per_rank  # __len__ counts the rank's clips over all its workers
    assert sorted(seen) == sorted(_key(dataset[i]) for i in range(len(dataset)))
    for a in range(len(videos_per_shard)):  # a video belongs to one shard only
        for b in range(a + 1, len(videos_per_shard)):
            assert not videos_per_shard[a] & videos_per_shard[b]


def test_loaders_read_evaluation_splits_sequentially_and_training_as_a_map(small_ubnormal):
    dm = make_data(small_ubnormal)
    assert isinstance(dm.val_dataloader().dataset, IterableDataset)
    assert isinstance(dm.test_dataloader().dataset, SequentialEvaluationClips)
    assert not isinstance(dm.train_dataloader().dataset, IterableDataset)
    with pytest.raises(ValueError, match="sampling='eval'"):
        SequentialEvaluationClips(dm.dataset("train"))


def test_loader_defaults_follow_the_machine(small_ubnormal):
    auto = make_data(small_ubnormal, num_workers=None, pin_memory=None)
    assert auto.num_workers == default_num_workers() >= 1
    assert auto.pin_memory == torch.cuda.is_available()
    assert default_num_workers(limit=1) == 1
    train = auto.train_dataloader()
    assert train.persistent_workers and train.num_workers == auto.num_workers
    val = auto.val_dataloader()  # evaluation: as many threads of the main process, no worker process
    assert isinstance(val.dataset, ThreadedEvaluationClips) and val.dataset.threads == auto.num_workers
    assert val.num_workers == 0 and not val.persistent_workers
    processes = make_data(small_ubnormal, num_workers=2, eval_loading="processes").test_dataloader()
    assert isinstance(processes.dataset, SequentialEvaluationClips) and processes.num_workers == 2
    with pytest.raises(ValueError, match="eval_loading must be one of threads, processes"):
        make_data(small_ubnormal, eval_loading="thread")


def _open_forward_only(dataset, monkeypatch, wrap=None) -> dict[str, list[int]]:
    """Make the dataset's readers forward-only (and wrapped by ``wrap``); returns the per-video read logs."""
    logs: dict[str, list[int]] = {}
    original = type(dataset)._open_reader

    def forward_only(self, video_id):  # noqa: ANN001, ANN202
        reader = _ForwardOnlyReader(original(self, video_id), logs.setdefault(video_id, []))
        return reader if wrap is None else wrap(video_id, reader)

    monkeypatch.setattr(type(dataset), "_open_reader", forward_only)
    dataset._readers.clear()
    return logs


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threaded_items_equal_the_map_items_each_once_in_video_order(small_ubnormal, threads, monkeypatch):
    dataset = make_data(small_ubnormal, frame_stride=2).dataset("test")
    expected = {_key(dataset[i]): dataset[i] for i in range(len(dataset))}
    logs = _open_forward_only(dataset, monkeypatch)
    threaded = ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=threads)
    got = list(threaded)
    assert len(got) == len(threaded) == len(dataset) and len({_key(s) for s in got}) == len(got)
    for sample in got:
        ref = expected[_key(sample)]
        assert torch.equal(sample.frames, ref.frames) and torch.equal(sample.masks, ref.masks)
        assert torch.equal(sample.frame_labels, ref.frame_labels)
    for video_id in logs:  # a video's clips keep their order; each video decoded once, front to back
        starts = [int(s.frame_index[0]) for s in got if s.video_id == video_id]
        assert starts == sorted(starts), video_id
        assert logs[video_id] == list(range(dataset.num_frames(video_id))), video_id
    assert _decode_threads() == []


def test_threads_decode_two_videos_at_once(small_ubnormal, monkeypatch):
    """Each read waits (up to 10 s) until a read of another video is under way: serial reading would fail."""
    dataset = make_data(small_ubnormal).dataset("test")
    assert len(dataset.video_ids) >= 2
    barrier = threading.Barrier(2, timeout=10)
    met: list[bool] = []

    class Rendezvous:
        def __init__(self, reader) -> None:  # noqa: ANN001
            self._reader = reader

        def __getattr__(self, name):  # noqa: ANN001, ANN204
            return getattr(self._reader, name)

        def read(self, indices):  # noqa: ANN001, ANN202
            if not met:
                barrier.wait()
                met.append(True)
            return self._reader.read(indices)

    _open_forward_only(dataset, monkeypatch, wrap=lambda video_id, reader: Rendezvous(reader))
    got = list(ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=2))
    assert met and len(got) == len(dataset)


def test_a_failing_thread_raises_in_the_consumer_and_stops_the_others(small_ubnormal, monkeypatch):
    dataset = make_data(small_ubnormal).dataset("test")
    broken = dataset.video_ids[-1]

    def fail_on(video_id, reader):  # noqa: ANN001, ANN202
        if video_id == broken:
            reader.read = lambda indices: (_ for _ in ()).throw(VideoReadError(f"{video_id}: corrupt"))
        return reader

    _open_forward_only(dataset, monkeypatch, wrap=fail_on)
    with pytest.raises(VideoReadError, match="corrupt"):
        list(ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=2))
    assert _decode_threads() == []


def test_stopping_early_ends_the_threads(small_ubnormal):
    dataset = make_data(small_ubnormal).dataset("test")
    clips = iter(ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=2, prefetch=1))
    assert next(clips).video_id in dataset.video_ids
    clips.close()  # what a consumer's break or exception does to the generator
    assert _decode_threads() == []


def _decode_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tvau-decode")]


def test_an_abandoned_iteration_is_stopped_before_workers_fork(small_ubnormal):
    """Lightning's sanity check leaves a half-read evaluation iterator behind just before the training workers
    fork: starting worker processes stops its threads, and resuming it raises instead of waiting forever."""
    dataset = make_data(small_ubnormal).dataset("test")
    abandoned = iter(ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=2, prefetch=1))
    next(abandoned)
    assert len(_decode_threads()) == 2
    workers = ForkSafeDataLoader(list(range(4)), batch_size=None, num_workers=1)
    assert sorted(int(x) for x in workers) == [0, 1, 2, 3]
    assert _decode_threads() == []
    with pytest.raises(RuntimeError, match="stopped"):
        list(abandoned)
    assert stop_decode_threads() == 0  # nothing left to stop; a new iteration starts new threads
    assert len(list(ThreadedEvaluationClips(SequentialEvaluationClips(dataset), threads=2))) == len(dataset)


def test_threaded_loader_batches_every_clip(small_ubnormal):
    dm = make_data(small_ubnormal, num_workers=2, batch_size=3)
    dataset = dm.dataset("test")
    keys = []
    for batch in dm.test_dataloader():
        keys += [(v, tuple(i.tolist())) for v, i in zip(batch.video_id, batch.frame_index)]
    assert sorted(keys) == sorted(_key(dataset[i]) for i in range(len(dataset)))


LIGHTNING_HINT = """
import sys, warnings
from types import SimpleNamespace
from lightning.pytorch.trainer.connectors import data_connector
from tvau_lightning.data.ubnormal import UBnormalDataModule
data_connector.suggested_max_num_workers = lambda devices: 8  # a machine where Lightning gives the hint
dm = UBnormalDataModule(root=sys.argv[1], split_dir=sys.argv[2], clip_len=4, frame_size=(32, 48), num_workers=2)
trainer = SimpleNamespace(num_devices=1, reload_dataloaders_every_n_epochs=0)
with warnings.catch_warnings(record=True) as caught:
    data_connector._worker_check(trainer, dm.val_dataloader(), "val_dataloader")
    data_connector._worker_check(trainer, dm.test_dataloader(), "test_dataloader")
    from torch.utils.data import DataLoader
    data_connector._worker_check(trainer, DataLoader([1, 2]), "train_dataloader")  # still hinted
print([str(w.message).split(" does")[0] for w in caught if "does not have many workers" in str(w.message)])
"""


def test_lightning_does_not_ask_threaded_evaluation_loaders_for_more_workers(small_ubnormal):
    """Lightning hints that a DataLoader with num_workers=0 "does not have many workers": wrong advice for the
    threaded evaluation loaders (their num_workers are threads); other loaders keep the hint."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", LIGHTNING_HINT, str(small_ubnormal.root), str(small_ubnormal.split_dir)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[\"The 'train_dataloader'\"]"
