"""`tvau chat` driven through stdin (history, /reset, /heatmap, /standard, EOF) and `tvau analyze --rae-ckpt`
(answers.json against RAETask.converse on the DialogueDataset's own clip of the same video)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.cli import main as tvau
from tvau_lightning.data.dialogue import sample_frame_indices
from tvau_lightning.data.dialogue_schema import load_dialogues
from tvau_lightning.inference.session import STANDARD_QUESTIONS
from tvau_lightning.tasks.rae import RAETask


def _video(fitted_ahd, abnormal: bool = True):
    video_id = next(v for v in fitted_ahd.data.split("test") if fitted_ahd.data.videos[v].abnormal == abnormal)
    return fitted_ahd.data.videos[video_id]


@pytest.fixture
def answer_spy(monkeypatch):
    """Record every (history, answer) that RAETask.answer sees and returns (the real method runs)."""
    calls: list[tuple[list, str]] = []
    real = RAETask.answer

    def spy(self, frames, fps, histories):
        answers = real(self, frames, fps, histories)
        calls.extend((list(h), a) for h, a in zip(histories, answers))
        return answers

    monkeypatch.setattr(RAETask, "answer", spy)
    return calls


def _chat(args, stdin_text, monkeypatch, capsys) -> tuple[int, list[str], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin_text))
    code = tvau(["chat", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_standard_questions_are_the_builders_phase_b_questions(fitted_rae):
    """The dataset builder's anomaly-focused dialogues ask exactly these, in this order (with the plural motion
    question when a clip has several abnormal targets)."""
    from tvau_lightning.builder.render import QUESTIONS

    records = [r for split in ("training", "validation")
               for r in load_dialogues(fitted_rae.dialogues / split / "phase_b.jsonl") if r.label == 1]
    assert records
    for record in records:
        expected = list(STANDARD_QUESTIONS)
        if len(record.meta["targets"]) > 1:
            expected[2] = ("trajectory", QUESTIONS["abnormal_motions"])
        asked = [(answer.kind, question.content) for question, answer in zip(record.turns[::2], record.turns[1::2])]
        assert asked == expected


def test_chat_through_stdin_keeps_history_resets_and_saves_the_overlay(fitted_ahd, fitted_rae, tmp_path, monkeypatch,
                                                                      capsys, answer_spy):
    video = _video(fitted_ahd)
    overlay = tmp_path / "overlay.mp4"
    transcript = tmp_path / "transcript.json"
    stdin = "Is there any anomaly in this video?\n\nWhat is the abnormal target?\n/heatmap " + str(overlay) + \
            "\n/reset\nWhen does it happen?\n"  # then end of input
    code, out, err = _chat([str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--transcript", str(transcript)],
                           stdin, monkeypatch, capsys)
    assert code == 0, err
    q1, q2, q3 = "Is there any anomaly in this video?", "What is the abnormal target?", "When does it happen?"
    histories = [[(t.role, t.content) for t in h] for h, _ in answer_spy]
    a1, a2, a3 = (a for _, a in answer_spy)
    assert histories == [[("user", q1)], [("user", q1), ("assistant", a1), ("user", q2)], [("user", q3)]]
    assert out == [a1, a2, f"saved {overlay}", "(history cleared)", a3]
    import av

    with av.open(str(overlay)) as container:
        assert sum(1 for _ in container.decode(video=0)) == video.num_frames
    document = json.loads(transcript.read_text())
    assert [t["content"] for t in document["turns"]] == [q3, a3]
    assert document["frames_used"] == sample_frame_indices(0, video.num_frames - 1, fitted_rae.num_frames).tolist()


def test_chat_jsonl_standard_range_and_png(fitted_ahd, fitted_rae, tmp_path, monkeypatch, capsys, answer_spy):
    video = _video(fitted_ahd)
    tile = tmp_path / "tile.png"
    stdin = f"/standard\n/heatmap {tile}\n/heatmap {tmp_path / 'x.gif'}\n/nope\n/quit\nnever asked\n"
    code, out, err = _chat([str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--jsonl", "--range", "8", "23",
                            "--out", str(tmp_path)], stdin, monkeypatch, capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out]
    assert [(r["kind"], r["question"]) for r in records[:4]] == list(STANDARD_QUESTIONS)
    assert [r["answer"] for r in records[:4]] == [a for _, a in answer_spy]
    assert len(answer_spy[3][0]) == 7  # the fourth question sees the first three and their answers
    assert records[4:] == [{"command": "/heatmap", "path": str(tile)}]
    assert "x.gif" in err and "unknown command '/nope'" in err
    width, height = Image.open(tile).size
    assert (width, height) == (4 * 180 + 3 * 2, 120)  # four frames of the range, tiled in one row
    assert len(answer_spy) == 4  # /quit stopped before "never asked"


def test_chat_errors_name_the_file(fitted_ahd, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "rae.ckpt"
    code, _, err = _chat([str(_video(fitted_ahd).path), "--rae-ckpt", str(missing)], "", monkeypatch, capsys)
    assert code == 1 and str(missing) in err


def test_analyze_with_rae_writes_the_answers_of_converse(fitted_ahd, fitted_rae, tmp_path):
    """answers.json == RAETask.converse on the DialogueDataset clip of the same video with the standard turns."""
    import torch

    from tvau_lightning.data.dialogue import DialogueDataset, collate_dialogues
    from tvau_lightning.inference.models import load_rae_task

    video = _video(fitted_ahd)
    out = tmp_path / "result"
    # no --ckpt: the heatmaps come from the stage-1 checkpoint the RAE checkpoint names
    assert tvau(["analyze", str(video.path), "--rae-ckpt", str(fitted_rae.checkpoint), "--out", str(out),
                 "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".tvau-output", "answers.json", "overlay.mp4", "regions.json",
                                                     "report.html", "report_media", "scores.csv", "summary.json"]
    doc = json.loads((out / "answers.json").read_text())
    assert [(a["kind"], a["question"]) for a in doc["answers"]] == list(STANDARD_QUESTIONS)
    assert doc["frames_used"] == sample_frame_indices(0, video.num_frames - 1, fitted_rae.num_frames).tolist()
    assert doc["fps"] == pytest.approx(30.0 / (video.num_frames / fitted_rae.num_frames))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ahd_checkpoint"] == str(fitted_ahd.checkpoint) and summary["rae_num_frames"] == fitted_rae.num_frames

    turns = []
    for kind, question in STANDARD_QUESTIONS:
        turns += [{"role": "user", "content": question},
                  {"role": "assistant", "content": "reference", "kind": kind}]
    record = {"video": str(video.path), "dataset": "ubnormal", "video_id": video.video_id, "label": 1, "turns": turns}
    jsonl = tmp_path / "one.jsonl"
    jsonl.write_text(json.dumps(record) + "\n")
    batch = collate_dialogues([DialogueDataset(jsonl, fitted_rae.num_frames, fitted_rae.frame_size)[0]])
    rae = load_rae_task(fitted_rae.checkpoint, device="cpu", dtype="float32")
    with torch.no_grad():
        expected = [answer for _, answer in rae.converse(batch)[0]]
    assert [a["answer"] for a in doc["answers"]] == [e.strip() for e in expected]
    assert np.array_equal(batch.frame_index[0].numpy(), doc["frames_used"])


def test_frame_range_view_reads_the_right_frames(fitted_ahd):
    from tvau_lightning.data.video import open_video
    from tvau_lightning.inference.session import FrameRange, dialogue_clip

    source = open_video(_video(fitted_ahd).path)
    view = FrameRange(source, 5, 12)
    assert view.num_frames == 8 and view.size == source.size
    assert np.array_equal(view.read([0, 7]).numpy(), source.read([5, 12]).numpy())
    with pytest.raises(IndexError):
        view.read([8])
    with pytest.raises(ValueError, match="not inside"):
        FrameRange(source, 5, source.num_frames)
    clip = dialogue_clip(view, num_frames=4, frame_size=(64, 96))
    assert clip.frame_index.tolist() == (5 + sample_frame_indices(0, 7, 4)).tolist()
    assert clip.frames.shape == (4, 64, 96, 3) and clip.fps == pytest.approx(source.fps / 2)
