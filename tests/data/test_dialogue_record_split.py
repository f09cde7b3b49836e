"""The paper's clip-level re-partition as an option of the dialogue DataModule (`record_split: records`): one pooled
JSONL split record by record into train and val — disjoint, covering the pool, sized by `val_fraction` (val =
ceil(fraction × N)), fixed by the seed (in any process), with clear errors for settings that contradict each other."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import pytest

from tvau_lightning.data.dialogue import (
    DialogueDataModule,
    DialogueDataset,
    record_split_sizes,
    split_records,
)
from tvau_lightning.data.dialogue_schema import DialogueRecord, Turn, load_dialogues, write_dialogues


def _record(video: str, video_id: str, start: int, length: int = 8) -> DialogueRecord:
    return DialogueRecord(video=video, video_id=video_id, dataset="shanghaitech", label=start % 2,
                          frame_range=(start, start + length - 1),
                          turns=[Turn("user", "Is there any anomaly?"), Turn("assistant", "Yes.", "yesno")])


def _pool(num_videos: int, clips_per_video: int, video: str = "v.mp4") -> list[DialogueRecord]:
    """Clips of several videos, as the builder cuts them (consecutive windows of each video)."""
    return [_record(video, f"{v:02d}_{v:04d}", 8 * c) for v in range(num_videos) for c in range(clips_per_video)]


def _clips(records, indices) -> set[tuple[str, tuple[int, int]]]:
    return {(records[i].video_id, records[i].frame_range) for i in indices}


def test_the_papers_counts_follow_from_a_fifth():
    # 5,136 clips (the paper's ShanghaiTech corpus) at 0.2 → 4,108 training / 1,028 validation
    assert record_split_sizes(5136, 0.2) == (4108, 1028)
    records = _pool(107, 48)  # 5,136 records over ShanghaiTech's 107 testing videos
    train, val = split_records(records, 0.2, seed=0)
    assert (len(train), len(val)) == (4108, 1028)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(len(records)))
    # the leak this option stands for: clips of one video on both sides
    assert {records[i].video_id for i in train} & {records[i].video_id for i in val}


@pytest.mark.parametrize("fraction", ["0.05", "0.1", "0.2", "0.25", "0.3", "0.5", "0.7"])
@pytest.mark.parametrize("num_records", [2, 3, 10, 30, 97, 1000])
def test_sizes_are_the_ceiling_of_the_fraction(num_records, fraction):
    num_val = math.ceil(Fraction(fraction) * num_records)  # the decimal as written, in exact arithmetic
    fraction = float(fraction)
    if num_val >= num_records:
        with pytest.raises(ValueError, match="leaves the train side empty"):
            record_split_sizes(num_records, fraction)
        return
    assert record_split_sizes(num_records, fraction) == (num_records - num_val, num_val)
    train, val = split_records(_pool(num_records, 1), fraction, seed=3)
    assert len(val) == num_val and set(train) | set(val) == set(range(num_records)) and not set(train) & set(val)


def test_the_split_is_fixed_by_the_seed_and_the_clips():
    records = _pool(12, 10)
    first = split_records(records, 0.2, seed=0)
    assert split_records(records, 0.2, seed=0) == first
    assert split_records(records, 0.2, seed=1) != first
    # a clip's side depends on the clip, not on where it sits in the file
    shuffled = records[::-1]
    again = split_records(shuffled, 0.2, seed=0)
    assert _clips(shuffled, again[1]) == _clips(records, first[1])


def test_the_split_is_the_same_in_another_process():
    """Every DDP rank computes the split on its own: nothing may depend on the process (e.g. str hashing)."""
    code = ("from tvau_lightning.data.dialogue import split_records; from tvau_lightning.data.dialogue_schema import "
            "DialogueRecord, Turn; t = [Turn('user', 'q'), Turn('assistant', 'Yes.', 'yesno')]; "
            "r = [DialogueRecord('v.mp4', f'{v:02d}_{v:04d}', 'shanghaitech', c % 2, t, (8 * c, 8 * c + 7)) "
            "for v in range(12) for c in range(10)]; print(split_records(r, 0.2, 0)[1])")
    here = split_records(_pool(12, 10), 0.2, seed=0)[1]
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": ""})
        assert out.stdout.strip() == str(here)


@pytest.fixture
def pool_file(synthetic_ubnormal, tmp_path):
    video = str(next(synthetic_ubnormal.root.rglob("*.mp4")))
    path = tmp_path / "all" / "phase_a.jsonl"
    path.parent.mkdir()
    write_dialogues(path, _pool(4, 5, video))  # 20 clips of 4 videos
    return path


def test_the_datamodule_splits_the_pool_and_tests_on_val(pool_file, tmp_path):
    dm = DialogueDataModule(train_file=str(pool_file), record_split="records", val_fraction=0.25, split_seed=5,
                            num_workers=0)
    pool = load_dialogues(pool_file)
    train, val = split_records(pool, 0.25, seed=5)
    assert (len(train), len(val)) == (15, 5)
    assert dm.dataset("train").records == [pool[i] for i in train]
    assert dm.dataset("val").records == [pool[i] for i in val]
    assert dm.dataset("test").records == dm.dataset("val").records  # no test_file: the val records
    assert dm.dataset("predict").records == dm.dataset("val").records
    # the choice is a hyper-parameter (saved in checkpoints)
    assert (dm.hparams.record_split, dm.hparams.val_fraction, dm.hparams.split_seed) == ("records", 0.25, 5)
    # an explicit test file is read whole
    other = tmp_path / "test.jsonl"
    write_dialogues(other, pool[:3])
    dm = DialogueDataModule(train_file=str(pool_file), test_file=str(other), record_split="records", num_workers=0)
    assert dm.dataset("test").records == pool[:3]
    # the default reads one file per split
    files = DialogueDataModule(train_file=str(pool_file), val_file=str(other), num_workers=0)
    assert files.hparams.record_split == "files"
    assert len(files.dataset("train")) == 20 and files.dataset("test").records == pool[:3]


def test_contradictory_settings_are_refused(pool_file, tmp_path):
    with pytest.raises(ValueError, match=r"val_file='v\.jsonl' contradicts record_split='records'.*set val_file to null"):
        DialogueDataModule(train_file=str(pool_file), val_file="v.jsonl", record_split="records")
    with pytest.raises(ValueError, match="set train_file to the pooled JSONL"):
        DialogueDataModule(record_split="records")
    for fraction in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
            DialogueDataModule(train_file=str(pool_file), record_split="records", val_fraction=fraction)
    with pytest.raises(ValueError, match="record_split must be 'files' or 'records'"):
        DialogueDataModule(train_file=str(pool_file), record_split="clips")
    # a pool too small for the fraction: the error names the file
    small = tmp_path / "small.jsonl"
    write_dialogues(small, load_dialogues(pool_file)[:2])
    dm = DialogueDataModule(train_file=str(small), record_split="records", val_fraction=0.6, num_workers=0)
    with pytest.raises(ValueError, match=r"small\.jsonl: val_fraction=0\.6 of 2 record\(s\) leaves the train side empty"):
        dm.dataset("train")
    with pytest.raises(IndexError, match="subset index 20 is outside"):
        DialogueDataset(pool_file, 4, (32, 48), subset=[0, 20])
