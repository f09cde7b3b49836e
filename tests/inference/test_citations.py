"""Time references of stage-2 answers mapped to source frames (inference.citations): hand-worked cases, the
dataset builder's own phrasings in both time references, and what is left alone."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.builder.geometry import describe_anchors, describe_trajectory, trajectory_facts
from tvau_lightning.inference.citations import (
    annotate_citations,
    citations_span,
    resolve_citations,
)

SHOWN = [0, 30, 60, 90]  # the model saw source frames 0, 30, 60, 90 of a 30 fps video (1 fps)


def _frames(text, frame_index=SHOWN, fps=30.0):
    return [c.source_frames for c in resolve_citations(text, frame_index, fps)]


def test_hand_worked_frames_and_seconds():
    (at3,) = resolve_citations("It enters at frame 3.", SHOWN, 30.0)
    assert at3.source_frames == (90, 90) and at3.unit == "frame" and at3.cited == (3, 3) and not at3.out_of_range
    assert at3.text == "frame 3"
    assert _frames("from frame 1 to frame 2") == [(30, 60)]
    (half,) = resolve_citations("The anomaly starts at 2.5 s.", SHOWN, 30.0)
    assert half.source_frames == (75, 75) and half.unit == "seconds"  # 0 + 2.5 * 30
    assert _frames("at 2.5 seconds", [100, 130, 160, 190]) == [(175, 175)]  # relative to the clip's first frame


def test_out_of_range_frames_are_clamped_and_flagged():
    inside, outside = resolve_citations("seen at frame 2 and again at frame 7", SHOWN, 30.0)
    assert inside.source_frames == (60, 60) and not inside.out_of_range
    assert outside.source_frames == (90, 90) and outside.out_of_range  # only 4 frames were shown
    (late,) = resolve_citations("at 9.0 s", SHOWN, 30.0)  # 270: far past the last frame shown (90)
    assert late.out_of_range and late.source_frames == (90, 90)
    (edge,) = resolve_citations("at 3.2 s", SHOWN, 30.0)  # 96: within half a step (15 frames) of frame 90
    assert not edge.out_of_range and edge.source_frames == (90, 90)
    (span,) = resolve_citations("from frame 2 to frame 9", SHOWN, 30.0)
    assert span.source_frames == (60, 90) and span.out_of_range


@pytest.mark.parametrize("time_reference", ["frames", "seconds"])
def test_the_builders_phrasings_name_the_sampled_frames(time_reference):
    """Text written by builder.geometry for a record sampled at 2 fps from a 25 fps video starting at source frame
    100 (frames 100, 112, 125, …: round(k * 12.5)) resolves to the source frames of the cited sampled frames, in
    either time reference."""
    record_fps, source_fps = 2.0, 25.0
    shown = [100 + round(k * source_fps / record_fps) for k in range(10)]
    # a box that enters at the left edge on sampled frame 2 and leaves through the right edge on sampled frame 6
    frames = np.arange(2, 7)
    boxes = np.array([[0 + 25 * i, 40, 20 + 25 * i, 60] for i in range(5)], dtype=float)
    boxes[-1, 2] = 120.0
    facts = trajectory_facts(frames, boxes, (90, 120), record_fps, clip_range=(0, 9))
    sentence = describe_trajectory(facts, "The person", time_reference=time_reference, fps=record_fps)
    assert ("at frame 2" in sentence) if time_reference == "frames" else ("at 1.0 s" in sentence), sentence
    assert _frames(sentence, shown, source_fps) == [(shown[2],) * 2, (shown[6],) * 2]

    anchors = describe_anchors([(1, 3), (5, 5)], record_fps, time_reference=time_reference)
    citations = resolve_citations(anchors, shown, source_fps)
    assert [c.source_frames for c in citations] == [(shown[1], shown[3]), (shown[5], shown[5])], anchors
    assert not any(c.out_of_range for c in citations)
    if time_reference == "frames":  # the seconds in parentheses belong to their frame citation
        assert [c.text for c in citations] == ["From frame 1 to frame 3 (0.5 s–1.5 s)", "frame 5 (2.5 s)"]
    assert citations_span(citations) == [shown[1], shown[5]]


def test_variants_and_what_is_left_alone():
    assert _frames("frames 1–2, then between frames 2 and 3") == [(30, 60), (60, 90)]
    assert _frames("from 1.0 to 2.0 s") == [(30, 60)]
    assert _frames("It lasts 2 s, for about 3 seconds; 2 people; frame 1.5; version 3.0") == []
    assert resolve_citations("A person in a red coat.", SHOWN, 30.0) == []
    assert citations_span([]) is None
    with pytest.raises(ValueError, match="positive fps"):
        resolve_citations("frame 1", SHOWN, 0.0)


def test_annotation_for_chat():
    text = "Enters at frame 3, leaves at frame 9. From 1.0 s to 2.0 s."
    annotated = annotate_citations(text, resolve_citations(text, SHOWN, 30.0), 30.0, shown=4)
    assert annotated == ("Enters at frame 3 [source frame 90, 3.0 s], leaves at frame 9 [not shown (4 frames): "
                         "nearest source frame 90, 3.0 s]. From 1.0 s to 2.0 s [source frames 30–60, 1.0–2.0 s].")
    assert annotate_citations("No.", [], 30.0) == "No."


def test_citation_json():
    (c,) = resolve_citations("from frame 1 to frame 2", SHOWN, 30.0)
    assert c.to_json(30.0) == {"text": "from frame 1 to frame 2", "span": [0, 23], "unit": "frame", "cited": [1, 2],
                               "source_frames": [30, 60], "source_seconds": [1.0, 2.0], "out_of_range": False}
    (s,) = resolve_citations("at 2.5 s", SHOWN, 30.0)
    assert s.to_json()["cited"] == [2.5, 2.5] and "source_seconds" not in s.to_json()
