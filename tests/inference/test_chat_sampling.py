"""`tvau chat` and `tvau analyze --rae-ckpt` sample a video the way the RAE checkpoint's dialogue DataModule
sampled its training clips (issue 13 item 5): rate or stride, min/max frames, frame size. Explicit flags override
with one warning naming the difference; a checkpoint that records no sampling keeps the old behaviour (frames
spread at the AHD's clip length and size) with a warning. The expected frame indices are computed here from the
rule (frame round(k * fps / sample_fps) for k = 0, 1, …), not with the library's sampler."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from tvau_lightning.cli import main as tvau
from tvau_lightning.data.dialogue import sample_frame_indices
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.inference.session import (
    DialogueSampling,
    FrameRange,
    dialogue_clip,
    dialogue_window_frames,
    most_anomalous_window,
    resolve_sampling,
)
from tvau_lightning.tasks.rae import RAETask


class _Frames:
    """A video whose frame ``t`` is filled with the value ``t`` (so a frame shows which one it is)."""

    def __init__(self, num_frames: int, fps: float, size=(12, 16)) -> None:
        self.num_frames, self.fps, self.size, self.path = num_frames, fps, size, "fake.mp4"

    def read(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return idx.to(torch.uint8)[:, None, None, None].expand(len(idx), *self.size, 3).clone()


def _every(step: float, count: int, start: int = 0) -> list[int]:
    """Frames ``round(k * step)`` (halves to even, as numpy rounds in the DataModule and the builder)."""
    return [start + round(k * step) for k in range(count)]


def test_dialogue_clip_at_the_checkpoints_rate():
    video = _Frames(100, 25.0)
    paper = DialogueSampling(frame_size=(8, 8), sample_fps=2.0, min_frames=3, max_frames=40)
    clip = dialogue_clip(video, sampling=paper)
    assert clip.frame_index.tolist() == _every(12.5, 8) == [0, 12, 25, 38, 50, 62, 75, 88]
    assert clip.fps == pytest.approx(2.0) and clip.note is None and clip.frames.shape == (8, 8, 8, 3)
    assert clip.frames[:, 0, 0, 0].tolist() == clip.frame_index.tolist()  # the frames themselves, not copies
    capped = dialogue_clip(video, sampling=DialogueSampling(frame_size=(8, 8), frame_stride=3, max_frames=5))
    assert capped.frame_index.tolist() == [0, 3, 6, 9, 12] and "first 5 (frames 0-12)" in capped.note
    short = dialogue_clip(FrameRange(video, 40, 45), sampling=paper)  # 6 frames at step 12.5: frame 40 only
    assert short.frame_index.tolist() == [40, 40, 40]  # repeated up to min_frames, as in training
    spread = dialogue_clip(video, sampling=DialogueSampling(frame_size=(8, 8), num_frames=4))
    assert spread.frame_index.tolist() == sample_frame_indices(0, 99, 4).tolist()
    with pytest.raises(ValueError, match="--sample-fps 25 or lower"):
        dialogue_clip(video, sampling=DialogueSampling(frame_size=(8, 8), sample_fps=30.0))


def test_resolve_sampling_overrides_warn_once_and_default_warns():
    stored = DialogueSampling(frame_size=(64, 96), num_frames=4, sample_fps=1.0, min_frames=8, max_frames=40)
    fallback = DialogueSampling(frame_size=(32, 32), num_frames=16, origin="default")
    same, warnings = resolve_sampling(stored, fallback, {"sample_fps": None, "max_frames": 40})
    assert same == stored and same.origin == "checkpoint" and warnings == []
    changed, warnings = resolve_sampling(stored, fallback, {"frame_stride": 2, "frame_size": (56, 84)}, "rae.ckpt")
    assert (changed.sample_fps, changed.frame_stride, changed.frame_size) == (None, 2, (56, 84))
    assert changed.origin == "flags" and len(warnings) == 1
    assert warnings[0] == ("dialogue sampling differs from rae.ckpt's training DataModule: sample_fps none (trained: "
                           "1), frame_stride 2 (trained: none), frame_size 56x84 (trained: 64x96); answers may be out "
                           "of distribution")
    spread, _ = resolve_sampling(stored, fallback, {"num_frames": 6})  # a frame count alone: spread, no rate
    assert not spread.at_rate and spread.num_frames == 6
    old, warnings = resolve_sampling(None, fallback, {}, "old.ckpt")
    assert old == fallback and old.origin == "default" and len(warnings) == 1
    assert warnings[0].startswith("old.ckpt records no dialogue sampling") and "16 frames spread" in warnings[0]
    with pytest.raises(ValueError, match="not both"):
        resolve_sampling(stored, fallback, {"sample_fps": 2.0, "frame_stride": 2})
    with pytest.raises(ValueError, match="min_frames <= max_frames"):
        resolve_sampling(stored, fallback, {"max_frames": 4})


def test_checkpoint_and_export_config_sampling(tmp_path):
    from safetensors.torch import save_file

    from tvau_lightning.checkpoints import EXPORT_CONFIG, EXPORT_FORMAT, EXPORT_WEIGHTS, read_checkpoint
    from tvau_lightning.inference.models import dialogue_sampling

    fallback = DialogueSampling(frame_size=(32, 32), num_frames=16, origin="default")
    dm = {"num_frames": 8, "frame_size": [476, 868], "sample_fps": 1.0, "frame_stride": None, "min_frames": 8,
          "max_frames": 40, "train_file": "x.jsonl"}
    assert dialogue_sampling({"datamodule_hyper_parameters": dm}, fallback) == DialogueSampling(
        frame_size=(476, 868), num_frames=8, sample_fps=1.0, min_frames=8, max_frames=40)
    # a checkpoint from before sample_fps: the DataModule spread num_frames frames
    assert dialogue_sampling({"datamodule_hyper_parameters": {"num_frames": 4, "frame_size": [64, 96]}},
                             fallback) == DialogueSampling(frame_size=(64, 96), num_frames=4)
    assert dialogue_sampling({}, fallback) is None
    # an export folder whose config.json carries only the "sampling" block
    folder = tmp_path / "export"
    folder.mkdir()
    save_file({"rae.x": torch.zeros(1)}, str(folder / EXPORT_WEIGHTS))
    (folder / EXPORT_CONFIG).write_text(json.dumps({
        "format": EXPORT_FORMAT, "task": "RAETask", "hyper_parameters": {},
        "sampling": {"frame_size": [476, 868], "clip_len": 8, "frame_stride": None, "sample_fps": 1.0,
                     "min_frames": 8, "max_frames": 40}}))
    assert dialogue_sampling(read_checkpoint(folder), fallback) == DialogueSampling(
        frame_size=(476, 868), num_frames=8, sample_fps=1.0, min_frames=8, max_frames=40)


# ----------------------------------------------------------------------------------------- the commands, end to end
SAMPLE_FPS = 10.0  # the synthetic videos run at 30 fps: every 3rd frame


@pytest.fixture
def rate_rae(fitted_rae, tmp_path):
    """fitted_rae's checkpoint as if its DataModule had sampled 10 fps, 2-8 frames per clip (same weights)."""
    ckpt = torch.load(fitted_rae.checkpoint, map_location="cpu", weights_only=False)
    dm = dict(ckpt["datamodule_hyper_parameters"])
    dm.update(sample_fps=SAMPLE_FPS, frame_stride=None, min_frames=2, max_frames=8)
    ckpt["datamodule_hyper_parameters"] = dm
    path = tmp_path / "rate.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.fixture
def frames_spy(monkeypatch):
    """The frames every RAETask.answer call receives (the real method runs)."""
    seen: list[torch.Tensor] = []
    real = RAETask.answer

    def spy(self, frames, fps, histories):
        seen.append(frames.detach().cpu().clone())
        return real(self, frames, fps, histories)

    monkeypatch.setattr(RAETask, "answer", spy)
    return seen


def _video(fitted_ahd):
    video_id = next(v for v in fitted_ahd.data.split("test") if fitted_ahd.data.videos[v].abnormal)
    return fitted_ahd.data.videos[video_id]


def _chat(args, stdin_text, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin_text))
    code = tvau(["chat", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_chat_samples_at_the_checkpoints_rate(fitted_ahd, fitted_rae, rate_rae, tmp_path, monkeypatch, capsys,
                                              frames_spy):
    from tvau_lightning.data.video import open_video

    video = _video(fitted_ahd)
    source = open_video(video.path)
    step = source.fps / SAMPLE_FPS
    assert video.num_frames > 8 * step  # so that max_frames 8 caps the clip
    transcript = tmp_path / "t.json"
    code, err = _chat([str(video.path), "--rae-ckpt", str(rate_rae), "--transcript", str(transcript)],
                      "Is there any anomaly?\n", monkeypatch, capsys)
    assert code == 0, err
    expected = _every(step, 8)  # the first max_frames frames at 10 fps
    document = json.loads(transcript.read_text())
    assert document["frames_used"] == expected and document["fps"] == pytest.approx(SAMPLE_FPS)
    assert document["sampling"]["origin"] == "checkpoint" and document["sampling"]["sample_fps"] == SAMPLE_FPS
    assert "sampling (the checkpoint's): 10 fps, 2-8 frames, 64x96" in err and "warning" not in err
    assert f"first 8 (frames 0-{expected[-1]})" in err and "--range" in err
    (frames,) = frames_spy
    assert torch.equal(frames[0], resize_frames(source.read(expected), fitted_rae.frame_size))

    # an explicit flag wins, with one warning naming the difference
    code, err = _chat([str(video.path), "--rae-ckpt", str(rate_rae), "--sample-fps", "15", "--transcript",
                       str(transcript)], "/quit\n", monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(transcript.read_text())["frames_used"] == _every(source.fps / 15, 8)
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"tvau chat: warning: dialogue sampling differs from {rate_rae}'s training DataModule: "
                        "sample_fps 15 (trained: 10); answers may be out of distribution"]


def test_chat_on_a_checkpoint_without_sampling_keeps_the_old_behaviour(fitted_ahd, fitted_rae, tmp_path, monkeypatch,
                                                                      capsys):
    video = _video(fitted_ahd)
    ckpt = torch.load(fitted_rae.checkpoint, map_location="cpu", weights_only=False)
    del ckpt["datamodule_hyper_parameters"]
    bare = tmp_path / "bare.ckpt"
    torch.save(ckpt, bare)
    transcript = tmp_path / "t.json"
    code, err = _chat([str(video.path), "--rae-ckpt", str(bare), "--transcript", str(transcript)], "/quit\n",
                      monkeypatch, capsys)
    assert code == 0, err
    clip_len = 8  # fitted_ahd's DataModule clip_len, the old fallback
    assert json.loads(transcript.read_text())["frames_used"] == \
        sample_frame_indices(0, video.num_frames - 1, clip_len).tolist()
    assert f"tvau chat: warning: {bare} records no dialogue sampling" in err


def test_analyze_answers_at_the_checkpoints_rate(fitted_ahd, rate_rae, tmp_path, capsys):
    from tvau_lightning.data.video import open_video

    video = _video(fitted_ahd)
    fps = open_video(video.path).fps
    out = tmp_path / "result"
    assert tvau(["analyze", str(video.path), "--rae-ckpt", str(rate_rae), "--out", str(out), "--quiet",
                 "--max-frames", "5", "--dialogue-window", "start"]) == 0
    printed = capsys.readouterr()
    doc = json.loads((out / "answers.json").read_text())
    assert doc["frames_used"] == _every(fps / SAMPLE_FPS, 5) and doc["fps"] == pytest.approx(SAMPLE_FPS)
    assert doc["sampling"]["max_frames"] == 5 and doc["sampling"]["origin"] == "flags"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rae_sampling"]["sample_fps"] == SAMPLE_FPS and summary["rae_sampling"]["max_frames"] == 5
    assert "max_frames 5 (trained: 8)" in printed.err
    assert "answers.json: dialogue sampling (overridden): 10 fps, 2-5 frames, 64x96" in printed.out
    # dialogue flags without a dialogue model
    assert tvau(["analyze", str(video.path), "--ckpt", str(fitted_ahd.checkpoint), "--out", str(tmp_path / "x"),
                 "--sample-fps", "1"]) == 1
    assert "they need --rae-ckpt" in capsys.readouterr().err


def test_analyze_discusses_the_most_anomalous_window_of_a_long_video(fitted_ahd, rate_rae, tmp_path, capsys):
    """A video longer than the model sees at once (5 frames every 3rd = 13 source frames here) is discussed over the
    13-frame window with the highest mean score in scores.csv (checked against every window), not its start."""
    from tvau_lightning.data.video import open_video

    video = _video(fitted_ahd)
    fps = open_video(video.path).fps
    out = tmp_path / "result"
    assert tvau(["analyze", str(video.path), "--rae-ckpt", str(rate_rae), "--out", str(out), "--quiet",
                 "--max-frames", "5"]) == 0
    err = capsys.readouterr().err
    rows = (out / "scores.csv").read_text().splitlines()[1:]
    scores = np.array([float(row.split(",")[1]) for row in rows])
    step = fps / SAMPLE_FPS
    length = 4 * round(step) + 1
    means = [scores[s : s + length].mean() for s in range(len(scores) - length + 1)]
    doc = json.loads((out / "answers.json").read_text())
    start = doc["frames_used"][0]
    assert doc["frames_used"] == _every(step, 5, start=start)
    assert scores[start : start + length].mean() >= max(means) - 1e-9
    assert max(means) > means[0] + 0.05, "the synthetic anomaly must not sit at the start for this test to mean much"
    assert "the window with the highest mean anomaly score" in doc["sampling"]["note"]
    assert f"it sees frames {start}-{start + length - 1}" in err


def test_most_anomalous_window_against_every_window():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.random(int(rng.integers(1, 60))).round(1)  # rounding makes ties: the earliest wins
        length = int(rng.integers(1, 20))
        start, end = most_anomalous_window(scores, length)
        if len(scores) <= length:
            assert (start, end) == (0, len(scores) - 1)
            continue
        sums = [round(scores[s : s + length].sum(), 6) for s in range(len(scores) - length + 1)]
        assert end - start + 1 == length and start == sums.index(max(sums))
    with pytest.raises(ValueError, match="positive"):
        most_anomalous_window(np.zeros(3), 0)
    rate = DialogueSampling(frame_size=(8, 8), sample_fps=1.0, max_frames=40)
    assert dialogue_window_frames(rate, 30.0) == 39 * 30 + 1  # 40 frames at 1 fps of a 30 fps video
    assert dialogue_window_frames(DialogueSampling(frame_size=(8, 8), frame_stride=3, max_frames=5), 25.0) == 13
    assert dialogue_window_frames(DialogueSampling(frame_size=(8, 8), num_frames=8), 30.0) is None
