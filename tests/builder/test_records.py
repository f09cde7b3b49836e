"""Records the model can observe (issue 13 item 2): the builder cuts videos into records of sampled frames, and
every time an answer cites is a frame of the record (its own 0-based sampled index) where the described thing
is visible — checked against the synthetic ground truth, not against the builder's own geometry. The records
are the paper's (8-40 frames at 1 fps) by default; a video too short for any record is named, not skipped
silently."""

import json
import math
import re

import numpy as np
import pytest

from tvau_lightning.builder.annotators import GroundTruthResponder, RetryPolicy, ScriptedAnnotator
from tvau_lightning.builder.geometry import DIRECTION_PHRASES
from tvau_lightning.builder.pipeline import (
    PAPER_RECORDS,
    BuilderSettings,
    DatasetBuilder,
    NoRecordsError,
    no_record_reason,
    record_frames,
)
from tvau_lightning.builder.sources import folder_videos, ubnormal_videos
from tvau_lightning.commands.build_dataset import build_dataset_main, build_parser, merge_config
from tvau_lightning.data.dialogue_schema import load_dialogues

FPS = 4.0  # source rate of the synthetic videos: 1 fps = every 4th frame
CELLS = (("top-left", "top-center", "top-right"), ("middle-left", "center", "middle-right"),
         ("bottom-left", "bottom-center", "bottom-right"))
WAYS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
PHRASE_TO_WAY = {v: k for k, v in DIRECTION_PHRASES.items()}


@pytest.fixture(scope="module")
def long_ubnormal(tmp_path_factory):
    from tvau_lightning.data.synthetic import write_synthetic_ubnormal

    # 180 frames at 4 fps = 45 s: 45 frames at 1 fps, more than one record of at most 40
    return write_synthetic_ubnormal(tmp_path_factory.mktemp("records") / "ubnormal", videos_per_split=3,
                                    abnormal_per_split=3, num_frames=180, fps=FPS, seed=3)


def _build(tmp_path, data, name, **settings):
    # no record setting: the default path, which must be the paper's records (8-40 frames at 1 fps)
    settings = {"sample_fps": 1.0, "retry": RetryPolicy(2, 0.0)} | settings
    builder = DatasetBuilder(ScriptedAnnotator(GroundTruthResponder("person", "intruder")), tmp_path / name,
                             BuilderSettings(**settings), progress=False, sleep=lambda s: None)
    summary = builder.run(ubnormal_videos(data.root, data.split_dir, "test"))
    assert summary.failed == 0
    return (load_dialogues(tmp_path / name / "phase_a.jsonl"), load_dialogues(tmp_path / name / "phase_b.jsonl"),
            summary)


def _cell(box, size):
    """Grid cell of an inclusive-pixel GT box ``(x1, y1, x2, y2)`` (continuous centre)."""
    height, width = size
    x, y = (box[0] + box[2] + 1) / 2, (box[1] + box[3] + 1) / 2
    return CELLS[min(2, int(3 * y // height))][min(2, int(3 * x // width))]


def _way(dx, dy):
    return WAYS[int(((math.degrees(math.atan2(-dy, dx)) % 360 + 22.5) % 360) // 45)]


def _centre(box):
    return np.array([(box[0] + box[2] + 1) / 2, (box[1] + box[3] + 1) / 2])


def _sentence_fits(sentence, track, index, size):
    """Whether one trajectory sentence is true of one GT track seen at the record's sampled frames."""
    boxes = {int(r[0]): r[1:] for r in track}
    seen = [k for k, f in enumerate(index) if f in boxes]
    if not seen:
        return False
    first, last, n = seen[0], seen[-1], len(index)

    def cell_at(k):
        return _cell(boxes[index[k]], size)

    if m := re.search(r"is seen only at frame (\d+), in the ([a-z-]+)", sentence):
        return seen == [int(m[1])] and cell_at(int(m[1])) == m[2]
    if m := re.search(r"stays in place in the ([a-z-]+) throughout", sentence):
        return first == 0 and last == n - 1 and cell_at(0) == m[1]
    if m := re.search(r"starts in the ([a-z-]+)", sentence):
        ok = first == 0 and cell_at(0) == m[1]
    elif m := re.search(r"enters from the \w+ edge at frame (\d+), in the ([a-z-]+)", sentence):
        ok = first == int(m[1]) > 0 and cell_at(first) == m[2]
    elif m := re.search(r"appears in the ([a-z-]+) at frame (\d+)", sentence):
        ok = first == int(m[2]) > 0 and cell_at(first) == m[1]
    else:
        raise AssertionError(f"no entry in {sentence!r}")
    if m := re.search(r"ends in the ([a-z-]+)", sentence):
        ok &= last == n - 1 and cell_at(last) == m[1]
    elif m := re.search(r"leaves through the \w+ edge at frame (\d+)", sentence):
        ok &= last == int(m[1]) < n - 1
    elif m := re.search(r"disappears in the ([a-z-]+) at frame (\d+)", sentence):
        ok &= last == int(m[2]) < n - 1 and cell_at(last) == m[1]
    else:
        raise AssertionError(f"no exit in {sentence!r}")
    overall = re.search(r"\(overall ([a-z ]+)\)", sentence) or re.search(r"moves ((?:up |down )?(?:and )?"
                                                                          r"(?:to the \w+|upward|downward))", sentence)
    if overall and "within a small area" not in sentence:
        dx, dy = _centre(boxes[index[last]]) - _centre(boxes[index[first]])
        ok &= PHRASE_TO_WAY[overall[1]] == _way(dx, dy)
    return bool(ok)


def test_record_frames_cut_and_drop():
    records, dropped = record_frames(180, 4.0, 1.0, min_frames=8, max_frames=40)
    assert [len(r) for r in records] == [23, 22] and dropped == 0  # 45 frames → fewest records of ≤ 40, equal ±1
    assert all(np.all(np.diff(r) == 4) for r in records) and records[0][0] == 0 and records[1][0] == 92
    records, dropped = record_frames(20, 4.0, 1.0, min_frames=8, max_frames=40)  # 5 sampled frames < 8
    assert records == [] and dropped == 1
    records, _ = record_frames(30, 10.0, None, window=16, window_stride=8)  # legacy windows, every frame
    assert [(int(r[0]), int(r[-1]), len(r)) for r in records] == [(0, 15, 16), (8, 23, 16), (14, 29, 16)]


def test_records_cite_only_their_own_sampled_frames(tmp_path, long_ubnormal):
    data = long_ubnormal
    phase_a, phase_b, summary = _build(tmp_path, data, "frames")
    assert phase_a and phase_b and summary.dropped_records["phase_b"].get("too_few_frames", 0) == 0
    checked = 0
    for record in phase_a + phase_b:
        index = list(record.frame_index)
        assert 8 <= len(index) <= 40 and record.sample_fps == pytest.approx(1.0)
        assert set(np.diff(index).tolist()) == {4} and record.frame_range == (index[0], index[-1])
        for turn in record.turns:
            if turn.role == "assistant":
                cited = [int(v) for v in re.findall(r"frame (\d+)", turn.content)]
                assert all(v < len(index) for v in cited), (turn.content, len(index))
        truth = data.videos[record.video_id]
        # the anchor answer = the runs of abnormal frames among the sampled ones, in sampled-frame numbers
        labels = truth.frame_labels[index]
        assert record.label == int(labels.any())
        anchors = record.answers("anchor")
        if record.label:
            runs = re.findall(r"rom frame (\d+) to frame (\d+)|t frame (\d+) \(", anchors[0])
            cited_runs = [(int(a), int(b)) if a else (int(c), int(c)) for a, b, c in runs]
            edges = np.flatnonzero(np.diff(np.concatenate([[0], labels, [0]])))
            assert cited_runs == [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]
        if record.meta["phase"] == "B" and record.label:
            sentences = re.split(r"(?<=\.) (?=[A-Z])", record.answers("trajectory")[0])
            for sentence in sentences:
                assert any(_sentence_fits(sentence, t, index, data.size) for t in truth.tracks), sentence
                checked += 1
    assert checked >= 2


def test_seconds_and_the_datamodule_feeds_exactly_the_record(tmp_path, long_ubnormal):
    from tvau_lightning.data.dialogue import DialogueDataset

    _, phase_b, _ = _build(tmp_path, long_ubnormal, "seconds", time_reference="seconds")
    for record in phase_b:
        for kind in ("trajectory", "anchor"):
            for answer in record.answers(kind):
                assert "frame" not in answer
                assert all(float(v) <= len(record.frame_index) - 1 for v in re.findall(r"(\d+\.\d) s", answer))
    assert any(re.search(r"\d\.\d s", a) for r in phase_b for a in r.answers("anchor"))
    path = tmp_path / "seconds" / "phase_b.jsonl"
    dataset = DialogueDataset(path, num_frames=4, frame_size=(32, 48), sample_fps=1.0, min_frames=8, max_frames=40)
    sample = dataset[0]
    assert sample.frame_index.tolist() == list(dataset.records[0].frame_index)
    assert sample.frames.shape[0] == len(dataset.records[0].frame_index) and sample.fps == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sampled at 1 fps but this DataModule takes 2 fps"):
        DialogueDataset(path, num_frames=4, frame_size=(32, 48), sample_fps=2.0)[0]


def _records_of(argv, tmp_path=None, yaml_text=None):
    parser = build_parser()
    if yaml_text is not None:
        config = tmp_path / "c.yaml"
        config.write_text(yaml_text)
        argv = ["--config", str(config), *argv]
    _, values = merge_config(parser.parse_args(argv), parser)
    settings = BuilderSettings(**values)
    return settings.record_fps, settings.min_frames, settings.max_frames


def test_record_presets_paper_by_default_dense_on_request(tmp_path, capsys):
    assert PAPER_RECORDS == {"record_fps": 1.0, "min_frames": 8, "max_frames": 40}  # paper §3.3
    assert _records_of([]) == (1.0, 8, 40)
    assert _records_of(["--paper-records"]) == (1.0, 8, 40)  # older commands keep working
    assert _records_of(["--paper-records", "--max-frames", "32"]) == (1.0, 8, 32)
    assert _records_of(["--dense-records"]) == (None, 1, None)
    assert _records_of(["--dense-records", "--max-frames", "16"]) == (None, 1, 16)  # explicit values win
    assert _records_of(["--record-fps", "2"]) == (2.0, 8, 40)
    # YAML: the preset as a key, the settings mapping still wins
    assert _records_of([], tmp_path, "dense_records: true\nsettings:\n  record_fps: 2.0\n") == (2.0, 1, None)
    assert _records_of([], tmp_path, "paper_records: true\n") == (1.0, 8, 40)
    with pytest.raises(SystemExit):
        _records_of(["--paper-records", "--dense-records"])
    assert "exclude each other" in capsys.readouterr().err
    with pytest.raises(ValueError, match="min_frames <= max_frames"):
        BuilderSettings(min_frames=8, max_frames=4)


def test_no_record_reason_names_the_duration_and_a_fix_that_works():
    settings = BuilderSettings()
    assert no_record_reason(180, FPS, settings) is None  # 45 s
    assert no_record_reason(32, FPS, settings) is None  # 8 s: exactly 8 frames at 1 fps
    reason = no_record_reason(20, FPS, settings)  # 5 s: frames 0, 4, 8, 12, 16
    assert reason.startswith("5.0 s (20 frames at 4 fps) gives no record: at record_fps 1 it gives at most 5 ")
    assert "--dense-records" in reason and reason.endswith("--min-frames 5")
    assert record_frames(20, FPS, 1.0, min_frames=5, max_frames=40)[0]  # the fix it names gives a record
    windowed = BuilderSettings(window=24)
    assert "its windows of 24 frames give at most 6 sampled frame(s)" in no_record_reason(180, FPS, windowed)
    assert no_record_reason(20, FPS, BuilderSettings(record_fps=None, min_frames=1, max_frames=None)) is None


def _frame_folders(root, lengths):
    """Normal frame-folder videos (``name → frame count``), 4 fps when read with ``--fps 4``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in lengths.items():
        folder = root / "videos" / name
        folder.mkdir(parents=True)
        for t in range(count):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"{t:03d}.png")
    (root / "labels.json").write_text(json.dumps({name: 0 for name in lengths}))
    return root


def _command(root, out, *extra):
    return build_dataset_main(["--source", "folder", "--root", str(root), "--fps", "4", "--annotator", "ground-truth",
                               "--verify", "none", "--sample-fps", "1", "--no-progress", "--out", str(out), *extra])


def test_short_videos_are_named_and_only_short_videos_stop_the_command(tmp_path, capsys):
    mixed = _frame_folders(tmp_path / "mixed", {"long": 44, "short": 12})  # 11 s and 3 s at 4 fps
    assert _command(mixed, tmp_path / "out") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tvau build-dataset: warning: custom/short: {no_record_reason(12, FPS, BuilderSettings())}"]
    assert "3.0 s (12 frames at 4 fps)" in err[0] and "--dense-records" in err[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [v["video_id"] for v in summary["no_record_videos"]] == ["short"] and summary["done"] == 2
    records = load_dialogues(tmp_path / "out" / "phase_b.jsonl")
    assert [r.video_id for r in records] == ["long"] and len(records[0].frame_index) == 11  # 0, 4, …, 40

    short = _frame_folders(tmp_path / "short", {"a": 12, "b": 20})
    assert _command(short, tmp_path / "none") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == [f"tvau build-dataset: error: custom/{v}: {no_record_reason(n, FPS, BuilderSettings())}"
                       for v, n in (("a", 12), ("b", 20))]
    assert err[2].startswith("tvau build-dataset stopped: none of the 2 video(s) gives a record") and len(err) == 3
    assert not (tmp_path / "none").exists()  # stopped before asking or writing anything
    with pytest.raises(NoRecordsError):
        DatasetBuilder(ScriptedAnnotator(GroundTruthResponder()), tmp_path / "lib", BuilderSettings(),
                       progress=False).run(folder_videos(short, fps=FPS))
    # the fix the message names
    assert _command(short, tmp_path / "dense", "--dense-records") == 0
    assert len(load_dialogues(tmp_path / "dense" / "phase_b.jsonl")) == 2
