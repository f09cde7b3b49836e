"""An annotator behind an OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, hosted APIs).

Plain standard library (``urllib.request`` + ``json``): ``POST {base_url}/chat/completions`` with the system
message and one user message holding the prompt text and each image as a base64 ``data:`` URL. The API key,
if any, is read from an environment variable (never from a file or the command line) and sent as
``Authorization: Bearer …``; the key's value is removed from every reply and error message before anything
else sees it (servers echo it in errors), so it can reach no file the builder writes. A :class:`RateLimiter` spaces requests; the caller
(:func:`~tvau_lightning.builder.annotators.query_structured`) retries what :class:`OpenAIChatAnnotator`
reports as transient.

Examples of ``base_url``: vLLM ``http://localhost:8000/v1``; Ollama ``http://localhost:11434/v1``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from PIL import Image

from tvau_lightning.builder.annotators import (
    Annotator,
    AnnotatorConfigError,
    AnnotatorRequest,
    AnnotatorRequestError,
    AnnotatorTransientError,
)

JsonMode = Literal["none", "json_object", "json_schema"]


class RateLimiter:
    """Spaces calls: at least ``min_interval`` seconds apart and at most ``max_per_minute`` in any 60 s.

    Thread-safe; ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, min_interval: float = 0.0, max_per_minute: int | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0, got {min_interval}")
        if max_per_minute is not None and max_per_minute < 1:
            raise ValueError(f"max_per_minute must be >= 1 or None, got {max_per_minute}")
        self.min_interval = float(min_interval)
        self.max_per_minute = max_per_minute
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._last: float | None = None

    def wait(self) -> float:
        """Block until a call is allowed; record it. Returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = now
            if self._last is not None and self.min_interval > 0:
                now = max(now, self._last + self.min_interval)
            if self.max_per_minute is not None:
                while self._recent and self._recent[0] <= now - 60.0:
                    self._recent.popleft()
                if len(self._recent) >= self.max_per_minute:
                    now = max(now, self._recent[0] + 60.0)
                    while self._recent and self._recent[0] <= now - 60.0:
                        self._recent.popleft()
            waited = now - start
            if waited > 0:
                self._sleep(waited)
            self._last = now
            self._recent.append(now)
            return waited


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 90) -> str:
    """An RGB ``(H, W, 3)`` uint8 image as a ``data:image/…;base64,…`` URL."""
    buffer = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image))
    if image_format == "png":
        pil.save(buffer, format="PNG")
        mime = "image/png"
    elif image_format == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def fitted_size(height: int, width: int, max_side: int | None, multiple: int | None = None) -> tuple[int, int]:
    """``(H, W)`` after :func:`fit_image`: the longer side at most ``max_side`` (aspect kept, never upscaled), then
    each side rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    if multiple:
        height = max(multiple, round(height / multiple) * multiple)
        width = max(multiple, round(width / multiple) * multiple)
    return int(height), int(width)


def fit_image(image: np.ndarray, max_side: int | None, multiple: int | None = None) -> np.ndarray:
    """Resize an ``(H, W, 3)`` image to :func:`fitted_size` (returned as is when the size does not change)."""
    height, width = image.shape[:2]
    size = fitted_size(height, width, max_side, multiple)
    if size == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


class OpenAIChatAnnotator(Annotator):
    """An OpenAI-compatible ``/chat/completions`` endpoint as annotator.

    Args:
        base_url: the API root, e.g. ``http://localhost:8000/v1`` (``/chat/completions`` is appended).
        model: the model name the server knows (``Qwen/Qwen2.5-VL-7B-Instruct``, ``qwen2.5vl:7b`` …).
        api_key_env: environment variable holding the API key; ``None`` or unset → no ``Authorization`` header.
        timeout: seconds to wait for one reply.
        min_interval: at least this many seconds between requests (rate limit).
        max_requests_per_minute: at most this many requests in any 60 s (rate limit).
        max_concurrency: requests in flight at once (servers batch them).
        temperature: sampling temperature (0 = greedy, reproducible on most servers).
        max_tokens: reply budget.
        max_image_side: images are downscaled so their longer side is at most this (``None`` = as is).
        size_multiple: round the sent image's sides to multiples of this (28 for Qwen2.5-VL, whose server would
            otherwise resize again, so that boxes in its pixels map back exactly); ``None`` = no rounding.
        image_format: ``jpeg`` (small) or ``png`` (lossless).
        json_mode: ``none``, ``json_object`` (``response_format={"type": "json_object"}``) or ``json_schema``
            (the question's schema as ``response_format``; vLLM enforces it with guided decoding).
        extra_body: extra request fields (``{"top_p": 1}``, vLLM's ``{"guided_json": …}`` …).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        min_interval: float = 0.0,
        max_requests_per_minute: int | None = None,
        max_concurrency: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        max_image_side: int | None = 768,
        size_multiple: int | None = None,
        image_format: str = "jpeg",
        json_mode: JsonMode = "none",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AnnotatorConfigError(f"base_url must start with http:// or https://, got {base_url!r} "
                                       "(e.g. http://localhost:8000/v1 for vLLM)")
        if not model:
            raise AnnotatorConfigError("model must name the model the server serves (e.g. Qwen/Qwen2.5-VL-7B-Instruct)")
        if json_mode not in ("none", "json_object", "json_schema"):
            raise AnnotatorConfigError(f"json_mode must be none, json_object or json_schema, got {json_mode!r}")
        if image_format not in ("jpeg", "png"):
            raise AnnotatorConfigError(f"image_format must be jpeg or png, got {image_format!r}")
        if max_concurrency < 1:
            raise AnnotatorConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.rate_limiter = RateLimiter(min_interval, max_requests_per_minute)
        self.max_concurrency = int(max_concurrency)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.max_image_side = max_image_side
        self.size_multiple = size_multiple
        self.image_format = image_format
        self.json_mode = json_mode
        self.extra_body = dict(extra_body or {})

    def sent_size(self, image: np.ndarray) -> tuple[int, int]:
        """``(H, W)`` of the image as it will be sent (:func:`fitted_size`)."""
        return fitted_size(int(image.shape[0]), int(image.shape[1]), self.max_image_side, self.size_multiple)

    def _api_key(self) -> str | None:
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def redact(self, text: str) -> str:
        """``text`` without the API key's value (replaced by ``[API key redacted]``)."""
        key = self._api_key()
        return text.replace(key, "[API key redacted]") if key and len(key) >= 4 else text

    def _server_message(self, body: bytes) -> str:
        """The error text of a reply body: ``error.message`` of an OpenAI-style JSON error, else the first
        300 characters; the API key redacted."""
        text = body.decode("utf-8", "replace")
        try:
            error = json.loads(text).get("error")
            message = error.get("message") if isinstance(error, dict) else error
            if isinstance(message, str) and message.strip():
                text = message
        except (ValueError, AttributeError):
            pass
        return self.redact(" ".join(text.split())[:300])

    def build_payload(self, request: AnnotatorRequest) -> dict[str, Any]:
        """The JSON body of the chat-completions request."""
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            url = encode_image(fit_image(image, self.max_image_side, self.size_multiple), self.image_format)
            content.append({"type": "image_url", "image_url": {"url": url}})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": content})
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                   "max_tokens": self.max_tokens}
        if self.json_mode == "json_object":
            payload["response_format"] = {"type": "json_object"}
        elif self.json_mode == "json_schema" and request.schema is not None:
            payload["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": request.task, "schema": request.schema}}
        payload.update(self.extra_body)
        return payload

    def complete(self, request: AnnotatorRequest) -> str:
        body = json.dumps(self.build_payload(request)).encode("utf-8")
        http_request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        self.rate_limiter.wait()
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = self._server_message(err.read(4096)) if err.fp is not None else ""
            status = err.code
            if status in (401, 403):
                if not self.api_key_env:
                    where = "no API key (api_key_env unset)"
                elif self._api_key():
                    where = f"the key in ${self.api_key_env}"
                else:
                    where = f"no API key (${self.api_key_env} is not set)"
                raise AnnotatorConfigError(
                    f"{self.url} refused the request with HTTP {status}: {detail or '(no message)'} — sent {where}; "
                    "set the right key in that environment variable"
                ) from err
            lowered = detail.lower()
            if status == 404 or (status == 400 and "model" in lowered
                                 and ("not found" in lowered or "does not exist" in lowered)):
                raise AnnotatorConfigError(
                    f"{self.url} answered HTTP {status}: {detail or '(no message)'} — check that the server serves "
                    f"model {self.model!r} (--model) and base_url (it should end in /v1 for vLLM and Ollama)"
                ) from err
            if status == 429 or status >= 500:
                retry_after = err.headers.get("Retry-After") if err.headers else None
                try:
                    seconds = float(retry_after) if retry_after is not None else None
                except ValueError:
                    seconds = None
                raise AnnotatorTransientError(f"HTTP {status} from {self.url}: {detail}", seconds) from err
            raise AnnotatorRequestError(f"HTTP {status} from {self.url}: {detail}") from err
        except TimeoutError as err:
            raise AnnotatorTransientError(f"no reply from {self.url} within {self.timeout:g} s") from err
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                raise AnnotatorTransientError(f"no reply from {self.url} within {self.timeout:g} s") from err
            raise AnnotatorTransientError(f"cannot reach {self.url}: {err.reason}") from err
        except (ConnectionError, OSError) as err:
            raise AnnotatorTransientError(f"connection to {self.url} failed: {err}") from err
        raw = self.redact(raw.decode("utf-8", "replace")).encode("utf-8") if isinstance(raw, bytes) else raw
        try:
            payload = json.loads(raw)
            message = payload["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            preview = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:200]
            raise AnnotatorTransientError(f"{self.url} sent a body that is not a chat completion: {preview!r}") from err
        if isinstance(content, list):  # some servers return content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise AnnotatorTransientError(f"{self.url} sent a chat completion without text content")
        return content

    def describe(self) -> dict[str, Any]:
        return {"type": "openai", "base_url": self.base_url, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "max_image_side": self.max_image_side, "size_multiple": self.size_multiple,
                "image_format": self.image_format, "json_mode": self.json_mode, "extra_body": self.extra_body}
