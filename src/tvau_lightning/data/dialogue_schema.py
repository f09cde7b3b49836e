"""The fine-grained video–text dialogue format (JSONL, one clip per line) — SPEC §5.

One line::

    {"video": "Scene1/abnormal_scene_1_scenario_1.mp4",   # relative to the JSONL file, or absolute;
                                                          # a folder of frames is accepted too
     "frame_range": [0, 47],                               # optional, 0-based, both ends inclusive
     "frame_index": [0, 30, 60],                           # optional: the record's sampled source frames
     "sample_fps": 1.0,                                    # optional: their rate (frames per second)
     "dataset": "ubnormal", "video_id": "abnormal_scene_1_scenario_1", "label": 1,
     "turns": [{"role": "user", "content": "Is there any anomaly in this video?"},
               {"role": "assistant", "content": "Yes.", "kind": "yesno"}, ...],
     "references": {"target": ["a person in a red coat", "..."], "trajectory": ["..."]}}   # optional

Turns alternate user → assistant, starting with the user. Every assistant turn has a ``kind`` in
:data:`ANSWER_KINDS`. ``references`` holds extra acceptable answers per kind for BLEU (the assistant turn of
that kind is always a reference too). The paper's order is judgment → target → trajectory → anchors.
When ``frame_index`` is present, the frame numbers in the answers are positions in it (0-based) and the
dialogue DataModule feeds exactly those frames; it lies inside ``frame_range`` (its first and last entry).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvau_lightning.atomic import atomic_path

ANSWER_KINDS: tuple[str, ...] = ("yesno", "target", "trajectory", "anchor", "other")
ROLES: tuple[str, ...] = ("user", "assistant")


class DialogueFormatError(ValueError):
    """A dialogue JSONL line that does not follow the schema; the message names file, line and fix."""


@dataclass(frozen=True)
class Turn:
    """One message of a dialogue. ``kind`` is set on assistant turns only."""

    role: str
    content: str
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.kind is not None:
            out["kind"] = self.kind
        return out


@dataclass
class DialogueRecord:
    """One clip with its multi-turn dialogue."""

    video: str
    video_id: str
    dataset: str
    label: int
    turns: list[Turn]
    frame_range: tuple[int, int] | None = None
    references: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    frame_index: tuple[int, ...] | None = None
    sample_fps: float | None = None

    def answers(self, kind: str) -> list[str]:
        """Assistant answers of ``kind`` in this dialogue, in order."""
        return [t.content for t in self.turns if t.role == "assistant" and t.kind == kind]

    def references_for(self, kind: str) -> list[str]:
        """All acceptable answers of ``kind``: the dialogue's own answers plus extra references."""
        refs = self.answers(kind) + list(self.references.get(kind, []))
        return list(dict.fromkeys(refs))

    def resolve_video(self, base_dir: str | os.PathLike[str]) -> Path:
        """The video path, resolved against the JSONL file's folder when relative."""
        p = Path(self.video)
        return p if p.is_absolute() else Path(base_dir) / p

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "video": self.video,
            "dataset": self.dataset,
            "video_id": self.video_id,
            "label": int(self.label),
            "turns": [t.to_json() for t in self.turns],
        }
        if self.frame_range is not None:
            out["frame_range"] = [int(self.frame_range[0]), int(self.frame_range[1])]
        if self.frame_index is not None:
            out["frame_index"] = [int(f) for f in self.frame_index]
        if self.sample_fps is not None:
            out["sample_fps"] = float(self.sample_fps)
        if self.references:
            out["references"] = {k: list(v) for k, v in self.references.items()}
        if self.meta:
            out["meta"] = self.meta
        return out


def _fail(where: str, msg: str) -> DialogueFormatError:
    return DialogueFormatError(f"{where}: {msg}")


def parse_record(obj: Any, where: str = "<record>") -> DialogueRecord:
    """Validate one decoded JSON object and build a :class:`DialogueRecord`.

    Raises:
        DialogueFormatError: naming ``where`` (``file:line``), the offending field and what is expected.
    """
    if not isinstance(obj, Mapping):
        raise _fail(where, f"expected a JSON object per line, got {type(obj).__name__}")
    for key in ("video", "video_id", "turns"):
        if key not in obj:
            raise _fail(where, f"missing required field '{key}' (fields: video, video_id, dataset, label, turns)")
    video, video_id = obj["video"], obj["video_id"]
    if not isinstance(video, str) or not video:
        raise _fail(where, f"'video' must be a non-empty path string, got {video!r}")
    if not isinstance(video_id, str) or not video_id:
        raise _fail(where, f"'video_id' must be a non-empty string, got {video_id!r}")
    label = obj.get("label", 0)
    if label not in (0, 1, True, False):
        raise _fail(where, f"'label' must be 0 (normal) or 1 (abnormal), got {label!r}")
    dataset = obj.get("dataset", "custom")
    if not isinstance(dataset, str):
        raise _fail(where, f"'dataset' must be a string, got {dataset!r}")

    frame_range = obj.get("frame_range")
    if frame_range is not None:
        if (
            not isinstance(frame_range, (list, tuple))
            or len(frame_range) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in frame_range)
            or frame_range[0] < 0
            or frame_range[1] < frame_range[0]
        ):
            raise _fail(where, f"'frame_range' must be [start, end] with 0 <= start <= end (inclusive), got {frame_range!r}")
        frame_range = (int(frame_range[0]), int(frame_range[1]))

    frame_index = obj.get("frame_index")
    if frame_index is not None:
        if (
            not isinstance(frame_index, list)
            or not frame_index
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in frame_index)
            or any(b <= a for a, b in zip(frame_index, frame_index[1:]))
        ):
            raise _fail(where, "'frame_index' must be a non-empty list of increasing frame numbers >= 0, got "
                               f"{frame_index!r}")
        if frame_range is not None and (frame_index[0] < frame_range[0] or frame_index[-1] > frame_range[1]):
            raise _fail(where, f"'frame_index' {frame_index[0]}..{frame_index[-1]} lies outside 'frame_range' "
                               f"{list(frame_range)}")
        frame_index = tuple(int(v) for v in frame_index)
    sample_fps = obj.get("sample_fps")
    if sample_fps is not None and (isinstance(sample_fps, bool) or not isinstance(sample_fps, (int, float))
                                   or sample_fps <= 0):
        raise _fail(where, f"'sample_fps' must be a positive number of frames per second, got {sample_fps!r}")

    raw_turns = obj["turns"]
    if not isinstance(raw_turns, list) or not raw_turns:
        raise _fail(where, "'turns' must be a non-empty list of {role, content[, kind]} objects")
    turns: list[Turn] = []
    for i, t in enumerate(raw_turns):
        if not isinstance(t, Mapping) or "role" not in t or "content" not in t:
            raise _fail(where, f"turns[{i}] must be an object with 'role' and 'content', got {t!r}")
        role, content, kind = t["role"], t["content"], t.get("kind")
        expected = ROLES[i % 2]
        if role != expected:
            raise _fail(where, f"turns[{i}] has role {role!r} but turns alternate user/assistant starting with user "
                               f"(expected {expected!r})")
        if not isinstance(content, str):
            raise _fail(where, f"turns[{i}].content must be a string, got {type(content).__name__}")
        if role == "assistant":
            if kind not in ANSWER_KINDS:
                raise _fail(where, f"turns[{i}].kind must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")
        elif kind is not None:
            raise _fail(where, f"turns[{i}] is a user turn and must not have a 'kind' (got {kind!r})")
        turns.append(Turn(role=role, content=content, kind=kind))

    references_raw = obj.get("references", {}) or {}
    if not isinstance(references_raw, Mapping):
        raise _fail(where, f"'references' must be an object kind -> [strings], got {references_raw!r}")
    references: dict[str, list[str]] = {}
    for k, v in references_raw.items():
        if k not in ANSWER_KINDS:
            raise _fail(where, f"references key {k!r} is not one of {', '.join(ANSWER_KINDS)}")
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise _fail(where, f"references[{k!r}] must be a string or a list of strings")
        references[k] = list(v)
    meta = obj.get("meta", {}) or {}
    return DialogueRecord(
        video=video,
        video_id=video_id,
        dataset=dataset,
        label=int(label),
        turns=turns,
        frame_range=frame_range,
        references=references,
        meta=dict(meta),
        frame_index=frame_index,
        sample_fps=None if sample_fps is None else float(sample_fps),
    )


def iter_dialogues(path: str | os.PathLike[str]) -> Iterator[DialogueRecord]:
    """Yield the records of a dialogue JSONL file, validating each line (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dialogue file not found: {path} (build one with `tvau build-dataset`)")
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DialogueFormatError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
            yield parse_record(obj, where)


def load_dialogues(path: str | os.PathLike[str]) -> list[DialogueRecord]:
    """Read and validate a whole dialogue JSONL file."""
    return list(iter_dialogues(path))


def write_dialogues(path: str | os.PathLike[str], records: Iterable[DialogueRecord]) -> int:
    """Write records as JSONL atomically (temp file in the same folder, then rename). Returns the count."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
            n += 1
    return n


def dialogue_prefixes(turns: Sequence[Turn]) -> Iterator[tuple[list[Turn], Turn]]:
    """For multi-turn evaluation: yield (history ending in a user question, the reference answer)."""
    for i, t in enumerate(turns):
        if t.role == "assistant":
            yield list(turns[:i]), t
