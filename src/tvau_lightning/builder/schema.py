"""The structured replies the annotator LVLM must give, their prompts and their validation — in one place.

Three questions are asked (paper §3.3):

* ``frame_objects`` (frame-level extraction, and again on anomaly-focused frames): one image →
  :data:`FRAME_OBJECTS_SCHEMA`::

      {"objects": [{"category": "person", "attributes": ["red coat", "black trousers"],
                    "box": [x1, y1, x2, y2], "id": 3}]}

  ``id`` is optional (kept for reference only; identity comes from box association). Boxes are in the
  coordinates the prompt states (:data:`BOX_FORMATS`).
* ``verify_motion`` (appearance → motion): frames in time order + a target description →
  :data:`MOTION_SCHEMA` ``{"direction": "up-right" | … | "stationary", "speed": "slow" | "moderate" | "fast"}``.
* ``verify_appearance`` (motion → appearance): crops at the target's trajectory boxes →
  :data:`APPEARANCE_SCHEMA` ``{"category": "person", "attributes": ["red coat"]}``.

Parsing is lenient about the wrapping (a ```` ```json ```` fence or prose around one JSON object) and
strict about the content: every violation raises :class:`ReplyFormatError` naming the field, which the
caller turns into a retry and finally a recorded failure. The JSON Schemas are also sent as the
``response_format`` of OpenAI-compatible servers that support guided decoding (vLLM).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from tvau_lightning.builder.geometry import DIRECTIONS, SPEED_CLASSES

#: how the annotator writes box coordinates: pixels of the image it was sent, or normalised to 0–1000 / 0–1
BoxFormat = Literal["pixels", "normalized_1000", "normalized_1"]
BOX_FORMATS: tuple[str, ...] = ("pixels", "normalized_1000", "normalized_1")
MAX_OBJECTS = 50
MAX_ATTRIBUTES = 8
MAX_TEXT = 80
#: a box may overshoot the image by this fraction of its side (then it is clipped); more is an error
BOX_TOLERANCE = 0.02

FRAME_OBJECTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "objects": {
            "type": "array",
            "maxItems": MAX_OBJECTS,
            "items": {
                "type": "object",
                "properties": {
                    "category": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                    "attributes": {
                        "type": "array",
                        "maxItems": MAX_ATTRIBUTES,
                        "items": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                    },
                    "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                    "id": {"type": ["integer", "string"]},
                },
                "required": ["category", "attributes", "box"],
            },
        }
    },
    "required": ["objects"],
}
MOTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "direction": {"type": "string", "enum": [*DIRECTIONS, "stationary"]},
        "speed": {"type": "string", "enum": list(SPEED_CLASSES)},
    },
    "required": ["direction"],
}
APPEARANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        "attributes": {
            "type": "array",
            "maxItems": MAX_ATTRIBUTES,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        },
    },
    "required": ["category", "attributes"],
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "frame_objects": FRAME_OBJECTS_SCHEMA,
    "verify_motion": MOTION_SCHEMA,
    "verify_appearance": APPEARANCE_SCHEMA,
}
#: bumped whenever a prompt or a parsing rule changes (part of the resume fingerprint)
PROMPT_VERSION = 1

SYSTEM_PROMPT = (
    "You are a precise visual annotator for video-anomaly research. You answer with one JSON object that "
    "follows the requested schema exactly, with no other text."
)


class ReplyFormatError(ValueError):
    """An annotator reply that is not the requested JSON (the message names the problem)."""


@dataclass
class DetectedObject:
    """One object of a ``frame_objects`` reply, with its box in the *video's* pixel coordinates."""

    category: str
    attributes: list[str]
    box: tuple[float, float, float, float]
    object_id: int | str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"category": self.category, "attributes": list(self.attributes), "box": list(self.box)}
        if self.object_id is not None:
            out["id"] = self.object_id
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DetectedObject:
        return cls(obj["category"], list(obj["attributes"]), tuple(float(v) for v in obj["box"]), obj.get("id"))


@dataclass
class MotionReply:
    """A ``verify_motion`` reply."""

    direction: str
    speed: str | None = None


@dataclass
class AppearanceReply:
    """A ``verify_appearance`` reply."""

    category: str
    attributes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- prompts
def _box_rule(box_format: str, width: int, height: int) -> str:
    if box_format == "pixels":
        return (f"The image is {width}x{height} pixels (width x height). \"box\" is [x1, y1, x2, y2] in pixels of "
                f"this image: x1 < x2 <= {width}, y1 < y2 <= {height}, origin at the top-left corner.")
    if box_format == "normalized_1000":
        return ("\"box\" is [x1, y1, x2, y2] normalised to 0-1000 (0 = left/top edge, 1000 = right/bottom edge), "
                "x1 < x2, y1 < y2.")
    if box_format == "normalized_1":
        return "\"box\" is [x1, y1, x2, y2] as fractions 0-1 of the image width/height, x1 < x2, y1 < y2."
    raise ValueError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")


def frame_objects_prompt(width: int, height: int, box_format: str = "pixels", *, focused: bool = False) -> str:
    """The frame-level structured prompt (paper §3.3 step 1; ``focused`` adds the anomaly-focused note of step 2)."""
    example = {"objects": [{"category": "person", "attributes": ["red coat", "black trousers", "running"],
                            "box": [10, 20, 60, 140]}]}
    lines = [
        "List every person, vehicle and other object that moves or could move in this video frame.",
        "For each object give its category (one or two words, e.g. person, car, bicycle, motorcycle, "
        "skateboard), its visible attributes (short phrases: clothing and colours, carried items, posture, action) "
        "and its bounding box.",
        _box_rule(box_format, width, height),
        "Reply with JSON only, following this schema:",
        json.dumps(FRAME_OBJECTS_SCHEMA, separators=(",", ":")),
        "Example: " + json.dumps(example),
        'If there is no such object, reply {"objects": []}.',
    ]
    if focused:
        lines.insert(0, "Everything outside the region of interest is blurred on purpose. Describe only the sharp, "
                        "unblurred object(s); ignore blurred content.")
    return "\n".join(lines)


def motion_prompt(description: str, frame_numbers: list[int]) -> str:
    """Appearance → motion: ask the direction of the described target across frames in time order."""
    numbers = ", ".join(str(f) for f in frame_numbers)
    return "\n".join([
        f"The {len(frame_numbers)} images are frames {numbers} of one video, in time order.",
        f"Consider this target: {description}.",
        "In which overall direction does it move across the frames (in image terms: up = toward the top of "
        "the image), and how fast?",
        "Reply with JSON only, following this schema:",
        json.dumps(MOTION_SCHEMA, separators=(",", ":")),
        'Example: {"direction": "up-left", "speed": "slow"}. Use "stationary" if it does not move.',
    ])


def appearance_prompt(num_crops: int) -> str:
    """Motion → appearance: ask what the object at the trajectory's boxes is and looks like."""
    what = "image shows a crop" if num_crops == 1 else f"{num_crops} images show crops"
    return "\n".join([
        f"The {what} of one video around one object at different moments.",
        "What is the object at the centre of the crop(s), and what does it look like?",
        "Reply with JSON only, following this schema:",
        json.dumps(APPEARANCE_SCHEMA, separators=(",", ":")),
        'Example: {"category": "person", "attributes": ["white top", "grey shorts", "green backpack"]}',
    ])


# --------------------------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in an annotator reply: the whole text, a fenced block, or the first ``{…}`` object.

    Raises:
        ReplyFormatError: no JSON object can be decoded.
    """
    if not isinstance(text, str):
        raise ReplyFormatError(f"expected a text reply, got {type(text).__name__}")
    stripped = text.strip()
    candidates = [stripped]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(stripped)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    for match in re.finditer(r"[{\[]", stripped):
        try:
            value, _ = decoder.raw_decode(stripped[match.start():])
            return value
        except json.JSONDecodeError:
            continue
    preview = stripped[:120].replace("\n", " ")
    raise ReplyFormatError(f"the reply holds no JSON object: {preview!r}{'…' if len(stripped) > 120 else ''}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReplyFormatError(f"{where} must be a non-empty string, got {value!r}")
    text = " ".join(value.split())
    if len(text) > MAX_TEXT:
        raise ReplyFormatError(f"{where} is longer than {MAX_TEXT} characters: {text[:40]!r}…")
    return text


def _attributes(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ReplyFormatError(f"{where} must be a list of strings, got {value!r}")
    if len(value) > MAX_ATTRIBUTES:
        raise ReplyFormatError(f"{where} has {len(value)} entries; at most {MAX_ATTRIBUTES} are allowed")
    out: list[str] = []
    for i, item in enumerate(value):
        text = _text(item, f"{where}[{i}]").lower()
        if text not in out:
            out.append(text)
    return out


def _box(value: Any, where: str, width: int, height: int, box_format: str) -> tuple[float, float, float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ReplyFormatError(f"{where} must be [x1, y1, x2, y2] (four numbers), got {value!r}")
    scale = {"pixels": (1.0, 1.0), "normalized_1000": (width / 1000.0, height / 1000.0),
             "normalized_1": (float(width), float(height))}[box_format]
    x1, y1, x2, y2 = (float(v) for v in value)
    x1, x2 = x1 * scale[0], x2 * scale[0]
    y1, y2 = y1 * scale[1], y2 * scale[1]
    if not (x1 < x2 and y1 < y2):
        raise ReplyFormatError(f"{where} {value!r} is empty or inverted (need x1 < x2 and y1 < y2)")
    tol_x, tol_y = BOX_TOLERANCE * width, BOX_TOLERANCE * height
    if x1 < -tol_x or y1 < -tol_y or x2 > width + tol_x or y2 > height + tol_y:
        raise ReplyFormatError(
            f"{where} {value!r} lies outside the {width}x{height} image"
            + ("" if box_format == "pixels" else f" (coordinates read as {box_format})")
        )
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if not (x1 < x2 and y1 < y2):
        raise ReplyFormatError(f"{where} {value!r} has no area inside the {width}x{height} image")
    return x1, y1, x2, y2


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReplyFormatError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def parse_frame_objects(
    text: str, width: int, height: int, box_format: str = "pixels", *, scale_to: tuple[int, int] | None = None
) -> list[DetectedObject]:
    """Parse and validate a ``frame_objects`` reply about an image of ``width`` × ``height`` pixels.

    Args:
        text: the raw reply.
        width, height: the size of the image the annotator saw (its box coordinates refer to it).
        box_format: how the boxes are written (:data:`BOX_FORMATS`).
        scale_to: ``(H, W)`` of the video frame the image was made from; boxes are rescaled to it.

    Raises:
        ReplyFormatError: anything that does not follow :data:`FRAME_OBJECTS_SCHEMA` (a wrong type, a missing
            field, a box outside the image by more than :data:`BOX_TOLERANCE`, more than :data:`MAX_OBJECTS`).
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box_format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")
    value = extract_json(text)
    if isinstance(value, list):  # a bare list of objects is accepted as {"objects": [...]}
        value = {"objects": value}
    value = _object(value, "the reply")
    if "objects" not in value:
        raise ReplyFormatError(f"the reply has no 'objects' field (fields: {sorted(value)[:6]})")
    objects = value["objects"]
    if not isinstance(objects, list):
        raise ReplyFormatError(f"'objects' must be a list, got {type(objects).__name__}")
    if len(objects) > MAX_OBJECTS:
        raise ReplyFormatError(f"'objects' has {len(objects)} entries; at most {MAX_OBJECTS} are allowed")
    sx = sy = 1.0
    if scale_to is not None:
        sy, sx = scale_to[0] / height, scale_to[1] / width
    out = []
    for i, raw in enumerate(objects):
        where = f"objects[{i}]"
        obj = _object(raw, where)
        for key in ("category", "attributes", "box"):
            if key not in obj:
                raise ReplyFormatError(f"{where} has no '{key}' field")
        category = _text(obj["category"], f"{where}.category").lower()
        attributes = _attributes(obj["attributes"], f"{where}.attributes")
        x1, y1, x2, y2 = _box(obj["box"], f"{where}.box", width, height, box_format)
        object_id = obj.get("id")
        if object_id is not None and (isinstance(object_id, bool) or not isinstance(object_id, (int, str))):
            raise ReplyFormatError(f"{where}.id must be an integer or a string, got {object_id!r}")
        out.append(DetectedObject(category, attributes, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), object_id))
    return out


_VERTICAL = {"up": "up", "upward": "up", "upwards": "up", "upper": "up", "top": "up", "north": "up",
             "down": "down", "downward": "down", "downwards": "down", "lower": "down", "bottom": "down",
             "south": "down"}
_HORIZONTAL = {"left": "left", "leftward": "left", "leftwards": "left", "west": "left",
               "right": "right", "rightward": "right", "rightwards": "right", "east": "right"}
_STILL = {"stationary", "static", "still", "none", "motionless", "stopped", "stands", "standing"}


def normalize_direction(text: str) -> str:
    """A direction phrase → one of :data:`~tvau_lightning.builder.geometry.DIRECTIONS` or ``stationary``
    (``up and to the right``, ``upper_right``, ``right-up`` → ``up-right``); the input itself when unknown."""
    words = re.findall(r"[a-z]+", text.lower())
    vertical = next((_VERTICAL[w] for w in words if w in _VERTICAL), None)
    horizontal = next((_HORIZONTAL[w] for w in words if w in _HORIZONTAL), None)
    if vertical and horizontal:
        return f"{vertical}-{horizontal}"
    if vertical or horizontal:
        return str(vertical or horizontal)
    if _STILL & set(words) or ("not" in words and "moving" in words):
        return "stationary"
    return text.strip().lower()


def parse_motion(text: str) -> MotionReply:
    """Parse and validate a ``verify_motion`` reply (:data:`MOTION_SCHEMA`); ``direction`` is normalised with
    :func:`normalize_direction`."""
    obj = _object(extract_json(text), "the reply")
    if "direction" not in obj:
        raise ReplyFormatError("the reply has no 'direction' field")
    raw = _text(obj["direction"], "direction").lower()
    direction = normalize_direction(raw)
    if direction not in (*DIRECTIONS, "stationary"):
        raise ReplyFormatError(f"direction must be one of {', '.join((*DIRECTIONS, 'stationary'))}, got {raw!r}")
    speed = obj.get("speed")
    if speed is not None:
        speed = _text(speed, "speed").lower()
        speed = {"medium": "moderate", "normal": "moderate", "quick": "fast", "rapid": "fast"}.get(speed, speed)
        if speed not in SPEED_CLASSES:
            raise ReplyFormatError(f"speed must be one of {', '.join(SPEED_CLASSES)}, got {obj['speed']!r}")
    return MotionReply(direction, speed)


def parse_appearance(text: str) -> AppearanceReply:
    """Parse and validate a ``verify_appearance`` reply (:data:`APPEARANCE_SCHEMA`)."""
    obj = _object(extract_json(text), "the reply")
    for key in ("category", "attributes"):
        if key not in obj:
            raise ReplyFormatError(f"the reply has no '{key}' field")
    return AppearanceReply(_text(obj["category"], "category").lower(), _attributes(obj["attributes"], "attributes"))


# --------------------------------------------------------------------------------------------- categories
#: category words → a coarse group used to compare categories (association, verification)
CATEGORY_GROUPS: dict[str, str] = {
    **dict.fromkeys(("person", "people", "man", "woman", "men", "women", "pedestrian", "human", "child", "kid",
                     "boy", "girl", "adult", "walker", "runner", "student", "worker", "individual", "figure"),
                    "person"),
    **dict.fromkeys(("car", "vehicle", "truck", "van", "bus", "suv", "taxi", "jeep", "automobile", "sedan",
                     "pickup", "lorry", "cart", "tricycle"), "vehicle"),
    **dict.fromkeys(("bicycle", "bike", "cyclist", "biker"), "bicycle"),
    **dict.fromkeys(("motorcycle", "motorbike", "scooter", "moped", "motorcyclist"), "motorcycle"),
    **dict.fromkeys(("skateboard", "skateboarder", "skater", "longboard"), "skateboard"),
    **dict.fromkeys(("dog", "cat", "animal", "bird", "horse"), "animal"),
    **dict.fromkeys(("fire", "flame", "flames", "smoke"), "fire"),
    **dict.fromkeys(("stroller", "pram", "wheelchair", "trolley"), "stroller"),
}
#: groups that may describe the same target (a rider is a person; a cyclist is a bicycle)
COMPATIBLE_GROUPS: frozenset[frozenset[str]] = frozenset({
    frozenset({"person", "bicycle"}), frozenset({"person", "skateboard"}), frozenset({"person", "motorcycle"}),
    frozenset({"person", "stroller"}), frozenset({"motorcycle", "bicycle"}), frozenset({"vehicle", "motorcycle"}),
})


def category_group(category: str) -> str:
    """The coarse group of a category phrase: the last known word decides (``young man`` → ``person``);
    an unknown phrase is its own last word with a plural ``s`` removed."""
    words = re.findall(r"[a-z]+", category.lower())
    if not words:
        return category.lower()
    for word in reversed(words):
        if word in CATEGORY_GROUPS:
            return CATEGORY_GROUPS[word]
        if word.endswith("s") and word[:-1] in CATEGORY_GROUPS:
            return CATEGORY_GROUPS[word[:-1]]
    last = words[-1]
    return last[:-1] if last.endswith("s") and len(last) > 3 else last


def categories_agree(a: str, b: str) -> bool:
    """Whether two category phrases may name the same target (same or compatible group)."""
    ga, gb = category_group(a), category_group(b)
    return ga == gb or frozenset({ga, gb}) in COMPATIBLE_GROUPS
