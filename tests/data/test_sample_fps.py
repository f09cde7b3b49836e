"""``sample_fps`` on the stage-1 clip datasets (issue 13, "one sampling, both stages"): frames taken at a rate
from each video's own frame rate, i.e. a per-video stride ``round(fps / sample_fps)``, with the training and
evaluation plans of ``frame_stride`` (evaluation covers every frame exactly once)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from tvau_lightning.data.clips import SequentialEvaluationClips, VideoClipDataset, stride_for_rate
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.data.ucf_crime import UCFCrimeDataModule
from tvau_lightning.tasks.rae import sampling_differences, stage1_sampling


class _Reader:
    """Frames whose pixels hold their own index (mod 256), so a test can tell which frame it got."""

    def __init__(self, num_frames: int, fps: float) -> None:
        self.num_frames, self.fps, self.size = num_frames, fps, (4, 6)

    def read(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(indices).reshape(-1), dtype=torch.int64)
        return (idx % 256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 4, 6, 3).clone()


class _Videos(VideoClipDataset):
    """A dataset of in-memory videos ``{id: (num_frames, fps)}`` (no files)."""

    def __init__(self, videos: dict[str, tuple[int, float]], **kwargs) -> None:
        super().__init__(frame_size=None, gt_boxes=False, **kwargs)
        self.videos = videos
        self._video_ids = list(videos)
        self._build_clips()

    def num_frames(self, video_id):
        return self.videos[video_id][0]

    def original_size(self, video_id):
        return (4, 6)

    def _compute_frame_labels(self, video_id):
        return np.zeros(self.num_frames(video_id), dtype=np.int64)

    def _compute_gt_tracks(self, video_id):
        return []

    def _open_reader(self, video_id):
        return _Reader(*self.videos[video_id])

    def _read_masks(self, video_id, indices):
        return torch.zeros((len(indices), 4, 6), dtype=torch.bool)


def test_stride_for_rate():
    assert stride_for_rate(30.0, 1.0) == 30 and stride_for_rate(25.0, 1.0) == 25 and stride_for_rate(24.0, 1.0) == 24
    assert stride_for_rate(29.97, 1.0) == 30 and stride_for_rate(30.0, 30.0) == 1
    assert stride_for_rate(25.0, 2.0) == 13  # 12.5 rounds up (not to the even 12)
    with pytest.raises(ValueError, match=r"clip\.mp4 runs at 10 fps, below sample_fps=12"):
        stride_for_rate(10.0, 12.0, "clip.mp4")
    with pytest.raises(ValueError, match="clip.mp4 reports no usable frame rate"):
        stride_for_rate(0.0, 1.0, "clip.mp4")


def test_each_video_gets_its_own_stride_and_evaluation_covers_every_frame_once():
    videos = {"a": (100, 30.0), "b": (77, 25.0), "c": (10, 24.0)}
    data = _Videos(videos, clip_len=3, sampling="eval", sample_fps=1.0)
    assert {v: data.frame_stride_of(v) for v in videos} == {"a": 30, "b": 25, "c": 24}
    for video_id, (num_frames, fps) in videos.items():
        plans = [p for v, p in data.clips if v == video_id]
        counts = Counter(int(f) for p in plans for f in p)
        assert sorted(counts) == list(range(num_frames)) and set(counts.values()) == {1}
        stride = round(fps)
        assert all(len(p) <= 3 and (np.diff(p) == stride).all() for p in plans)
    # the items report the rate of their frames (source fps / stride), as the dialogue clips do
    item = data[0]
    assert item.fps == pytest.approx(1.0) and item.frame_index.tolist() == [0, 30, 60]
    assert item.frames[:, 0, 0, 0].tolist() == [0, 30, 60]


def test_sequential_evaluation_reads_blocks_of_each_videos_stride():
    videos = {"a": (100, 30.0), "b": (77, 25.0)}
    data = _Videos(videos, clip_len=2, sampling="eval", sample_fps=1.0)
    seen = Counter()
    for item in SequentialEvaluationClips(data):
        frames = item.frame_index[item.valid]
        assert item.frames[: len(frames), 0, 0, 0].tolist() == [int(f) % 256 for f in frames]
        seen.update((item.video_id, int(f)) for f in frames)
    assert set(seen.values()) == {1}
    assert sorted(seen) == sorted((v, f) for v, (n, _) in videos.items() for f in range(n))


def test_training_windows_use_the_video_stride():
    data = _Videos({"a": (200, 30.0), "b": (40, 25.0)}, clip_len=4, sampling="train", sample_fps=1.0)
    windows = {v: [p.tolist() for w, p in data.clips if w == v] for v in ("a", "b")}
    # a: span 91 frames, a window every half window (4 * 30 // 2 = 60 frames) and one ending on the last frame
    assert windows["a"] == [[0, 30, 60, 90], [60, 90, 120, 150], [109, 139, 169, 199]]
    assert windows["b"] == [[0, 25]]  # shorter than a window: one short clip


def test_inexact_rates_warn_once_naming_the_videos():
    with pytest.warns(UserWarning, match=r"2 video\(s\).*b: 12\.5 fps / stride 4 = 3\.125 fps.*c: 7 fps") as caught:
        _Videos({"a": (20, 30.0), "b": (20, 12.5), "c": (20, 7.0)}, clip_len=2, sample_fps=3.0)
    assert len([w for w in caught if "sample_fps" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _Videos({"a": (20, 30.0), "b": (20, 29.97)}, clip_len=2, sample_fps=1.0)  # 0.1 % off: no warning


def test_sample_fps_errors():
    with pytest.raises(ValueError, match="sample_fps=1 and frame_stride=2 both set the sampling rate"):
        _Videos({"a": (20, 30.0)}, clip_len=2, frame_stride=2, sample_fps=1.0)
    with pytest.raises(ValueError, match="sample_fps must be positive"):
        _Videos({"a": (20, 30.0)}, clip_len=2, sample_fps=0.0)
    with pytest.raises(ValueError, match="video 'slow' runs at 5 fps, below sample_fps=6"):
        _Videos({"a": (20, 30.0), "slow": (20, 5.0)}, clip_len=2, sample_fps=6.0)


def test_ubnormal_at_one_fps(synthetic_ubnormal):
    data = synthetic_ubnormal  # 30 fps mp4s
    dm = UBnormalDataModule(str(data.root), str(data.split_dir), clip_len=4, frame_size=(64, 96), sample_fps=1.0)
    test = dm.dataset("test")
    for video_id in test.video_ids:
        assert test.frame_stride_of(video_id) == 30
        frames = [int(f) for v, p in test.clips if v == video_id for f in p]
        assert sorted(frames) == test.videos[video_id].evaluated_frames().tolist()  # every frame, once
    assert all((np.diff(p) == 30).all() for _, p in dm.dataset("train").clips)
    batch = next(iter(dm.test_dataloader()))
    assert batch.fps.tolist() == [1.0] and batch.frame_index[0][batch.valid[0]].tolist()[:2] == [0, 30]
    # the checkpoint records it, and stage 2 reads it from there
    assert dm.hparams["sample_fps"] == 1.0
    sampling = stage1_sampling({"datamodule_hyper_parameters": dict(dm.hparams)})
    assert sampling == {"sample_fps": 1.0, "frame_stride": None, "frame_size": (64, 96)}
    assert sampling_differences(sampling, {"sample_fps": 1.0, "frame_stride": None, "frame_size": (64, 96)}) == []
    assert sampling_differences(sampling, {"sample_fps": None, "frame_stride": 1, "frame_size": (64, 96)}) == [
        "rate: stage 1 1 fps, stage 2 every frame"]
    with pytest.raises(ValueError, match=r"\.mp4 runs at 30 fps, below sample_fps=60"):
        UBnormalDataModule(str(data.root), str(data.split_dir), clip_len=4, sample_fps=60.0).dataset("test")
    with pytest.raises(ValueError, match="both set the sampling rate"):
        UBnormalDataModule(str(data.root), str(data.split_dir), frame_stride=2, sample_fps=1.0)


def test_shanghaitech_strides_from_each_part(synthetic_shanghaitech):
    # training videos are 24 fps files; the testing frame folders run at the DataModule's `fps`
    dm = ShanghaiTechDataModule(str(synthetic_shanghaitech.root), clip_len=4, frame_size=(64, 96), fps=25.0,
                                sample_fps=1.0, gt_boxes=False)
    train, test = dm.dataset("train"), dm.dataset("test")
    assert {train.frame_stride_of(v) for v in train.video_ids} == {24}
    assert {test.frame_stride_of(v) for v in test.video_ids} == {25}
    for video_id in test.video_ids:
        frames = sorted(int(f) for v, p in test.clips if v == video_id for f in p)
        assert frames == list(range(test.num_frames(video_id)))
    assert test[0].fps == pytest.approx(1.0) and dm.hparams["sample_fps"] == 1.0


def test_weakly_labelled_datasets_take_sample_fps(synthetic_ucf_crime):
    data = synthetic_ucf_crime  # 30 fps, 24 frames
    dm = UCFCrimeDataModule(str(data.root), split_dir=str(data.split_dir), clip_len=4, frame_size=(48, 64),
                            sample_fps=10.0)
    test = dm.dataset("test")
    assert {test.frame_stride_of(v) for v in test.video_ids} == {3}
    assert all((np.diff(p) == 3).all() for _, p in test.clips)
    assert test[0].fps == pytest.approx(10.0) and dm.hparams["sample_fps"] == 10.0
