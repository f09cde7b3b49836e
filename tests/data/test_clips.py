"""Clip sampling plans: every frame exactly once for evaluation, full windows for training."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from tvau_lightning.data.clips import boxes_of_clip, clip_span, evaluation_clips, training_clips


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "stride"),
    list(itertools.product([1, 5, 16, 17, 31, 48, 100], [1, 4, 8, 16], [1, 2, 3])),
)
def test_evaluation_clips_cover_every_frame_exactly_once(num_frames, clip_len, stride):
    clips = evaluation_clips(num_frames, clip_len, stride)
    counts = Counter(int(i) for clip in clips for i in clip)
    assert sorted(counts) == list(range(num_frames))
    assert set(counts.values()) == {1}
    for clip in clips:
        assert 1 <= len(clip) <= clip_len
        assert (np.diff(clip) == stride).all()
    # only the clips of the last block may be short
    block = clip_len * stride
    short = [c for c in clips if len(c) < clip_len]
    assert all(c[0] >= (num_frames // block) * block for c in short)


def test_evaluation_clips_worked_example():
    # 10 frames, clips of 3 at stride 2: block of 6 frames → phases (0,2,4), (1,3,5); then (6,8), (7,9)
    clips = [c.tolist() for c in evaluation_clips(10, 3, 2)]
    assert clips == [[0, 2, 4], [1, 3, 5], [6, 8], [7, 9]]


@pytest.mark.parametrize(("num_frames", "clip_len", "stride", "step"),
                         [(48, 8, 1, None), (48, 8, 2, 5), (100, 16, 1, 12), (17, 16, 1, 8), (24, 8, 3, 1)])
def test_training_clips_are_full_windows_covering_the_tail(num_frames, clip_len, stride, step):
    clips = training_clips(num_frames, clip_len, stride, step)
    span = clip_span(clip_len, stride)
    expected_step = max(1, clip_len * stride // 2) if step is None else step
    starts = [int(c[0]) for c in clips]
    assert all(len(c) == clip_len and (np.diff(c) == stride).all() for c in clips)
    assert starts[0] == 0 and int(clips[-1][-1]) == num_frames - 1  # the tail window ends on the last frame
    assert all(b - a == expected_step for a, b in zip(starts[:-2], starts[1:-1]))
    assert 0 < starts[-1] - starts[-2] <= expected_step
    assert max(starts) + span <= num_frames


def test_training_clip_of_a_short_video_is_one_short_clip():
    clips = training_clips(5, 8, 2)
    assert [c.tolist() for c in clips] == [[0, 2, 4]]
    assert training_clips(0, 8) == []


@pytest.mark.parametrize("bad", [{"clip_len": 0}, {"frame_stride": 0}])
def test_sampling_arguments_are_validated(bad):
    args = {"num_frames": 10, "clip_len": 4, "frame_stride": 1} | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        evaluation_clips(**args)


def test_boxes_of_clip_selects_the_clip_frames_with_track_ids():
    tracks = [np.array([[3, 1, 2, 5, 6], [4, 1, 2, 5, 7], [9, 0, 0, 1, 1]]), np.array([[4, 10, 10, 12, 12]])]
    boxes = boxes_of_clip(tracks, np.array([4, 5, 3, -1]))
    assert boxes.dtype == torch.int64
    assert boxes.tolist() == [[3, 0, 1, 2, 5, 6], [4, 0, 1, 2, 5, 7], [4, 1, 10, 10, 12, 12]]
    assert boxes_of_clip(tracks, np.array([20, 21])).shape == (0, 6)
    assert boxes_of_clip([], np.array([1])).shape == (0, 6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clip_len": 0}, "clip_len"), ({"frame_stride": -1}, "frame_stride"),
    ({"frame_size": (0, 10)}, "frame_size"), ({"train_clip_step": 0}, "clip_step"),
])
def test_datamodules_validate_clip_arguments_at_construction(kwargs, message, tmp_path):
    from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
    from tvau_lightning.data.ubnormal import UBnormalDataModule

    with pytest.raises(ValueError, match=message):
        UBnormalDataModule(str(tmp_path), str(tmp_path), **kwargs)
    with pytest.raises(ValueError, match=message):
        ShanghaiTechDataModule(str(tmp_path), **kwargs)
