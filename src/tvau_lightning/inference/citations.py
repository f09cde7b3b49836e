"""Time references in a stage-2 answer, mapped to frames of the source video.

The dataset builder writes every time reference in a record's own sampled-frame index or in seconds from the
record's start (``builder.geometry.time_text`` / ``describe_anchor``; issue 13 item 2), so a model trained on it
answers "enters from the left edge at frame 3" meaning *the fourth frame it was shown*, not source frame 3. The
phrasings read here are the builder's:

* ``frame 3``, ``at frame 3 (0.1 s)``, ``from frame 12 to frame 40 (0.4 s–1.3 s)`` (frames mode; the seconds in
  parentheses repeat the frame numbers and belong to the same citation),
* ``3.0 s``, ``at 0.4 s``, ``from 0.4 s to 1.3 s`` (``time_reference: seconds``),

and a few natural variants a model may produce (``frames 3–5``, ``between frames 3 and 5``, ``2.5 seconds``,
``1.0–3.0 s``). A frame number ``N`` maps to ``frame_index[N]`` of the clip the model saw (a number past the
clip is clamped to its last frame and flagged ``out_of_range``: a model can hallucinate); seconds map to
``frame_index[0] + round(X · source_fps)`` (flagged when more than half a sampled-frame step outside the frames
shown). Durations ("for 2 s", "lasts 3 seconds") are not time points and are left alone, as is anything else
the patterns do not read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

_NUMBER = r"(?<![\w.])\d+(?:\.\d+)?"
_INT = r"\d+(?![.,]?\d)"
_UNIT = r"(?:s|sec|secs|second|seconds)\b"
_DASH = r"\s*(?:–|—|-|to|until|through)\s*"
# the seconds the builder adds in parentheses after frame numbers: "(0.4 s)" or "(0.4 s–1.3 s)"
_ECHO = rf"(?:\s*\(\s*{_NUMBER}\s*{_UNIT}(?:{_DASH}{_NUMBER}\s*{_UNIT})?\s*\))?"
_CITATION = re.compile(
    "|".join((
        rf"\bbetween\s+frames?\s+(?P<b1>{_INT})\s+and\s+(?:frames?\s+)?(?P<b2>{_INT}){_ECHO}",
        rf"(?:\bfrom\s+)?\bframes?\s+(?P<f1>{_INT})(?:{_DASH}(?:frames?\s+)?(?P<f2>{_INT}))?{_ECHO}",
        rf"\bbetween\s+(?P<t1>{_NUMBER})(?:\s*{_UNIT})?\s+and\s+(?P<t2>{_NUMBER})\s*{_UNIT}",
        rf"(?:\bfrom\s+)?(?P<s1>{_NUMBER})(?:\s*{_UNIT})?{_DASH}(?P<s2>{_NUMBER})\s*{_UNIT}",
        rf"(?P<s0>{_NUMBER})\s*{_UNIT}",
    )),
    re.IGNORECASE,
)
_GROUPS = (("b1", "b2"), ("f1", "f2"), ("t1", "t2"), ("s1", "s2"), ("s0", ""))
# words before a number of seconds that make it a duration, not a moment ("for 2 s", "lasts about 3 seconds")
_DURATION_BEFORE = re.compile(r"\b(?:for|lasts?|lasting|within|takes?|taking|over)\s+(?:about\s+|around\s+)?$",
                              re.IGNORECASE)


@dataclass(frozen=True)
class Citation:
    """One time reference of an answer.

    Attributes:
        text: the matched text (``from frame 1 to frame 2 (1.0 s–2.0 s)``).
        span: ``(start, end)`` character offsets of :attr:`text` in the answer.
        unit: ``frame`` (the clip's sampled-frame index) or ``seconds`` (from the clip's first frame).
        cited: ``(first, last)`` the numbers as written (equal for a single moment).
        source_frames: ``(first, last)`` the source-video frames they name (after clamping).
        out_of_range: the citation names a moment the model was not shown (clamped into the clip).
    """

    text: str
    span: tuple[int, int]
    unit: Literal["frame", "seconds"]
    cited: tuple[float, float]
    source_frames: tuple[int, int]
    out_of_range: bool = False

    def to_json(self, source_fps: float | None = None) -> dict[str, Any]:
        """``{"text", "span", "unit", "cited", "source_frames"[, "source_seconds"], "out_of_range"}``."""
        cited = [int(v) if float(v).is_integer() else float(v) for v in self.cited]
        out: dict[str, Any] = {"text": self.text, "span": list(self.span), "unit": self.unit, "cited": cited,
                               "source_frames": list(self.source_frames)}
        if source_fps:
            out["source_seconds"] = [round(f / source_fps, 3) for f in self.source_frames]
        out["out_of_range"] = self.out_of_range
        return out


def resolve_citations(text: str, frame_index: Sequence[int] | np.ndarray, source_fps: float) -> list[Citation]:
    """The time references of ``text`` (an answer) as source-video frames.

    Args:
        text: the model's answer.
        frame_index: ``(T,)`` the source frame of each frame the model was shown (``DialogueClip.frame_index``).
        source_fps: frames per second of the source video (``DialogueClip.source_fps``).

    Returns:
        The citations in the order they appear.
    """
    index = np.asarray(frame_index, dtype=np.int64).reshape(-1)
    if index.size == 0:
        raise ValueError("resolve_citations needs the frame index of at least one shown frame")
    if not source_fps or source_fps <= 0:
        raise ValueError(f"resolve_citations needs the source video's positive fps, got {source_fps}")
    first, last = int(index.min()), int(index.max())
    steps = np.diff(np.unique(index))
    tolerance = 0.5 * (float(np.median(steps)) if steps.size else 1.0)

    def frame(n: int) -> tuple[int, bool]:
        inside = 0 <= n < index.size
        return int(index[min(max(n, 0), index.size - 1)]), not inside

    def moment(seconds: float) -> tuple[int, bool]:
        f = int(index[0]) + int(round(seconds * source_fps))
        outside = f < first - tolerance or f > last + tolerance
        return min(max(f, first), last), outside

    citations = []
    for match in _CITATION.finditer(text):
        g = match.groupdict()
        # the alternative that matched: its first number and, for a range, its last
        low, high = next((g[x], g[y] if y else None) for x, y in _GROUPS if g[x] is not None)
        high = high if high is not None else low
        unit: Literal["frame", "seconds"] = "frame" if (g["b1"] or g["f1"]) is not None else "seconds"
        if unit == "frame":
            a, b = int(low), int(high)
            (fa, oa), (fb, ob) = frame(a), frame(b)
        else:
            if g["s0"] is not None and _DURATION_BEFORE.search(text[:match.start()]):
                continue
            a, b = float(low), float(high)
            (fa, oa), (fb, ob) = moment(a), moment(b)
        citations.append(Citation(match.group(0), (match.start(), match.end()), unit, (a, b),
                                  (min(fa, fb), max(fa, fb)), oa or ob))
    return citations


def citations_span(citations: Sequence[Citation]) -> list[int] | None:
    """``[first, last]`` source frames of all citations together (``None`` when there are none)."""
    if not citations:
        return None
    return [min(c.source_frames[0] for c in citations), max(c.source_frames[1] for c in citations)]


def describe_source_time(citation: Citation, source_fps: float, shown: int | None = None) -> str:
    """``source frame 90, 3.0 s`` (``source frames 30–60, 1.0–2.0 s`` for a range); an out-of-range citation
    says so first (``not shown (4 frames): source frame 90, 3.0 s``)."""
    a, b = citation.source_frames
    where = (f"source frame {a}, {a / source_fps:.1f} s" if a == b
             else f"source frames {a}–{b}, {a / source_fps:.1f}–{b / source_fps:.1f} s")
    if citation.out_of_range:
        return f"not shown{f' ({shown} frames)' if shown else ''}: nearest {where}"
    return where


def annotate_citations(text: str, citations: Sequence[Citation], source_fps: float, shown: int | None = None) -> str:
    """``text`` with each citation followed by its source time in brackets, e.g. ``at frame 3 [source frame 90,
    3.0 s]`` (what ``tvau chat`` prints)."""
    out, position = [], 0
    for citation in citations:
        start, end = citation.span
        out += [text[position:end], f" [{describe_source_time(citation, source_fps, shown)}]"]
        position = end
    return "".join(out) + text[position:]
