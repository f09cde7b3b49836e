"""Annotators: who answers the builder's structured questions (paper §3.3, SPEC §5).

An :class:`Annotator` turns one :class:`AnnotatorRequest` (a prompt and RGB images) into raw reply text.
Three implementations:

* :class:`BackboneAnnotator` — a local LVLM through any :class:`~tvau_lightning.backbones.base.BackboneAdapter`;
* :class:`~tvau_lightning.builder.openai_http.OpenAIChatAnnotator` — an OpenAI-compatible chat-completions
  endpoint (vLLM, Ollama, llama.cpp server, a hosted API);
* :class:`ScriptedAnnotator` — canned replies or a Python function, for tests and demos
  (:class:`GroundTruthResponder` answers from the dataset's own ground truth).

:func:`query_structured` is the one place where replies are parsed and validated: a transient error
(timeout, connection error, HTTP 429/5xx) or a malformed reply is retried with exponential backoff, and
after the last attempt the question becomes a recorded :class:`QueryOutcome` failure — never an exception
that stops the run. Only :class:`AnnotatorConfigError` (wrong URL/model/key) stops the run, with the fix.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch

from tvau_lightning.builder.geometry import box_centers, direction_of
from tvau_lightning.builder.schema import (
    SYSTEM_PROMPT,
    ReplyFormatError,
)

if TYPE_CHECKING:
    from tvau_lightning.backbones.base import BackboneAdapter

T = TypeVar("T")

#: the questions the builder asks (see :mod:`tvau_lightning.builder.schema`)
TASKS: tuple[str, ...] = ("frame_objects", "verify_motion", "verify_appearance")


class AnnotatorError(RuntimeError):
    """A request the annotator could not answer."""


class AnnotatorTransientError(AnnotatorError):
    """A failure worth retrying: timeout, lost connection, HTTP 429 or 5xx, a reply body that is not JSON."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AnnotatorRequestError(AnnotatorError):
    """A failure of this one request that a retry will not fix (HTTP 400, a context overflow)."""


class AnnotatorConfigError(AnnotatorError):
    """The annotator is misconfigured (wrong URL, unknown model, missing or rejected API key): the run stops."""


@dataclass
class AnnotatorRequest:
    """One question to the annotator.

    Attributes:
        task: one of :data:`TASKS`.
        prompt: the user message text.
        images: RGB ``(H, W, 3)`` uint8 arrays, in the order the prompt refers to them.
        system: the system message.
        schema: the JSON Schema the reply must follow (servers with guided decoding may enforce it).
        meta: context for logs and for scripted annotators (``video_id``, ``frame``, ``image_size`` …);
            LVLM annotators ignore it.
    """

    task: str
    prompt: str
    images: list[np.ndarray]
    system: str = SYSTEM_PROMPT
    schema: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Annotator(ABC):
    """Answers :class:`AnnotatorRequest` s with raw text (the caller parses it)."""

    #: how many requests may run at once (HTTP servers batch concurrent requests; local models do not)
    max_concurrency: int = 1

    @abstractmethod
    def complete(self, request: AnnotatorRequest) -> str:
        """The reply text.

        Raises:
            AnnotatorTransientError: retryable failure.
            AnnotatorRequestError: this request cannot be answered.
            AnnotatorConfigError: no request can be answered until the configuration is fixed.
        """

    def sent_size(self, image: np.ndarray) -> tuple[int, int]:
        """``(H, W)`` of ``image`` as the model will see it (prompts state it; boxes refer to it)."""
        return int(image.shape[0]), int(image.shape[1])

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The settings that change the replies (model, decoding, image size …); part of the resume
        fingerprint, so a work folder is never continued with a different annotator."""


# --------------------------------------------------------------------------------------------- retries
@dataclass
class RetryPolicy:
    """How often and how patiently a question is asked again.

    Attributes:
        attempts: tries per question (first try included).
        backoff: seconds before the second try; doubled for each further try.
        max_backoff: cap of one wait (a server's ``Retry-After`` is honoured up to this cap).
    """

    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        delay = self.backoff * (2 ** (attempt - 1))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff)


@dataclass
class QueryOutcome(Generic[T]):
    """The result of one structured question: the parsed value, or why there is none.

    Attributes:
        value: the parsed reply (``None`` on failure).
        attempts: tries made.
        error: the last error message (``None`` on success).
        error_kind: ``malformed`` (reply not in the schema), ``transient`` (timeouts/5xx to the end),
            ``request`` (not retryable).
        raw: the last raw reply text (truncated), for the failure log.
    """

    value: T | None
    attempts: int
    error: str | None = None
    error_kind: str | None = None
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def query_structured(
    annotator: Annotator,
    request: AnnotatorRequest,
    parse: Callable[[str], T],
    policy: RetryPolicy | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> QueryOutcome[T]:
    """Ask ``request`` until ``parse`` accepts the reply or the attempts run out.

    Transient errors and malformed replies (``parse`` raising :class:`ReplyFormatError`) are retried with
    backoff; :class:`AnnotatorRequestError` ends the question at once. :class:`AnnotatorConfigError` and
    ``KeyboardInterrupt`` propagate.
    """
    policy = policy or RetryPolicy()
    error = kind = raw = None
    retry_after: float | None = None
    for attempt in range(1, policy.attempts + 1):
        if attempt > 1:
            sleep(policy.wait(attempt - 1, retry_after))
        retry_after = None
        try:
            raw = annotator.complete(request)
        except AnnotatorConfigError:
            raise
        except AnnotatorTransientError as err:
            error, kind, retry_after = str(err), "transient", err.retry_after
            continue
        except AnnotatorRequestError as err:
            return QueryOutcome(None, attempt, str(err), "request", raw)
        try:
            return QueryOutcome(parse(raw), attempt, raw=None)
        except ReplyFormatError as err:
            error, kind = str(err), "malformed"
    return QueryOutcome(None, policy.attempts, error, kind, raw[:500] if isinstance(raw, str) else None)


# --------------------------------------------------------------------------------------------- scripted
class ScriptedAnnotator(Annotator):
    """Replies from a script: a list of replies used in order (an ``Exception`` in the list is raised), or a
    function of the request. Counts its calls and keeps the requests' tasks and metadata.

    Args:
        script: the replies, or ``respond(request) -> str``.
        name: a label for the fingerprint and the summary.
    """

    def __init__(self, script: Sequence[str | BaseException] | Callable[[AnnotatorRequest], str],
                 name: str = "scripted") -> None:
        self._script = script if callable(script) else list(script)
        self._position = 0
        self._lock = threading.Lock()
        self.name = name
        self.calls = 0
        self.log: list[tuple[str, dict[str, Any]]] = []

    def complete(self, request: AnnotatorRequest) -> str:
        with self._lock:
            self.calls += 1
            self.log.append((request.task, dict(request.meta)))
            if callable(self._script):
                respond = self._script
            else:
                if self._position >= len(self._script):
                    raise AnnotatorRequestError(f"scripted annotator {self.name!r} ran out of replies "
                                                f"after {len(self._script)}")
                reply = self._script[self._position]
                self._position += 1
                if isinstance(reply, BaseException):
                    raise reply
                return reply
        return respond(request)

    def describe(self) -> dict[str, Any]:
        return {"type": "scripted", "name": self.name}


_COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (240, 140, 20), "yellow": (230, 220, 40), "green": (40, 160, 60),
    "blue": (50, 80, 190), "purple": (130, 50, 160), "pink": (240, 110, 170), "brown": (120, 80, 40),
    "grey": (128, 128, 128), "white": (240, 240, 240), "black": (20, 20, 20),
}


def colour_name(rgb: Sequence[float]) -> str:
    """The nearest basic colour name of an RGB triple (saturated hues win over grey when clearly coloured)."""
    r, g, b = (float(v) for v in rgb)
    spread = max(r, g, b) - min(r, g, b)
    names = _COLOUR_NAMES if spread > 40 else {k: _COLOUR_NAMES[k] for k in ("grey", "white", "black")}
    return min(names, key=lambda k: sum((a - c) ** 2 for a, c in zip((r, g, b), names[k])))


class GroundTruthResponder:
    """Answers the builder's questions from ground truth instead of an LVLM — for demos and tests.

    ``frame_objects``: the reference boxes the pipeline attaches to the request (``meta["reference_boxes"]``,
    from the dataset's object or anomaly tracks), each as ``category`` with one attribute, the colour name of
    the box's central pixels in the image actually sent (so a blurred background shows). ``verify_motion``:
    the 8-way direction of the boxes in ``meta["boxes"]``. ``verify_appearance``: ``category`` and the crop's
    colour. Replies are valid JSON following the schemas; the text is not a real description.

    Args:
        category: the category given to every object (``abnormal_category`` for anomaly-track boxes).
        abnormal_category: the category of boxes the pipeline marks as anomalous.
    """

    def __init__(self, category: str = "person", abnormal_category: str | None = None) -> None:
        self.category = category
        self.abnormal_category = abnormal_category or category

    @staticmethod
    def _centre_colour(image: np.ndarray, box: Sequence[float]) -> str:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        rx, ry = max(1.0, (x2 - x1) / 4), max(1.0, (y2 - y1) / 4)
        xa, xb = int(max(0, cx - rx)), int(min(w, cx + rx + 1))
        ya, yb = int(max(0, cy - ry)), int(min(h, cy + ry + 1))
        patch = image[ya:yb, xa:xb].reshape(-1, 3)
        return colour_name(patch.mean(axis=0) if len(patch) else (128, 128, 128))

    def __call__(self, request: AnnotatorRequest) -> str:
        meta = request.meta
        if request.task == "frame_objects":
            image = request.images[0]
            sent_h, sent_w = image.shape[:2]
            src_h, src_w = meta.get("frame_size", (sent_h, sent_w))
            sx, sy = sent_w / src_w, sent_h / src_h
            objects = []
            for ref in meta.get("reference_boxes", []):
                x1, y1, x2, y2 = ref["box"]
                box = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
                colour = self._centre_colour(image, box)
                category = self.abnormal_category if ref.get("abnormal") else self.category
                objects.append({"category": category, "attributes": [f"{colour} clothing"],
                                "box": [round(v, 1) for v in box]})
            return json.dumps({"objects": objects})
        if request.task == "verify_motion":
            boxes = np.asarray(meta.get("boxes", []), dtype=np.float64).reshape(-1, 4)
            direction = "stationary"
            if len(boxes) >= 2:
                centers = box_centers(boxes)
                d = centers[-1] - centers[0]
                size = meta.get("frame_size", (1, 1))
                if np.hypot(*d) >= 0.05 * np.hypot(*size):
                    direction = direction_of(float(d[0]), float(d[1]))
            return json.dumps({"direction": direction, "speed": "moderate"})
        if request.task == "verify_appearance":
            image = request.images[0]
            h, w = image.shape[:2]
            colour = self._centre_colour(image, (0, 0, w, h))
            category = self.abnormal_category if meta.get("abnormal") else self.category
            return json.dumps({"category": category, "attributes": [f"{colour} clothing"]})
        raise AnnotatorRequestError(f"GroundTruthResponder cannot answer task {request.task!r}")


# --------------------------------------------------------------------------------------------- backbone
def _resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


class BackboneAnnotator(Annotator):
    """A local LVLM as annotator, through the public :class:`BackboneAdapter` interface only.

    Each image becomes ``adapter.temporal_patch_size`` identical frames (Qwen2.5-VL merges frame pairs), the
    images of one request form one clip in order; the clip is encoded once and the reply is generated greedily
    after the prompt. Boxes refer to the resized image (``image_size``), which the prompt states.

    Args:
        adapter: a loaded backbone with its language model (``vision_only=False``).
        image_size: ``(H, W)`` every image is resized to (multiples of 28 suit Qwen2.5-VL; fixed-resolution
            towers resize again inside the adapter). ``None`` keeps the first image's size.
        max_new_tokens: generation budget of one reply.
        name: a label for the fingerprint (defaults to the adapter's model path).
    """

    def __init__(self, adapter: BackboneAdapter, image_size: tuple[int, int] | None = (448, 448),
                 max_new_tokens: int = 512, name: str | None = None) -> None:
        if getattr(adapter, "vision_only", False):
            raise AnnotatorConfigError("BackboneAnnotator needs the language model; load the backbone with "
                                       "vision_only=False")
        self.adapter = adapter
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.max_new_tokens = int(max_new_tokens)
        self.name = name or str(getattr(getattr(adapter, "config", None), "path", type(adapter).__name__))

    def sent_size(self, image: np.ndarray) -> tuple[int, int]:
        """``(H, W)`` of the image the model sees."""
        return self.image_size or (int(image.shape[0]), int(image.shape[1]))

    @torch.no_grad()
    def complete(self, request: AnnotatorRequest) -> str:
        from tvau_lightning.backbones.types import BackboneError, ContextOverflowError
        from tvau_lightning.data.dialogue_schema import Turn

        if not request.images:
            raise AnnotatorRequestError("BackboneAnnotator needs at least one image per request")
        size = self.sent_size(request.images[0])
        frames = torch.from_numpy(np.stack([_resize_image(np.ascontiguousarray(im), size) for im in request.images]))
        clip = frames.repeat_interleave(max(1, int(self.adapter.temporal_patch_size)), dim=0)
        adapter = self.adapter
        try:
            video = adapter.preprocess_video(clip).to(adapter.device, adapter.dtype)
            vision = adapter.encode_video(video, layers=[], visual_tokens=True)
            text = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
            inputs = adapter.build_dialogue_inputs(
                [[Turn("user", text)]], video=video, add_generation_prompt=True, padding_side="left"
            ).to(adapter.device)
            embeds = adapter.embed_dialogue(inputs, visual_tokens=vision.visual_tokens)
            return adapter.generate(inputs, embeds, max_new_tokens=self.max_new_tokens)[0]
        except ContextOverflowError as err:
            raise AnnotatorRequestError(f"the request does not fit the model's context: {err}") from err
        except BackboneError as err:
            raise AnnotatorConfigError(f"the backbone annotator cannot run: {err}") from err

    def describe(self) -> dict[str, Any]:
        return {"type": "backbone", "model": self.name, "family": getattr(self.adapter, "family", ""),
                "image_size": list(self.image_size) if self.image_size else None,
                "max_new_tokens": self.max_new_tokens}
