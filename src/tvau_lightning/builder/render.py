"""Dialogue turns from targets and geometry (paper §3.3 step 4; SPEC §5 "Dialogue data").

The questions are fixed (:data:`QUESTIONS`) so that training and evaluation ask the same things in the
paper's order — judgment → target appearance → trajectory → temporal anchors. Which answers are exact and
which come from the annotator:

=============  ================================================  ==================================
kind           content                                           source
=============  ================================================  ==================================
``yesno``      ``Yes.`` / ``No.``                                the dataset's frame labels (exact)
``target``     category and attributes of the target(s)          the annotator LVLM (verified)
``trajectory`` grid cells, entry/exit, direction, speed, turns   geometry (exact when the target is
                                                                 anchored to a dataset track, else
                                                                 the annotator's boxes)
``anchor``     frame ranges with seconds                         the dataset's frame labels (exact)
``other``      "There is no abnormal target in this video."      fixed (normal clips, phase B)
=============  ================================================  ==================================

Phase A (all-object narratives): every clip → judgment, all main targets' appearance, all their
trajectories, and for abnormal clips the anomaly's frames. Phase B (anomaly-focused): abnormal clips →
judgment, the abnormal target(s)' appearance (from the anomaly-focused re-query), their exact GT trajectory,
the anomaly's frames; normal clips → the judgment "No." and "There is no abnormal target in this video."
(kind ``other``, so that per-field BLEU scores only real targets while the model still learns to say so).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tvau_lightning.builder.geometry import (
    GeometrySettings,
    TimeReference,
    TrajectoryFacts,
    describe_anchors,
    describe_trajectory,
)
from tvau_lightning.data.dialogue_schema import Turn

QUESTIONS: dict[str, str] = {
    "judgment": "Is there any anomaly in this video? Answer yes or no.",
    "targets": "Describe the people and objects in the video: what they are and what they look like.",
    "motions": "How does each of them move?",
    "abnormal_target": "Describe the abnormal target.",
    "abnormal_motion": "Describe its motion trajectory.",
    "abnormal_motions": "Describe their motion trajectories.",
    "when": "When does the anomaly happen?",
}
NO_ABNORMAL_TARGET = "There is no abnormal target in this video."
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


@dataclass
class TargetView:
    """A target as one clip's dialogue sees it.

    Attributes:
        category: the category phrase (``person``).
        attributes: appearance attributes, most reliable first.
        facts: the trajectory inside the clip.
        exact: whether ``facts`` come from a dataset track (else from the annotator's boxes).
        extra_descriptions: other acceptable appearance descriptions (references for BLEU).
    """

    category: str
    attributes: list[str]
    facts: TrajectoryFacts
    exact: bool
    extra_descriptions: list[str] = field(default_factory=list)

    def to_meta(self) -> dict[str, Any]:
        return {"category": self.category, "attributes": list(self.attributes), "exact_geometry": self.exact,
                "first_frame": self.facts.first_frame, "last_frame": self.facts.last_frame,
                "direction": self.facts.main_direction or "stationary", "speed": self.facts.speed_class}


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def describe_target(category: str, attributes: Sequence[str]) -> str:
    """``a person (red coat, black trousers)`` — lower case, no final period."""
    text = f"{_article(category)} {category}"
    return f"{text} ({', '.join(attributes)})" if attributes else text


def _count_word(n: int) -> str:
    return _NUMBERS[n] if n < len(_NUMBERS) else str(n)


def targets_answer(targets: Sequence[TargetView]) -> str:
    """``A person (red coat).`` or ``Two targets: a person (red coat); a car (white).``"""
    descriptions = [describe_target(t.category, t.attributes) for t in targets]
    if len(descriptions) == 1:
        return descriptions[0][:1].upper() + descriptions[0][1:] + "."
    return f"{_count_word(len(descriptions)).capitalize()} targets: " + "; ".join(descriptions) + "."


def subject_names(targets: Sequence[TargetView]) -> list[str]:
    """Short subjects for trajectory sentences: ``the person`` when its category is unique in the answer, else
    ``the person (red coat)`` when its first attribute tells it apart, else ``the second person``."""
    categories = Counter(t.category for t in targets)
    firsts = Counter((t.category, t.attributes[0] if t.attributes else None) for t in targets)
    seen: Counter[str] = Counter()
    names = []
    for t in targets:
        seen[t.category] += 1
        first = t.attributes[0] if t.attributes else None
        if categories[t.category] == 1:
            names.append(f"the {t.category}")
        elif first is not None and firsts[(t.category, first)] == 1:
            names.append(f"the {t.category} ({first})")
        else:
            k = seen[t.category] - 1
            ordinal = _ORDINALS[k] if k < len(_ORDINALS) else f"#{k + 1}"
            names.append(f"the {ordinal} {t.category}")
    return names


def trajectories_answer(targets: Sequence[TargetView], frame_offset: int,
                        settings: GeometrySettings | None = None, time_reference: TimeReference = "frames",
                        fps: float | None = None) -> str:
    """One trajectory sentence per target, in the order of ``targets``."""
    return " ".join(describe_trajectory(t.facts, name, frame_offset=frame_offset, settings=settings,
                                        time_reference=time_reference, fps=fps)
                    for t, name in zip(targets, subject_names(targets)))


def _judgment(label: int) -> list[Turn]:
    return [Turn("user", QUESTIONS["judgment"]), Turn("assistant", "Yes." if label else "No.", "yesno")]


def phase_a_turns(label: int, targets: Sequence[TargetView], anomaly_ranges: Sequence[tuple[int, int]],
                  fps: float, frame_offset: int, settings: GeometrySettings | None = None,
                  time_reference: TimeReference = "frames") -> list[Turn]:
    """All-object narrative: judgment → every target's appearance → every trajectory → (abnormal) anchors."""
    if not targets:
        raise ValueError("a phase A dialogue needs at least one target")
    turns = _judgment(label)
    turns += [Turn("user", QUESTIONS["targets"]), Turn("assistant", targets_answer(targets), "target")]
    turns += [Turn("user", QUESTIONS["motions"]),
              Turn("assistant", trajectories_answer(targets, frame_offset, settings, time_reference, fps), "trajectory")]
    if label:
        if not anomaly_ranges:
            raise ValueError("an abnormal clip needs the frame ranges of its anomaly")
        turns += [Turn("user", QUESTIONS["when"]),
                  Turn("assistant", describe_anchors(anomaly_ranges, fps, frame_offset, time_reference), "anchor")]
    return turns


def phase_b_turns(label: int, targets: Sequence[TargetView], anomaly_ranges: Sequence[tuple[int, int]],
                  fps: float, frame_offset: int, settings: GeometrySettings | None = None,
                  time_reference: TimeReference = "frames") -> list[Turn]:
    """Anomaly-focused: abnormal clips → judgment, abnormal target(s), their trajectory, anchors; normal clips →
    judgment and :data:`NO_ABNORMAL_TARGET` (kind ``other``)."""
    turns = _judgment(label)
    if not label:
        return turns + [Turn("user", QUESTIONS["abnormal_target"]), Turn("assistant", NO_ABNORMAL_TARGET, "other")]
    if not targets:
        raise ValueError("an abnormal phase B dialogue needs its abnormal target(s)")
    if not anomaly_ranges:
        raise ValueError("an abnormal clip needs the frame ranges of its anomaly")
    motion_question = QUESTIONS["abnormal_motion"] if len(targets) == 1 else QUESTIONS["abnormal_motions"]
    turns += [Turn("user", QUESTIONS["abnormal_target"]), Turn("assistant", targets_answer(targets), "target")]
    turns += [Turn("user", motion_question),
              Turn("assistant", trajectories_answer(targets, frame_offset, settings, time_reference, fps), "trajectory")]
    turns += [Turn("user", QUESTIONS["when"]),
              Turn("assistant", describe_anchors(anomaly_ranges, fps, frame_offset, time_reference), "anchor")]
    return turns


def target_references(targets: Sequence[TargetView]) -> list[str]:
    """Alternative target answers from the targets' extra descriptions (single-target clips only, where an
    alternative wording is unambiguous)."""
    if len(targets) != 1:
        return []
    refs = [d[:1].upper() + d[1:] + "." for d in targets[0].extra_descriptions]
    main = targets_answer(targets)
    return [r for r in dict.fromkeys(refs) if r != main]
