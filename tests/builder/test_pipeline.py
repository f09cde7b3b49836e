"""The whole builder: hand-made and synthetic videos, a scripted annotator, drops, failures, resume, windows, CLI."""

import json

import numpy as np
import pytest

from tvau_lightning.builder.annotators import (
    AnnotatorRequest,
    BackboneAnnotator,
    GroundTruthResponder,
    RetryPolicy,
    ScriptedAnnotator,
)
from tvau_lightning.builder.geometry import (
    describe_anchors,
    describe_trajectory,
    inclusive_to_continuous,
    label_ranges,
    trajectory_facts,
)
from tvau_lightning.builder.pipeline import (
    DENSE_RECORDS,
    BuildError,
    BuilderSettings,
    DatasetBuilder,
    clip_windows,
    sample_frames,
)
from tvau_lightning.builder.render import NO_ABNORMAL_TARGET, QUESTIONS
from tvau_lightning.builder.sources import ArrayVideoSource, ubnormal_videos
from tvau_lightning.data.dialogue_schema import load_dialogues

H, W, FPS, T = 60, 90, 10.0, 30
BLUE, RED = (50, 80, 190), (250, 30, 20)


def hand_made_videos(tmp_path):
    """An abnormal video — a blue person walking right all along, a red intruder entering from the top at frame 8
    and moving down until frame 25 — and a normal one with the walker only."""
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(110, 8, (T, H, W, 3)), 0, 255).astype(np.uint8)
    normal = frames.copy()
    masks = np.zeros((T, H, W), bool)
    walker = []
    for t in range(T):
        x1 = 5 + 2 * t
        frames[t, 40:50, x1: x1 + 10] = BLUE
        normal[t, 40:50, x1: x1 + 10] = BLUE
        walker.append([t, x1, 40, x1 + 9, 49])
        if 8 <= t <= 25:
            y1 = 2 * (t - 8)
            frames[t, y1: y1 + 10, 60:70] = RED
            masks[t, y1: y1 + 10, 60:70] = True
    objects = {"object:1": np.asarray(walker)}
    abnormal = ArrayVideoSource("street", frames, FPS, tmp_path / "videos" / "street.mp4", masks=masks, objects=objects)
    quiet = ArrayVideoSource("quiet", normal, FPS, tmp_path / "videos" / "quiet.mp4", objects=objects)
    return abnormal, quiet


def ground_truth(**kwargs):
    return ScriptedAnnotator(GroundTruthResponder("person", "intruder"), **kwargs)


def build(tmp_path, annotator, videos, name="out", **settings):
    # the hand-made videos last 3 s: dense records (every frame), not the paper's default 8-40 frames at 1 fps
    settings = {"sample_fps": 2.0, "retry": RetryPolicy(2, 0.0), **DENSE_RECORDS} | settings
    builder = DatasetBuilder(annotator, tmp_path / name, BuilderSettings(**settings), progress=False,
                             sleep=lambda s: None)
    return builder, builder.run(videos)


def turns_of(record):
    return [(t.role, t.kind, t.content) for t in record.turns]


def test_helpers_sampling_and_windows():
    assert sample_frames(30, 10.0, 2.0, None) == ([0, 5, 10, 15, 20, 25, 29], 5)
    assert sample_frames(30, 10.0, None, None)[0] == list(range(30))
    frames, gap = sample_frames(100, 10.0, None, 5)
    assert frames == [0, 25, 50, 74, 99] and gap == 25
    assert clip_windows(30, None, None) == [(0, 29)]
    assert clip_windows(30, 10, None) == [(0, 9), (10, 19), (20, 29)]
    assert clip_windows(25, 10, 8) == [(0, 9), (8, 17), (15, 24)]
    assert clip_windows(8, 10, None) == [(0, 7)]


def test_full_pipeline_on_hand_made_videos(tmp_path):
    abnormal, quiet = hand_made_videos(tmp_path)
    annotator = ground_truth()
    builder, summary = build(tmp_path, annotator, [abnormal, quiet])
    out = tmp_path / "out"
    a, b = load_dialogues(out / "phase_a.jsonl"), load_dialogues(out / "phase_b.jsonl")
    assert summary.records == {"phase_a": 2, "phase_b": 2} and summary.failed_queries == 0
    assert summary.dropped_records == {"phase_a": {}, "phase_b": {}}
    # frame questions: 7 sampled frames per video + the intruder's refinement (18 frames at 2 fps → 4 frames)
    assert summary.queries_by_task["frame_objects"] == {"asked": 7 + 4 + 7, "failed": 0}
    # verification: walker ×2 videos + intruder (phase A) + intruder (phase B), two questions each
    assert summary.queries_by_task["verify_motion"]["asked"] == 4
    assert summary.queries_by_task["verify_appearance"]["asked"] == 4
    assert annotator.calls == summary.queries == 26

    street_a, quiet_a = a
    assert (street_a.video_id, street_a.label, street_a.frame_range, street_a.dataset) == ("street", 1, (0, 29), "custom")
    assert street_a.video == "../videos/street.mp4" and street_a.resolve_video(out).resolve() == (tmp_path / "videos" / "street.mp4").resolve()
    assert turns_of(street_a)[:4] == [("user", None, QUESTIONS["judgment"]), ("assistant", "yesno", "Yes."),
                                      ("user", None, QUESTIONS["targets"]),
                                      ("assistant", "target", "Two targets: a person (blue clothing); "
                                                              "an intruder (red clothing).")]
    # trajectories from the exact tracks, worked out by hand: the walker moves 58 px right in 2.9 s
    # (0.185 diagonals/s: fast) from the bottom-left (centre x 10) to the bottom-right (centre x 68 ≥ 60); the intruder (inclusive box
    # x 60..69, y 2(t-8)..2(t-8)+9) touches the top at frame 8 (top-right) and is last seen at frame 25
    # inside the frame, centred (65, 39) → middle-right, 34 px in 1.7 s → fast.
    walker = "The person starts in the bottom-left, moves to the right quickly, and ends in the bottom-right."
    intruder = ("The intruder enters from the top edge at frame 8, in the top-right, moves downward quickly, "
                "and disappears in the middle-right at frame 25.")
    assert street_a.answers("trajectory") == [f"{walker} {intruder}"]
    assert street_a.answers("anchor") == ["From frame 8 to frame 25 (0.8 s–2.5 s)."]
    assert quiet_a.label == 0 and quiet_a.answers("yesno") == ["No."] and quiet_a.answers("anchor") == []
    assert quiet_a.answers("target") == ["A person (blue clothing)."]

    street_b, quiet_b = b
    assert turns_of(street_b) == [
        ("user", None, QUESTIONS["judgment"]), ("assistant", "yesno", "Yes."),
        ("user", None, QUESTIONS["abnormal_target"]), ("assistant", "target", "An intruder (red clothing)."),
        ("user", None, QUESTIONS["abnormal_motion"]), ("assistant", "trajectory", intruder),
        ("user", None, QUESTIONS["when"]), ("assistant", "anchor", "From frame 8 to frame 25 (0.8 s–2.5 s)."),
    ]
    assert street_b.meta["phase"] == "B" and street_b.meta["targets"][0]["exact_geometry"] is True
    assert turns_of(quiet_b) == [("user", None, QUESTIONS["judgment"]), ("assistant", "yesno", "No."),
                                 ("user", None, QUESTIONS["abnormal_target"]), ("assistant", "other", NO_ABNORMAL_TARGET)]
    # the anomaly-focused questions saw the background blurred and the intruder intact
    focused = [m for task, m in annotator.log if task == "frame_objects" and m["focused"]]
    assert [m["frame"] for m in focused] == [8, 14, 19, 25]
    summary_file = json.loads((out / "summary.json").read_text())
    assert summary_file["records"] == summary.records and summary_file["targets"]["anomaly"] == {"ok": 1}
    assert (out / "failures.jsonl").read_text() == ""


class Mischief:
    """Ground truth, except: frame 15's first answer is garbage twice (a recorded failure), the intruder's motion is
    answered 'up' (geometry says down) unless ``honest_motion``, and focused frames show nothing if ``blind``."""

    def __init__(self, honest_motion=False, blind=False):
        self.truth = GroundTruthResponder("person", "intruder")
        self.honest_motion, self.blind = honest_motion, blind

    def __call__(self, request: AnnotatorRequest) -> str:
        meta = request.meta
        if request.task == "frame_objects" and meta["frame"] == 15 and not meta["focused"]:
            return "Sorry, I cannot help with that."
        if request.task == "frame_objects" and meta["focused"] and self.blind:
            return '{"objects": []}'
        if request.task == "verify_motion" and meta["abnormal"] and not self.honest_motion:
            return '{"direction": "up", "speed": "fast"}'
        return self.truth(request)


def test_failures_recorded_and_inconsistent_records_dropped(tmp_path):
    abnormal, quiet = hand_made_videos(tmp_path)
    _, summary = build(tmp_path, ScriptedAnnotator(Mischief()), [abnormal, quiet])
    out = tmp_path / "out"
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 2  # frame 15 of both videos, each after 2 attempts
    assert {(f["video_id"], f["task"], f["frame"], f["attempts"], f["error_kind"]) for f in failures} == {
        ("street", "frame_objects", 15, 2, "malformed"), ("quiet", "frame_objects", 15, 2, "malformed")}
    assert failures[0]["raw"] == "Sorry, I cannot help with that."
    assert summary.failed_queries == 2
    # the intruder fails appearance → motion in phase A (target dropped from the narrative) and phase B (record
    # dropped); the walker is kept
    assert summary.targets == {"anomaly": {"inconsistent_motion": 1}, "object": {"inconsistent_motion": 1, "ok": 2}}
    assert summary.dropped_records == {"phase_a": {}, "phase_b": {"inconsistent_motion": 1}}
    a, b = load_dialogues(out / "phase_a.jsonl"), load_dialogues(out / "phase_b.jsonl")
    assert a[0].answers("target") == ["A person (blue clothing)."]
    assert [r.video_id for r in b] == ["quiet"]

    _, blind = build(tmp_path, ScriptedAnnotator(Mischief(honest_motion=True, blind=True)), [abnormal], name="blind")
    assert blind.dropped_records["phase_b"] == {"low_support": 1}
    assert blind.targets["anomaly"] == {"low_support": 1}


def test_references_and_focus_without_pixel_masks(tmp_path):
    abnormal, _ = hand_made_videos(tmp_path)
    # the same video with GT tracks but no pixel masks: the refinement keeps the GT box sharp instead
    tracks = abnormal.gt_tracks()
    frames = abnormal.read_frames(range(T))
    boxes_only = ArrayVideoSource("street", frames, FPS, abnormal.path, labels=abnormal.frame_labels(), tracks=tracks,
                                  objects=abnormal.object_tracks())
    truth = GroundTruthResponder("person", "intruder")
    focused = {}

    def respond(request):
        if request.task == "frame_objects" and request.meta["focused"]:
            focused[request.meta["frame"]] = request.images[0]
        if request.task == "verify_appearance" and request.meta["abnormal"]:
            return '{"category": "intruder", "attributes": ["red jacket"]}'  # other attributes, same category
        return truth(request)

    _, summary = build(tmp_path, ScriptedAnnotator(respond), [boxes_only])
    assert summary.records == {"phase_a": 1, "phase_b": 1}
    (record,) = load_dialogues(tmp_path / "out" / "phase_b.jsonl")
    assert record.answers("target") == ["An intruder (red clothing)."]
    assert record.references["target"] == ["An intruder (red jacket)."]
    assert record.references_for("target") == ["An intruder (red clothing).", "An intruder (red jacket)."]
    assert sorted(focused) == [8, 14, 19, 25]
    for frame, image in focused.items():
        (row,) = tracks[0][tracks[0][:, 0] == frame]
        x1, y1, x2, y2 = row[1:]
        np.testing.assert_array_equal(image[y1: y2 + 1, x1: x2 + 1], frames[frame][y1: y2 + 1, x1: x2 + 1])
        assert not np.array_equal(image, frames[frame])  # the rest is blurred


def test_windows_render_again_without_new_questions(tmp_path):
    abnormal, _ = hand_made_videos(tmp_path)
    build(tmp_path, ground_truth(), [abnormal])
    again = ground_truth()
    _, summary = build(tmp_path, again, [abnormal], window=10)
    assert again.calls == 0 and summary.skipped == 1  # windows change rendering only
    a = load_dialogues(tmp_path / "out" / "phase_a.jsonl")
    assert [(r.frame_range, r.label) for r in a] == [((0, 9), 1), ((10, 19), 1), ((20, 29), 1)]
    b = load_dialogues(tmp_path / "out" / "phase_b.jsonl")
    # anchors and trajectories count frames from the window's first frame
    assert b[0].answers("anchor") == ["From frame 8 to frame 9 (0.8 s–0.9 s)."]
    assert b[1].answers("anchor") == ["From frame 0 to frame 9 (0.0 s–0.9 s)."]
    assert b[2].answers("anchor") == ["From frame 0 to frame 5 (0.0 s–0.5 s)."]
    assert "disappears in the middle-right at frame 5" in b[2].answers("trajectory")[0]
    assert b[1].answers("trajectory")[0].startswith("The intruder starts in the top-right")


def test_concurrent_questions_give_the_same_dataset(tmp_path):
    abnormal, quiet = hand_made_videos(tmp_path)
    build(tmp_path, ground_truth(), [abnormal, quiet], name="serial")
    parallel = ground_truth()
    parallel.max_concurrency = 4  # questions of one step run in a thread pool, answers keep their order
    build(tmp_path, parallel, [abnormal, quiet], name="parallel")
    for name in ("phase_a.jsonl", "phase_b.jsonl"):
        assert (tmp_path / "parallel" / name).read_text() == (tmp_path / "serial" / name).read_text()


def test_changed_settings_need_restart(tmp_path):
    abnormal, _ = hand_made_videos(tmp_path)
    build(tmp_path, ground_truth(), [abnormal])
    with pytest.raises(BuildError, match="--restart"):
        build(tmp_path, ground_truth(), [abnormal], sample_fps=5.0)
    builder = DatasetBuilder(ground_truth(), tmp_path / "out", BuilderSettings(sample_fps=5.0, **DENSE_RECORDS),
                             restart=True, progress=False)
    summary = builder.run([abnormal])
    assert summary.done == 1 and summary.skipped == 0
    assert summary.queries_by_task["frame_objects"]["asked"] > 7 + 4  # 2 frames per step at 5 fps


def test_too_many_consecutive_failures_stop_the_run(tmp_path):
    abnormal, quiet = hand_made_videos(tmp_path)
    with pytest.raises(BuildError, match="3 annotator questions failed in a row"):
        build(tmp_path, ScriptedAnnotator(lambda r: "garbage"), [abnormal, quiet], max_consecutive_failures=3)
    assert not list((tmp_path / "out" / "work").glob("*/*.json"))


def test_a_broken_video_is_recorded_and_skipped(tmp_path):
    abnormal, quiet = hand_made_videos(tmp_path)

    class Broken(ArrayVideoSource):
        def read_frames(self, indices):
            raise OSError("disk on fire")

    broken = Broken("broken", np.zeros((5, 8, 8, 3), np.uint8), FPS, tmp_path / "b.mp4")
    _, summary = build(tmp_path, ground_truth(), [broken, quiet])
    assert summary.failed_videos == [{"video_id": "broken", "dataset": "custom", "error": "OSError: disk on fire"}]
    assert summary.records == {"phase_a": 1, "phase_b": 1}


def test_resume_after_interruption_gives_the_same_output(tmp_path, synthetic_ubnormal):
    data = synthetic_ubnormal
    videos = ubnormal_videos(data.root, data.split_dir, "training")
    reference = ground_truth()
    _, ref_summary = build(tmp_path, reference, videos, name="reference")
    per_video = {}
    for path in (tmp_path / "reference" / "work" / "ubnormal").glob("*.json"):
        work = json.loads(path.read_text())
        per_video[work["video_id"]] = sum(v for k, v in work["queries"].items() if k.endswith(":asked"))
    assert sum(per_video.values()) == reference.calls

    stop_after = per_video[videos[0].video_id] + 3  # in the middle of the second video
    truth = GroundTruthResponder("person", "intruder")
    calls = {"n": 0}

    def interrupting(request):
        calls["n"] += 1
        if calls["n"] > stop_after:
            raise KeyboardInterrupt
        return truth(request)

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, ScriptedAnnotator(interrupting), videos, name="run")
    run = tmp_path / "run"
    assert [p.stem for p in (run / "work" / "ubnormal").glob("*.json")] == [videos[0].video_id]
    assert not (run / "phase_a.jsonl").exists()  # no half-written outputs

    resumed = ground_truth()
    _, summary = build(tmp_path, resumed, videos, name="run")
    assert resumed.calls == reference.calls - per_video[videos[0].video_id]  # finished video not asked again
    assert (summary.skipped, summary.done) == (1, len(videos) - 1)
    for name in ("phase_a.jsonl", "phase_b.jsonl", "failures.jsonl"):
        assert (run / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()
    assert (summary.records, summary.queries, summary.targets) == (ref_summary.records, ref_summary.queries,
                                                                  ref_summary.targets)


def test_synthetic_ubnormal_answers_match_the_ground_truth(tmp_path, synthetic_ubnormal):
    data = synthetic_ubnormal
    videos = ubnormal_videos(data.root, data.split_dir, "validation")
    _, summary = build(tmp_path, ground_truth(), videos, sample_fps=10.0)
    a = load_dialogues(tmp_path / "out" / "phase_a.jsonl")
    b = load_dialogues(tmp_path / "out" / "phase_b.jsonl")
    assert summary.failed_queries == 0 and not summary.failed_videos
    assert sorted(r.video_id for r in b) == sorted(data.split("validation"))
    for record in a + b:
        truth = data.videos[record.video_id]
        assert record.label == int(truth.abnormal)
        assert record.answers("yesno") == ["Yes." if truth.abnormal else "No."]
        assert record.resolve_video(tmp_path / "out").resolve() == truth.path.resolve()
        if truth.abnormal:
            expected = describe_anchors(label_ranges(truth.frame_labels), data.fps)
            assert record.answers("anchor") == [expected]
    for record in b:
        truth = data.videos[record.video_id]
        if not truth.abnormal:
            continue
        # phase B trajectories are the GT tracks' own geometry, in order of onset
        facts = [trajectory_facts(t[:, 0], inclusive_to_continuous(t[:, 1:]), data.size, data.fps,
                                  (0, truth.num_frames - 1)) for t in truth.tracks]
        facts.sort(key=lambda f: f.first_frame)
        (answer,) = record.answers("trajectory")
        for f in facts:
            assert describe_trajectory(f, "x")[2:] in answer  # the sentence minus its subject
        assert len(record.meta["targets"]) == len(truth.tracks)


def test_output_loads_in_the_dialogue_dataset(tmp_path, synthetic_ubnormal):
    from tvau_lightning.data.dialogue import DialogueDataset

    data = synthetic_ubnormal
    build(tmp_path, ground_truth(), ubnormal_videos(data.root, data.split_dir, "test"), window=24)
    for name in ("phase_a.jsonl", "phase_b.jsonl"):
        dataset = DialogueDataset(tmp_path / "out" / name, num_frames=4, frame_size=(32, 48))
        assert len(dataset) > 0
        sample = dataset[len(dataset) - 1]
        assert tuple(sample.frames.shape) == (4, 32, 48, 3)
        start, end = sample.record.frame_range
        assert start <= int(sample.frame_index.min()) and int(sample.frame_index.max()) <= end


def test_backbone_annotator_garbage_never_crashes_the_run(tmp_path):
    from tvau_lightning.backbones.tiny import build_tiny_backbone

    abnormal, quiet = hand_made_videos(tmp_path)
    annotator = BackboneAnnotator(build_tiny_backbone("qwen2_5_vl"), image_size=(32, 48), max_new_tokens=8)
    _, summary = build(tmp_path, annotator, [quiet, abnormal], max_frames_per_video=2, refine_min_frames=1,
                       refine_max_frames=1, retry=RetryPolicy(1, 0.0), max_consecutive_failures=None)
    assert summary.queries == 2 + 2 + 1
    # a random model writes no JSON: every question fails and is recorded; nothing is verified
    assert summary.queries == summary.failed_queries > 0
    assert summary.dropped_records == {"phase_a": {"no_targets": 2}, "phase_b": {"unanswered": 1}}
    (record,) = load_dialogues(tmp_path / "out" / "phase_b.jsonl")  # the normal clip's exact dialogue remains
    assert record.video_id == "quiet" and record.answers("yesno") == ["No."]
    lines = (tmp_path / "out" / "failures.jsonl").read_text().splitlines()
    assert len(lines) == summary.failed_queries
