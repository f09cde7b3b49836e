"""Trajectory facts and phrases against hand-made tracks (expected values worked out by hand)."""

import math

import numpy as np
import pytest

from tvau_lightning.builder.geometry import (
    DIRECTION_PHRASES,
    DIRECTIONS,
    GeometrySettings,
    TurnPoint,
    describe_anchor,
    describe_anchors,
    describe_trajectory,
    direction_distance,
    grid_cell,
    inclusive_to_continuous,
    label_ranges,
    simplify_path,
    touched_edge,
    trajectory_facts,
)
from tvau_lightning.metrics.boxes import box_iou_continuous

SIZE = (120, 180)  # (H, W)
DIAG = math.hypot(180, 120)


def boxes_at(points, half=5.0):
    """Square boxes of side 2*half centred on (x, y) points."""
    p = np.asarray(points, dtype=float)
    return np.c_[p[:, 0] - half, p[:, 1] - half, p[:, 0] + half, p[:, 1] + half]


def line(start, end, n):
    return np.linspace(start, end, n)


@pytest.mark.parametrize(
    ("point", "cell"),
    [((10, 10), "top-left"), ((90, 10), "top-center"), ((170, 10), "top-right"), ((10, 60), "middle-left"),
     ((90, 60), "center"), ((170, 60), "middle-right"), ((10, 110), "bottom-left"), ((90, 110), "bottom-center"),
     ((179.9, 119.9), "bottom-right"), ((60.0, 40.0), "center"), ((59.9, 39.9), "top-left"), ((180, 120), "bottom-right")],
)
def test_grid_cells(point, cell):
    assert grid_cell(*point, SIZE) == cell


@pytest.mark.parametrize("k", range(8))
def test_each_direction(k):
    # 40 px along the k-th 8-way direction (counter-clockwise from right, y up), 20 frames at 10 fps
    angle = math.radians(45 * k)
    end = (90 + 40 * math.cos(angle), 60 - 40 * math.sin(angle))
    facts = trajectory_facts(np.arange(20), boxes_at(line((90, 60), end, 20)), SIZE, fps=10.0)
    assert facts.main_direction == DIRECTIONS[k]
    assert facts.turns == []
    assert facts.speed == pytest.approx(40 / DIAG / 1.9)  # straight path: length 40 px over 19 frames
    text = describe_trajectory(facts, "the person")
    assert f"moves {DIRECTION_PHRASES[DIRECTIONS[k]]} at a moderate speed" in text


@pytest.mark.parametrize(("distance", "expected"), [(15, "slow"), (40, "moderate"), (100, "fast")])
def test_speed_classes(distance, expected):
    # 21 frames at 10 fps = 2 s; speed = distance / diagonal / 2 s: 0.035 slow, 0.092 moderate, 0.231 fast
    pts = line((40, 60), (40 + distance, 60), 21)
    facts = trajectory_facts(np.arange(21), boxes_at(pts), SIZE, fps=10.0)
    assert facts.speed == pytest.approx(distance / DIAG / 2.0)
    assert facts.speed_class == expected
    assert facts.main_direction == "right"


def test_tiny_motion_is_stationary_and_jitter_makes_no_turns():
    rng = np.random.default_rng(0)
    still = boxes_at(np.c_[np.full(30, 90.0), np.full(30, 60.0)] + rng.uniform(-1, 1, (30, 2)))
    facts = trajectory_facts(np.arange(30), still, SIZE, fps=10.0)
    assert facts.stationary and facts.speed_class == "slow"
    assert describe_trajectory(facts, "the car") == "The car stays in place in the center throughout."
    noisy_line = boxes_at(np.c_[np.linspace(20, 160, 40), np.full(40, 60.0)] + rng.uniform(-1, 1, (40, 2)))
    facts = trajectory_facts(np.arange(40), noisy_line, SIZE, fps=10.0)
    assert facts.main_direction == "right" and facts.turns == []


def test_erratic_motion_that_goes_nowhere():
    # back and forth 60 px five times in 3 s: long path, no net displacement
    xs = np.concatenate([line(60, 120, 6), line(120, 60, 6)[1:]] * 3)
    pts = np.c_[xs, np.full(len(xs), 60.0)]
    facts = trajectory_facts(np.arange(len(xs)), boxes_at(pts), SIZE, fps=10.0)
    assert facts.stationary and facts.speed_class == "fast"
    assert "moves around quickly within a small area" in describe_trajectory(facts, "the person")


def test_l_shaped_track_turns_once():
    # right 60 px (frames 0..19), then down 60 px (frames 20..39): net down-right, one turn downward
    pts = np.r_[np.c_[line(30, 90, 20), np.full(20, 30.0)], np.c_[np.full(20, 90.0), line(33, 90, 20)]]
    facts = trajectory_facts(np.arange(40), boxes_at(pts), SIZE, fps=10.0)
    assert facts.main_direction == "down-right"
    assert facts.initial_direction == "right"
    assert len(facts.turns) == 1 and facts.turns[0].direction == "down"
    assert 18 <= facts.turns[0].frame <= 21
    # path ≈ 60 + 57 px over 3.9 s = 0.139 diagonals/s (the smoothed corner is slightly shorter) → moderate
    assert facts.speed == pytest.approx(117 / DIAG / 3.9, rel=0.03) and facts.speed_class == "moderate"
    text = describe_trajectory(facts, "the cyclist", frame_offset=0)
    assert f"moves to the right at a moderate speed, turns downward at frame {facts.turns[0].frame} (overall down and to the right)" in text


def test_reversal_and_zigzag():
    # right 90 px then back left 45 px: net right, one turn to the left
    pts = np.r_[np.c_[line(30, 120, 30), np.full(30, 60.0)], np.c_[line(118, 75, 15), np.full(15, 60.0)]]
    facts = trajectory_facts(np.arange(45), boxes_at(pts), SIZE, fps=10.0)
    assert facts.main_direction == "right"
    assert [t.direction for t in facts.turns] == ["left"]
    # a zigzag of five legs up-right / down-right: four turns > max_listed_turns (3) → counted, not listed
    legs = [((20, 90), (50, 30)), ((50, 30), (80, 90)), ((80, 90), (110, 30)), ((110, 30), (140, 90)),
            ((140, 90), (170, 30))]
    pts = np.concatenate([line(a, b, 10)[(0 if i == 0 else 1):] for i, (a, b) in enumerate(legs)])
    facts = trajectory_facts(np.arange(len(pts)), boxes_at(pts), SIZE, fps=10.0)
    assert len(facts.turns) == 4
    assert [t.direction for t in facts.turns] == ["down-right", "up-right", "down-right", "up-right"]
    assert "changing direction 4 times" in describe_trajectory(facts, "the person")
    listed = describe_trajectory(facts, "the person", settings=GeometrySettings(max_listed_turns=4))
    assert listed.count("turns ") == 4


def test_entry_and_exit_at_borders_and_inside():
    clip = (0, 40)
    # enters touching the left border at frame 5, leaves touching the right border at frame 30
    pts = np.c_[line(5, 175, 26), np.full(26, 60.0)]
    facts = trajectory_facts(np.arange(5, 31), boxes_at(pts), SIZE, fps=10.0, clip_range=clip)
    assert (facts.entry, facts.entry_edge, facts.exit, facts.exit_edge) == ("enters", "left", "leaves", "right")
    assert (facts.entry_cell, facts.exit_cell) == ("middle-left", "middle-right")
    text = describe_trajectory(facts, "the person", frame_offset=0)
    assert text == ("The person enters from the left edge at frame 5, in the middle-left, moves to the right quickly, "
                    "and leaves through the right edge at frame 30.")
    # appears and disappears inside the frame
    pts = np.c_[line(50, 130, 26), np.full(26, 60.0)]
    facts = trajectory_facts(np.arange(5, 31), boxes_at(pts), SIZE, fps=10.0, clip_range=clip)
    assert (facts.entry, facts.exit) == ("appears", "disappears")
    # a box at the top border entering downward
    pts = np.c_[np.full(20, 90.0), line(5, 100, 20)]
    facts = trajectory_facts(np.arange(10, 30), boxes_at(pts), SIZE, fps=10.0, clip_range=clip)
    assert (facts.entry, facts.entry_edge, facts.main_direction) == ("enters", "top", "down")
    # present on the clip's first/last frames → starts/ends, whatever the border; tolerance covers sampling gaps
    pts = np.c_[line(5, 175, 41), np.full(41, 60.0)]
    facts = trajectory_facts(np.arange(41), boxes_at(pts), SIZE, fps=10.0, clip_range=clip)
    assert (facts.entry, facts.exit) == ("starts", "ends")
    facts = trajectory_facts([3, 10, 20, 37], boxes_at(pts[[3, 10, 20, 37]]), SIZE, fps=10.0, clip_range=clip,
                             frame_tolerance=3)
    assert (facts.entry, facts.exit) == ("starts", "ends")


def test_one_row_track_and_clip_restriction():
    facts = trajectory_facts([17], boxes_at([(90, 60)]), SIZE, fps=30.0, clip_range=(10, 40))
    assert facts.num_observations == 1 and facts.stationary and facts.speed == 0.0
    assert describe_trajectory(facts, "the dog", frame_offset=10) == "The dog is seen only at frame 7, in the center."
    # a track outside the clip gives no facts; inside, only the clip's frames count
    pts = boxes_at(np.c_[line(20, 160, 30), np.full(30, 60.0)])
    assert trajectory_facts(np.arange(30), pts, SIZE, fps=10.0, clip_range=(40, 50)) is None
    facts = trajectory_facts(np.arange(30), pts, SIZE, fps=10.0, clip_range=(10, 19))
    assert (facts.first_frame, facts.last_frame, facts.num_observations) == (10, 19, 10)


def test_inputs_in_any_order_and_duplicates():
    pts = boxes_at(np.c_[line(20, 160, 10), np.full(10, 60.0)])
    order = np.array([3, 0, 9, 1, 2, 8, 4, 7, 6, 5])
    a = trajectory_facts(np.arange(10), pts, SIZE, fps=10.0)
    b = trajectory_facts(order, pts[order], SIZE, fps=10.0)
    assert a == b
    with pytest.raises(ValueError, match="frames but"):
        trajectory_facts([0, 1], pts, SIZE, fps=10.0)


def test_helpers():
    assert direction_distance("right", "up-right") == 1
    assert direction_distance("right", "left") == 4
    assert direction_distance("down-right", "right") == 1
    assert direction_distance("up-left", "down-right") == 4
    assert touched_edge(np.array([0.5, 50, 20, 70]), SIZE, 0.02) == "left"
    assert touched_edge(np.array([50, 50, 70, 70]), SIZE, 0.02) is None
    assert touched_edge(np.array([170, 0, 180, 5]), SIZE, 0.02) == "right"  # corner: right (gap 0) before top (gap 0)
    np.testing.assert_allclose(inclusive_to_continuous(np.array([[1, 2, 3, 4]])), [[1, 2, 4, 5]])
    np.testing.assert_allclose(box_iou_continuous(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])),
                               [[50 / 150, 0.0]])
    assert simplify_path(np.array([[0, 0], [1, 0.01], [2, 0], [2, 5]]), 0.1) == [0, 2, 3]
    assert TurnPoint(3, "up") == TurnPoint(3, "up")


def test_anchors_and_label_ranges():
    assert describe_anchor(12, 40, 30.0) == "from frame 12 to frame 40 (0.4 s–1.3 s)"
    assert describe_anchor(12, 12, 30.0) == "at frame 12 (0.4 s)"
    assert describe_anchors([(3, 10), (20, 30)], 10.0) == \
        "From frame 3 to frame 10 (0.3 s–1.0 s) and from frame 20 to frame 30 (2.0 s–3.0 s)."
    assert describe_anchors([(15, 24)], 10.0, frame_offset=10) == "From frame 5 to frame 14 (0.5 s–1.4 s)."
    assert describe_anchors([(1, 1), (3, 4), (6, 9)], 1.0) == \
        "At frame 1 (1.0 s), from frame 3 to frame 4 (3.0 s–4.0 s) and from frame 6 to frame 9 (6.0 s–9.0 s)."
    assert label_ranges([0, 1, 1, 0, 1]) == [(1, 2), (4, 4)]
    assert label_ranges([1, 1, 1], offset=5) == [(5, 7)]
    assert label_ranges(np.zeros(4)) == []
    with pytest.raises(ValueError):
        describe_anchors([], 10.0)


def test_whole_sentence_for_a_track_present_throughout():
    # 140 px right in 29 frames at 30 fps: 140 / 216.3 / 0.967 s = 0.67 diagonals/s → fast
    pts = boxes_at(np.c_[line(20, 160, 30), np.full(30, 60.0)])
    facts = trajectory_facts(np.arange(30), pts, SIZE, fps=30.0, clip_range=(0, 29))
    assert describe_trajectory(facts, "the person") == \
        "The person starts in the middle-left, moves to the right quickly, and ends in the middle-right."
