"""A multi-turn anomaly dialogue about one video with a stage-2 (RAE) model: the state ``tvau chat`` and
``tvau analyze --rae-ckpt`` share.

The dialogue sees ``num_frames`` frames sampled uniformly over the video (or a frame range of it), resized to
the frame size the RAE was trained with — exactly as the dialogue DataModule feeds training clips. Each question
is answered with the whole history (earlier questions and the model's own answers) until :meth:`ChatSession.reset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tvau_lightning.builder.render import QUESTIONS
from tvau_lightning.data.dialogue import sample_frame_indices
from tvau_lightning.data.dialogue_schema import Turn
from tvau_lightning.data.transforms import resize_frames
from tvau_lightning.data.video import VideoReader

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


@dataclass
class DialogueClip:
    """The frames a dialogue model sees.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 at the model's frame size.
        fps: effective frames per second of the sampled frames (source fps / sampling step).
        frame_index: ``(T,)`` the sampled frames' numbers in the source video.
    """

    frames: torch.Tensor
    fps: float
    frame_index: np.ndarray


def dialogue_clip(source: VideoReader, *, num_frames: int,
                  frame_size: tuple[int, int], fps: float | None = None) -> DialogueClip:
    """Sample ``num_frames`` frames uniformly over ``source`` (as ``data.dialogue.DialogueDataset`` does for a
    record's frame range) and resize them to ``frame_size``."""
    offset = source.start if isinstance(source, FrameRange) else 0
    indices = sample_frame_indices(0, source.num_frames - 1, num_frames)
    frames = resize_frames(source.read(indices), frame_size)
    step = max(1.0, source.num_frames / num_frames)
    return DialogueClip(frames, float(fps or source.fps) / step, indices + offset)


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
    def from_video(cls, rae: Any, source: VideoReader, *, num_frames: int,
                   frame_size: tuple[int, int], fps: float | None = None) -> ChatSession:
        return cls(rae, dialogue_clip(source, num_frames=num_frames, frame_size=frame_size, fps=fps))

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
        this dialogue afterwards); returns the ``answers.json`` document."""
        self.reset()
        answers = []
        for kind, question in STANDARD_QUESTIONS:
            answers.append({"kind": kind, "question": question, "answer": self.ask(question, kind)})
            if on_answer is not None:
                on_answer()
        return {"frames_used": self.clip.frame_index.tolist(), "fps": self.clip.fps, "answers": answers}
