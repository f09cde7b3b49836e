"""`tvau analyze --rae-ckpt` and `tvau chat` resolve the time references of the answers to source frames: a cited
"frame N" is the N-th frame the model was shown (``frames_used[N]``), "X s" is X seconds after the first one.
The tiny model's answers hold no time reference, so RAETask.answer is replaced by a constructed answer (the rest
of the path, checkpoint to answers.json and report.html, is the real one); the expected source frames are
computed here from ``frames_used`` and the video's fps."""

from __future__ import annotations

import io
import json
import re

import pytest

from tvau_lightning.cli import main as tvau
from tvau_lightning.data.video import open_video
from tvau_lightning.tasks.rae import RAETask

ANSWER = "It enters at frame 1 and is last seen at frame 9. From 0.2 s to 0.4 s."


@pytest.fixture
def constructed_answer(monkeypatch):
    monkeypatch.setattr(RAETask, "answer", lambda self, frames, fps, histories: [ANSWER for _ in histories])


def _video(fitted_ahd):
    video_id = next(v for v in fitted_ahd.data.split("test") if fitted_ahd.data.videos[v].abnormal)
    return fitted_ahd.data.videos[video_id]


def _expected(frames_used, fps):
    """``(source frames, out of range)`` of the three references of :data:`ANSWER`, by the rule."""
    assert len(frames_used) <= 9  # "frame 9" is past the frames shown
    first = frames_used[0]
    return [((frames_used[1],) * 2, False), ((frames_used[-1],) * 2, True),
            ((first + round(0.2 * fps), first + round(0.4 * fps)), False)]


def test_analyze_answers_json_and_report_carry_the_source_frames(fitted_ahd, fitted_rae, tmp_path,
                                                                 constructed_answer):
    video = _video(fitted_ahd)
    fps = open_video(video.path).fps
    out = tmp_path / "result"
    assert tvau(["analyze", str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--out", str(out),
                 "--quiet"]) == 0
    doc = json.loads((out / "answers.json").read_text())
    expected = _expected(doc["frames_used"], fps)
    assert 0.4 * fps < doc["frames_used"][-1] - doc["frames_used"][0]  # the seconds cited lie inside the clip
    for entry in doc["answers"]:
        assert entry["answer"] == ANSWER
        got = [(tuple(c["source_frames"]), c["out_of_range"]) for c in entry["citations"]]
        assert got == expected
        assert [c["text"] for c in entry["citations"]] == ["frame 1", "frame 9", "From 0.2 s to 0.4 s"]
        assert [ANSWER[slice(*c["span"])] for c in entry["citations"]] == [c["text"] for c in entry["citations"]]
        assert entry["source_frames"] == [min(e[0][0] for e in expected), max(e[0][1] for e in expected)]
        assert entry["citations"][0]["source_seconds"] == [round(expected[0][0][0] / fps, 3)] * 2

    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1))
    for answer in data["answers"]:
        cited = [p for p in answer["parts"] if "frames" in p]
        assert [(tuple(p["frames"]), p["out_of_range"]) for p in cited] == expected
        assert "".join(p["text"] for p in answer["parts"]) == ANSWER
        assert answer["cited"] and answer["frames"] == doc["answers"][0]["source_frames"]


def test_chat_prints_the_source_time_after_each_reference(fitted_ahd, fitted_rae, tmp_path, monkeypatch, capsys,
                                                          constructed_answer):
    video = _video(fitted_ahd)
    fps = open_video(video.path).fps
    transcript = tmp_path / "t.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("When?\n"))
    assert tvau(["chat", str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--transcript",
                 str(transcript)]) == 0
    out = capsys.readouterr().out.splitlines()
    used = json.loads(transcript.read_text())["frames_used"]
    (one, _), (nine, _), (seconds, _) = _expected(used, fps)
    assert out == [f"It enters at frame 1 [source frame {one[0]}, {one[0] / fps:.1f} s] and is last seen at frame 9 "
                   f"[not shown ({len(used)} frames): nearest source frame {nine[0]}, {nine[0] / fps:.1f} s]. "
                   f"From 0.2 s to 0.4 s [source frames {seconds[0]}–{seconds[1]}, {seconds[0] / fps:.1f}–"
                   f"{seconds[1] / fps:.1f} s]."]

    monkeypatch.setattr("sys.stdin", io.StringIO("When?\n"))
    assert tvau(["chat", str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--jsonl"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["answer"] == ANSWER and record["source_frames"] == [min(one[0], nine[0], seconds[0]), max(one[1], nine[1], seconds[1])]
    assert [c["source_frames"] for c in record["citations"]] == [list(one), list(nine), list(seconds)]
