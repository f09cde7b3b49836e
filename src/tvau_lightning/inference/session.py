"""A multi-turn anomaly dialogue about one video with a stage-2 (RAE) model: the state ``tvau chat`` and
``tvau analyze --rae-ckpt`` share.

The dialogue sees the video (or a frame range of it) sampled the way the RAE checkpoint's dialogue DataModule
sampled its training clips (:class:`DialogueSampling`, read by
:func:`~tvau_lightning.inference.models.dialogue_sampling`): at its rate — ``sample_fps`` frames per second of
the source or every ``frame_stride``-th frame, at most ``max_frames`` (the first ones; a shorter range repeats its
last frame up to ``min_frames``) — or ``num_frames`` frames spread uniformly, resized to its frame size.
:func:`resolve_sampling` applies a user's overrides and says what differs. Each question is answered with the
whole history (earlier questions and the model's own answers) until :meth:`ChatSession.reset`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from tvau_lightning.builder.render import QUESTIONS
from tvau_lightning.data.dialogue import check_rate_args, rate_frame_indices, sample_frame_indices
from tvau_lightning.data.dialogue_schema import Turn
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import VideoReader
from tvau_lightning.inference.citations import Citation, citations_span, resolve_citations

#: the four questions of the paper's dialogue order (judgment → target appearance → trajectory → temporal
#: anchors), as ``(answer kind, question)``; the texts are the dataset builder's (:data:`builder.render.QUESTIONS`)
#: so that inference asks exactly what training taught.
STANDARD_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("yesno", QUESTIONS["judgment"]),
    ("target", QUESTIONS["abnormal_target"]),
    ("trajectory", QUESTIONS["abnormal_motion"]),
    ("anchor", QUESTIONS["when"]),
)


class FrameRange:
    """Frames ``start … end`` (inclusive) of a video, seen as a video of their own (frame 0 = ``start``)."""

    def __init__(self, source: VideoReader, start: int, end: int) -> None:
        if not 0 <= start <= end < source.num_frames:
            raise ValueError(f"frame range [{start}, {end}] is not inside the {source.num_frames} frames of {source.path}")
        self.source, self.start, self.end = source, int(start), int(end)
        self.path = source.path

    @property
    def num_frames(self) -> int:
        return self.end - self.start + 1

    @property
    def fps(self) -> float:
        return self.source.fps

    @property
    def size(self) -> tuple[int, int]:
        return self.source.size

    def read(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        array = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() >= self.num_frames):
            raise IndexError(f"frames {array.tolist()[:5]} outside the range's {self.num_frames} frames")
        return self.source.read(array + self.start)


#: the fields of :class:`DialogueSampling` a user may override (command-line flags of ``chat``/``analyze``)
SAMPLING_FIELDS = ("sample_fps", "frame_stride", "num_frames", "min_frames", "max_frames", "frame_size")


@dataclass(frozen=True)
class DialogueSampling:
    """How a dialogue model's frames are taken from a video: the dialogue DataModule's description
    (``data.dialogue.DialogueDataModule``).

    Attributes:
        frame_size: ``(H, W)`` frames are resized to.
        num_frames: frames spread uniformly over the video when no rate is set.
        sample_fps: frames per second taken from the source (``None``: see ``frame_stride``).
        frame_stride: every this-many-th source frame when ``sample_fps`` is ``None``; with both ``None`` the
            ``num_frames`` frames are spread.
        min_frames: at a rate, a shorter video repeats its last frame up to this many.
        max_frames: at a rate, at most this many frames (the first ones) are shown (``None``: no cap).
        origin: where it comes from: ``checkpoint`` (the RAE checkpoint's DataModule), ``flags`` (the checkpoint's
            with a user's overrides) or ``default`` (the checkpoint records none: the AHD's frame size and clip
            length, spread — the behaviour before checkpoints were read).
    """

    frame_size: tuple[int, int]
    num_frames: int = 8
    sample_fps: float | None = None
    frame_stride: int | None = None
    min_frames: int = 1
    max_frames: int | None = None
    origin: Literal["checkpoint", "flags", "default"] = "checkpoint"

    def __post_init__(self) -> None:
        check_rate_args(self.sample_fps, self.frame_stride, self.min_frames, self.max_frames)
        if self.num_frames < 1 or len(self.frame_size) != 2 or min(self.frame_size) < 1:
            raise ValueError(f"need num_frames >= 1 and a frame size (H, W) of positive sides, got "
                             f"num_frames={self.num_frames}, frame_size={self.frame_size}")

    @property
    def at_rate(self) -> bool:
        """Frames at a fixed rate (``sample_fps`` or ``frame_stride``) rather than spread."""
        return self.sample_fps is not None or self.frame_stride is not None

    def step(self, fps: float) -> float:
        """Source frames between two sampled ones in a video of ``fps`` frames per second (rate mode)."""
        return fps / self.sample_fps if self.sample_fps is not None else float(self.frame_stride or 1)

    def describe(self) -> str:
        """One phrase, e.g. ``1 fps, 8-40 frames, 476x868`` or ``8 frames spread over the video, 64x96``."""
        size = f"{self.frame_size[0]}x{self.frame_size[1]}"
        if not self.at_rate:
            return f"{self.num_frames} frames spread over the video, {size}"
        rate = (f"{self.sample_fps:g} fps" if self.sample_fps is not None
                else "every frame" if self.frame_stride == 1 else f"every {self.frame_stride} frames")
        count = f"{self.min_frames}-{self.max_frames}" if self.max_frames is not None else f"at least {self.min_frames}"
        return f"{rate}, {count} frames, {size}"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["frame_size"] = list(self.frame_size)
        return out


def resolve_sampling(stored: DialogueSampling | None, fallback: DialogueSampling,
                     overrides: Mapping[str, Any] | None = None,
                     source: str = "the RAE checkpoint") -> tuple[DialogueSampling, list[str]]:
    """The sampling to use and the warnings to show (at most one).

    ``stored`` is the checkpoint's (``None``: it records none, ``fallback`` is used with a warning); ``overrides``
    are a user's explicit values (``None`` values = not given). A rate given (``sample_fps`` or ``frame_stride``)
    replaces the other; ``num_frames`` without a rate means frames spread over the video. When the result
    differs from the checkpoint's, one warning names each difference.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(SAMPLING_FIELDS))
    if unknown:
        raise ValueError(f"unknown sampling setting(s) {unknown}; known: {', '.join(SAMPLING_FIELDS)}")
    if "sample_fps" in given and "frame_stride" in given:
        raise ValueError("give a sampling rate as --sample-fps or --frame-stride, not both")
    base = stored if stored is not None else fallback
    changes = dict(given)
    if "frame_size" in changes:
        changes["frame_size"] = (int(changes["frame_size"][0]), int(changes["frame_size"][1]))
    if "sample_fps" in given:
        changes["frame_stride"] = None
    elif "frame_stride" in given:
        changes["sample_fps"] = None
    elif "num_frames" in given:
        changes.update(sample_fps=None, frame_stride=None)
    warnings = []
    if stored is None:
        warnings.append(f"{source} records no dialogue sampling (no DataModule hyper-parameters): using "
                        f"{dataclasses.replace(fallback, **changes).describe()}, as before checkpoints were read")
    result = dataclasses.replace(base, **changes, origin="default" if stored is None else "checkpoint")
    if stored is not None:
        differences = [f"{name} {_shown(getattr(result, name))} (trained: {_shown(getattr(stored, name))})"
                       for name in SAMPLING_FIELDS if getattr(result, name) != getattr(stored, name)]
        if differences:
            result = dataclasses.replace(result, origin="flags")
            warnings.append(f"dialogue sampling differs from {source}'s training DataModule: "
                            f"{', '.join(differences)}; answers may be out of distribution")
    return result, warnings


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


@dataclass
class DialogueClip:
    """The frames a dialogue model sees.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 at the model's frame size.
        fps: effective frames per second of the sampled frames (source fps / sampling step).
        frame_index: ``(T,)`` the sampled frames' numbers in the source video.
        sampling: how they were taken (:meth:`DialogueSampling.to_json` + ``description``), if known.
        note: what the model does not see, e.g. the frames past ``max_frames`` (``None``: the whole range).
        source_fps: frames per second of the source video (maps an answer's seconds to source frames).
    """

    frames: torch.Tensor
    fps: float
    frame_index: np.ndarray
    sampling: dict[str, Any] | None = None
    note: str | None = None
    source_fps: float | None = None

    def citations(self, answer: str) -> list[Citation]:
        """The time references of an answer about this clip, as source frames
        (:func:`~tvau_lightning.inference.citations.resolve_citations`)."""
        return resolve_citations(answer, self.frame_index, self.source_fps or self.fps)


def dialogue_clip(source: VideoReader, *, num_frames: int | None = None, frame_size: tuple[int, int] | None = None,
                  fps: float | None = None, sampling: DialogueSampling | None = None) -> DialogueClip:
    """The frames of ``source`` a dialogue model sees, as ``data.dialogue.DialogueDataset`` takes a record's range.

    With ``sampling`` at a rate: every ``step`` frames (``fps / sample_fps`` or ``frame_stride``, rounded) from the
    first, at most ``max_frames`` (the first ones; ``note`` says so), a shorter range repeating its last frame up
    to ``min_frames``. Otherwise ``num_frames`` spread uniformly (``sampling.num_frames``, or the arguments when
    ``sampling`` is ``None``). Frames are resized to the frame size; ``fps`` overrides the video's rate.
    """
    if sampling is None:
        if num_frames is None or frame_size is None:
            raise ValueError("dialogue_clip needs sampling= or both num_frames= and frame_size=")
        sampling = DialogueSampling(frame_size=(int(frame_size[0]), int(frame_size[1])), num_frames=int(num_frames))
    offset = source.start if isinstance(source, FrameRange) else 0
    rate = float(fps or source.fps)
    length = source.num_frames
    note = None
    if sampling.at_rate:
        step = sampling.step(rate)
        if step < 1.0:
            raise ValueError(f"{source.path} runs at {rate:g} fps, fewer than the sampling's {sampling.sample_fps:g} "
                             f"frames per second; pass --sample-fps {rate:g} or lower (or --fps if the file's rate "
                             "is wrong)")
        indices = rate_frame_indices(0, length - 1, step, sampling.min_frames, None, what=str(source.path))
        if sampling.max_frames is not None and len(indices) > sampling.max_frames:
            shown = indices[: sampling.max_frames]
            note = (f"the {length / rate:.1f} s discussed hold {len(indices)} frames at {rate / step:g} fps, more than "
                    f"the model's max_frames {sampling.max_frames}: it sees the first {sampling.max_frames} (frames "
                    f"{int(shown[0]) + offset}-{int(shown[-1]) + offset})")
            indices = shown
    else:
        indices = sample_frame_indices(0, length - 1, sampling.num_frames)
        step = max(1.0, length / sampling.num_frames)
    frames = resize_frames(source.read(indices), sampling.frame_size)
    described = {**sampling.to_json(), "description": sampling.describe()}
    return DialogueClip(frames, rate / step, indices + offset, described, note, source_fps=rate)


def dialogue_window_frames(sampling: DialogueSampling, fps: float) -> int | None:
    """Source frames spanned by the most a dialogue model sees at once (``max_frames`` frames at the sampling's
    rate); ``None`` when there is no cap (spread sampling, or no ``max_frames``)."""
    if not sampling.at_rate or sampling.max_frames is None:
        return None
    return int(np.floor((sampling.max_frames - 1) * sampling.step(fps) + 1e-6)) + 1


def most_anomalous_window(scores: np.ndarray, length: int) -> tuple[int, int]:
    """``(start, end)`` (inclusive) of the ``length``-frame window of ``scores`` (per-frame anomaly scores) with
    the highest mean, the earliest one on ties; the whole range when it is not longer than ``length``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if length < 1:
        raise ValueError(f"window length must be positive, got {length}")
    if len(scores) <= length:
        return 0, len(scores) - 1
    sums = np.convolve(scores, np.ones(length), mode="valid")  # sums[s] = scores[s : s + length].sum()
    best = float(sums.max())  # windows equal up to rounding count as ties: the earliest one wins
    start = int(np.flatnonzero(sums >= best - 1e-9 * max(1.0, abs(best)))[0])
    return start, start + length - 1


class ChatSession:
    """A multi-turn dialogue about one clip with an ``RAETask`` (``answer(frames, fps, histories)``).

    Args:
        rae: the stage-2 task (eval mode).
        clip: the frames it sees.
    """

    def __init__(self, rae: Any, clip: DialogueClip) -> None:
        self.rae = rae
        self.clip = clip
        self.history: list[Turn] = []

    @classmethod
    def from_video(cls, rae: Any, source: VideoReader, *, num_frames: int | None = None,
                   frame_size: tuple[int, int] | None = None, fps: float | None = None,
                   sampling: DialogueSampling | None = None) -> ChatSession:
        """A session on the frames :func:`dialogue_clip` takes from ``source``."""
        return cls(rae, dialogue_clip(source, num_frames=num_frames, frame_size=frame_size, fps=fps, sampling=sampling))

    def ask(self, question: str, kind: str = "other") -> str:
        """Answer ``question`` given the history, then add both to the history. ``kind`` labels the answer."""
        question = question.strip()
        if not question:
            raise ValueError("empty question")
        device = self.rae.device
        frames = self.clip.frames[None].to(device)
        fps = torch.tensor([self.clip.fps], dtype=torch.float32, device=device)
        answer = self.rae.answer(frames, fps, [[*self.history, Turn("user", question)]])[0].strip()
        self.history += [Turn("user", question), Turn("assistant", answer, kind)]
        return answer

    def reset(self) -> None:
        """Forget the history."""
        self.history = []

    def transcript(self) -> list[dict[str, str]]:
        """The dialogue so far as ``[{"role", "content"[, "kind"]}, …]``."""
        return [turn.to_json() for turn in self.history]

    def standard_answers(self, on_answer: Callable[[], None] | None = None) -> dict[str, Any]:
        """Ask :data:`STANDARD_QUESTIONS` in order as one fresh dialogue (the history is reset first and holds
        this dialogue afterwards); returns the ``answers.json`` document. Each answer carries its time references
        resolved to source frames (``citations``, :meth:`Citation.to_json`) and their overall ``source_frames``
        ``[first, last]`` (``None`` without any)."""
        self.reset()
        answers = []
        for kind, question in STANDARD_QUESTIONS:
            answer = self.ask(question, kind)
            citations = self.clip.citations(answer)
            answers.append({"kind": kind, "question": question, "answer": answer,
                            "source_frames": citations_span(citations),
                            "citations": [c.to_json(self.clip.source_fps) for c in citations]})
            if on_answer is not None:
                on_answer()
        document = {"frames_used": self.clip.frame_index.tolist(), "fps": self.clip.fps, "answers": answers}
        if self.clip.sampling is not None:
            document["sampling"] = {**self.clip.sampling, "note": self.clip.note}
        return document
