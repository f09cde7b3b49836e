"""Mutual verification of appearance and motion (paper §3.3 step 3) — the deterministic consistency rule.

Two questions close the loop between what the annotator said a target looks like and where the geometry
says it went:

* appearance → motion: given the target's description and frames in time order, the annotator names the
  direction it moves. **Consistent** when that direction is within ``direction_tolerance`` 45° steps of the
  geometry's main direction (default 1: the same or a neighbouring 8-way direction), or when both say
  ``stationary``. Speed is recorded but not judged (annotators name speed too loosely to filter on).
* motion → appearance: given crops at the trajectory's boxes, the annotator names the object.
  **Consistent** when the category agrees with the timeline's (same or compatible group,
  :func:`~tvau_lightning.builder.schema.categories_agree`). Attribute overlap (Jaccard) is recorded.

A target passes when every check that applies is consistent. A check whose question failed after all retries
is ``None`` and the target fails with reason ``unverified`` (the dataset keeps only verified targets).
A motion check does not apply to a target seen on fewer than two frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvau_lightning.builder.geometry import direction_distance
from tvau_lightning.builder.schema import AppearanceReply, MotionReply, categories_agree


def motion_consistent(reply: MotionReply, geometry_direction: str | None, tolerance: int = 1) -> bool:
    """Whether the annotator's direction agrees with the geometry's (``None`` = stationary)."""
    if geometry_direction is None or reply.direction == "stationary":
        return geometry_direction is None and reply.direction == "stationary"
    return direction_distance(reply.direction, geometry_direction) <= tolerance


def appearance_consistent(reply: AppearanceReply, category: str) -> bool:
    """Whether the annotator's category for the trajectory's crops agrees with the timeline's category."""
    return categories_agree(reply.category, category)


def attribute_overlap(a: list[str], b: list[str]) -> float:
    """Jaccard overlap of two attribute lists (word sets), 1.0 when both are empty."""
    wa = {w for phrase in a for w in phrase.lower().split()}
    wb = {w for phrase in b for w in phrase.lower().split()}
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


@dataclass
class Verification:
    """The outcome of both checks for one target (``None`` = not applicable or the question failed)."""

    motion: bool | None
    appearance: bool | None
    motion_applicable: bool
    reply_direction: str | None = None
    reply_speed: str | None = None
    geometry_direction: str | None = None
    reply_category: str | None = None
    reply_attributes: list[str] | None = None
    attribute_overlap: float | None = None

    @property
    def passed(self) -> bool:
        checks = [self.appearance] + ([self.motion] if self.motion_applicable else [])
        return all(c is True for c in checks)

    @property
    def reason(self) -> str | None:
        """``None`` when passed; else ``inconsistent_motion``, ``inconsistent_appearance`` or ``unverified``."""
        if self.passed:
            return None
        if self.motion_applicable and self.motion is False:
            return "inconsistent_motion"
        if self.appearance is False:
            return "inconsistent_appearance"
        return "unverified"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Verification:
        return cls(**obj)
