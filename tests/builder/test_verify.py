"""The mutual-verification consistency rule."""

import pytest

from tvau_lightning.builder.schema import AppearanceReply, MotionReply
from tvau_lightning.builder.verify import (
    Verification,
    appearance_consistent,
    attribute_overlap,
    motion_consistent,
)


@pytest.mark.parametrize(
    ("reply", "geometry", "tolerance", "expected"),
    [("right", "right", 1, True), ("up-right", "right", 1, True), ("up", "right", 1, False), ("up", "right", 2, True),
     ("left", "right", 1, False), ("down-right", "right", 0, False), ("stationary", None, 1, True),
     ("stationary", "right", 1, False), ("left", None, 1, False), ("down-left", "down", 1, True)],
)
def test_motion_rule(reply, geometry, tolerance, expected):
    assert motion_consistent(MotionReply(reply), geometry, tolerance) is expected


def test_appearance_rule_and_overlap():
    assert appearance_consistent(AppearanceReply("man", ["red coat"]), "person")
    assert appearance_consistent(AppearanceReply("skateboarder", []), "person")
    assert not appearance_consistent(AppearanceReply("car", ["white"]), "person")
    assert attribute_overlap(["red coat"], ["red jacket", "hat"]) == pytest.approx(1 / 4)
    assert attribute_overlap([], []) == 1.0


def test_verification_outcome():
    ok = Verification(motion=True, appearance=True, motion_applicable=True)
    assert ok.passed and ok.reason is None
    assert Verification(motion=False, appearance=True, motion_applicable=True).reason == "inconsistent_motion"
    assert Verification(motion=True, appearance=False, motion_applicable=True).reason == "inconsistent_appearance"
    assert Verification(motion=None, appearance=True, motion_applicable=True).reason == "unverified"
    # a one-frame target has no motion check
    single = Verification(motion=None, appearance=True, motion_applicable=False)
    assert single.passed
    assert Verification.from_json(ok.to_json()) == ok
