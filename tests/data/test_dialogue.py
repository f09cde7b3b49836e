"""Dialogue clips for stage 2: uniform frame sampling, resizing, path resolution, clear errors."""

import numpy as np
import pytest
import torch

from tvau_lightning.data.dialogue import DialogueDataModule, DialogueDataset, sample_frame_indices
from tvau_lightning.data.dialogue_schema import DialogueRecord, Turn, write_dialogues


def test_sample_frame_indices_are_uniform_and_in_range():
    assert sample_frame_indices(0, 7, 4).tolist() == [1, 3, 5, 7]       # centres of 4 segments of 2
    assert sample_frame_indices(10, 10, 3).tolist() == [10, 10, 10]     # a one-frame range repeats
    idx = sample_frame_indices(5, 104, 8)
    assert idx.min() >= 5 and idx.max() <= 104 and (np.diff(idx) > 0).all()
    with pytest.raises(ValueError, match="empty frame range"):
        sample_frame_indices(4, 3, 2)


def _record(video: str, frame_range=None) -> DialogueRecord:
    return DialogueRecord(video=video, video_id="v", dataset="ubnormal", label=1, frame_range=frame_range,
                          turns=[Turn("user", "Is there any anomaly?"), Turn("assistant", "Yes.", "yesno")])


def test_items_read_the_right_frames(synthetic_ubnormal, tmp_path):
    vid = synthetic_ubnormal.split("test")[0]
    video = next(synthetic_ubnormal.root.rglob(f"{vid}.mp4"))
    path = tmp_path / "d.jsonl"
    write_dialogues(path, [_record(str(video), (8, 23)), _record(str(video))])
    ds = DialogueDataset(path, num_frames=4, frame_size=(32, 48))
    item = ds[0]
    assert item.frames.shape == (4, 32, 48, 3) and item.frames.dtype == torch.uint8
    assert item.frame_index.tolist() == sample_frame_indices(8, 23, 4).tolist()
    assert item.fps == pytest.approx(synthetic_ubnormal.fps / 4)       # 16 frames sampled down to 4
    whole = ds[1]
    n = synthetic_ubnormal.videos[vid].num_frames
    assert whole.frame_index.tolist() == sample_frame_indices(0, n - 1, 4).tolist()


def test_errors_name_the_file_and_fix(synthetic_ubnormal, tmp_path):
    path = tmp_path / "d.jsonl"
    write_dialogues(path, [_record("missing/video.mp4")])
    with pytest.raises(FileNotFoundError, match=r"d\.jsonl: 1 video\(s\) not found.*relative to the JSONL"):
        DialogueDataset(path, 4, (32, 48))
    video = next(synthetic_ubnormal.root.rglob("*.mp4"))
    write_dialogues(path, [_record(str(video), (0, 10_000))])
    with pytest.raises(ValueError, match="frame_range"):
        DialogueDataset(path, 4, (32, 48))[0]
    with pytest.raises(ValueError, match="no train file"):
        DialogueDataModule(val_file=str(path)).dataset("train")
