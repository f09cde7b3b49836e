"""Identity association into timelines, anchoring to dataset tracks, appearance aggregation."""

import numpy as np
import pytest

from tvau_lightning.builder.schema import DetectedObject
from tvau_lightning.builder.timelines import (
    AssociationSettings,
    Observation,
    anchor_to_tracks,
    associate,
    best_match,
    mean_track_iou,
    summarize_appearance,
)

SIZE = (120, 180)


def det(box, category="person", attributes=("red coat",)):
    return DetectedObject(category, list(attributes), tuple(float(v) for v in box))


def test_two_walkers_keep_their_identity_in_any_reply_order():
    # A walks right along the top, B walks left along the bottom; the annotator lists them in varying order
    detections = []
    for k, frame in enumerate(range(0, 50, 5)):
        a = det((10 + 4 * k, 10, 30 + 4 * k, 40), attributes=["red coat"])
        b = det((150 - 4 * k, 70, 170 - 4 * k, 100), attributes=["blue jeans"])
        detections.append((frame, [a, b] if k % 2 else [b, a]))
    timelines = associate(detections, SIZE, fps=10.0)
    assert len(timelines) == 2
    for t in timelines:
        assert len(t.observations) == 10
        assert len({tuple(o.attributes) for o in t.observations}) == 1  # never swapped
    assert {t.observations[0].attributes[0] for t in timelines} == {"red coat", "blue jeans"}


def test_distance_fallback_links_a_fast_mover_and_categories_must_agree():
    # 25 px jumps of a 10 px box between frames 0.5 s apart: IoU 0, centre distance 0.116 diagonals <= 0.5 * 0.5
    fast = [(f, [det((10 + 25 * k, 50, 20 + 25 * k, 60))]) for k, f in enumerate(range(0, 30, 5))]
    assert len(associate(fast, SIZE, fps=10.0)) == 1
    # the same jumps with a speed limit of 0.1 diagonals/s (≤ 0.05 per step) break the chain
    assert len(associate(fast, SIZE, fps=10.0, settings=AssociationSettings(max_speed=0.1))) == 6
    # a car replacing a person at the same place is a new target
    swapped = [(0, [det((10, 10, 40, 40))]), (5, [det((10, 10, 40, 40), category="car")])]
    assert len(associate(swapped, SIZE, fps=10.0)) == 2
    # ... unless category agreement is off; synonyms agree anyway
    assert len(associate(swapped, SIZE, fps=10.0, settings=AssociationSettings(require_category_agreement=False))) == 1
    synonyms = [(0, [det((10, 10, 40, 40))]), (5, [det((11, 10, 41, 40), category="woman")])]
    assert len(associate(synonyms, SIZE, fps=10.0)) == 1


def test_gap_closes_a_timeline_and_area_ratio_blocks_far_links():
    # unseen for 3 s (> max_gap_seconds 2) → a new timeline even at the same place
    gap = [(0, [det((10, 10, 40, 40))]), (30, [det((10, 10, 40, 40))])]
    assert len(associate(gap, SIZE, fps=10.0)) == 2
    # no overlap, close centres, but 16× the area → not the same target
    grow = [(0, [det((50, 50, 60, 60))]), (5, [det((62, 40, 102, 80))])]
    assert len(associate(grow, SIZE, fps=10.0)) == 2


def test_crossing_targets_prefer_overlap_over_distance():
    # frame 5: two detections, one overlapping the timeline strongly, one nearer in centre but small overlap
    detections = [(0, [det((40, 40, 80, 80))]),
                  (5, [det((70, 40, 110, 80), attributes=["other"]), det((44, 40, 84, 80), attributes=["same"])])]
    timelines = associate(detections, SIZE, fps=10.0)
    first = next(t for t in timelines if t.first_frame == 0)
    assert first.observations[1].attributes == ["same"]


def test_summarize_appearance_majority_and_fraction():
    obs = [Observation(i, (0, 0, 1, 1), cat, attrs) for i, (cat, attrs) in enumerate([
        ("man", ["red coat", "backpack"]), ("person", ["red coat"]), ("man", ["red coat", "hat"]),
        ("car", ["white"]), ("man", ["backpack", "red coat"]),
    ])]
    category, attributes = summarize_appearance(obs, max_attributes=4, min_fraction=0.3)
    # person group: 4 of 5; wording "man" ×3; attributes over the 4 person observations: red coat 4, backpack 2, hat 1
    assert category == "man"
    assert attributes == ["red coat", "backpack"]
    assert summarize_appearance(obs, max_attributes=1)[1] == ["red coat"]
    # nothing reaches the fraction → the two most frequent, first seen first on ties
    rare = [Observation(i, (0, 0, 1, 1), "person", [f"a{i}"]) for i in range(5)]
    assert summarize_appearance(rare, min_fraction=0.5)[1] == ["a0", "a1"]
    with pytest.raises(ValueError):
        summarize_appearance([])


def test_anchor_to_tracks_by_mean_iou():
    detections = [(f, [det((10 + f, 10, 30 + f, 40)), det((120, 60, 150, 100))]) for f in range(0, 20, 5)]
    timelines = associate(detections, SIZE, fps=10.0)
    mover = next(i for i, t in enumerate(timelines) if t.boxes[0, 0] == 10)
    still = 1 - mover
    frames = np.arange(0, 20)
    tracks = {
        "object:3": np.c_[frames, 10 + frames, np.full(20, 10), 30 + frames, np.full(20, 40)],  # the mover, exact
        "object:9": np.c_[frames, np.full(20, 121), np.full(20, 61), np.full(20, 151), np.full(20, 101)],
        "object:5": np.c_[frames, np.full(20, 0), np.full(20, 0), np.full(20, 5), np.full(20, 5)],  # matches nothing
    }
    anchors = anchor_to_tracks(timelines, tracks, min_mean_iou=0.3)
    assert anchors == {mover: "object:3", still: "object:9"}
    assert mean_track_iou(timelines[mover], {int(r[0]): r[1:].astype(float) for r in tracks["object:3"]}) == 1.0
    # a track that covers only half of the timeline's frames scores half
    half = {int(r[0]): r[1:].astype(float) for r in tracks["object:3"] if r[0] < 10}
    assert mean_track_iou(timelines[mover], half) == pytest.approx(0.5)
    assert anchor_to_tracks(timelines, {}, 0.3) == {}


def test_best_match():
    objs = [det((0, 0, 10, 10)), det((50, 50, 70, 70)), det((52, 50, 72, 70))]
    assert best_match(objs, np.array([52.0, 50, 72, 70]), 0.3) is objs[2]
    assert best_match(objs, np.array([100.0, 100, 110, 110]), 0.3) is None
    assert best_match([], np.array([0.0, 0, 1, 1]), 0.3) is None
