"""The OpenAI-compatible HTTP annotator against a small fake server on 127.0.0.1 (threaded, bounded, self-stopping)."""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.builder.annotators import (
    AnnotatorConfigError,
    AnnotatorRequest,
    RetryPolicy,
    query_structured,
)
from tvau_lightning.builder.openai_http import OpenAIChatAnnotator, RateLimiter, fit_image, fitted_size
from tvau_lightning.builder.schema import FRAME_OBJECTS_SCHEMA, parse_frame_objects

GOOD = json.dumps({"objects": [{"category": "person", "attributes": ["red coat"], "box": [4, 5, 40, 50]}]})


class FakeServer:
    """Answers POST /v1/chat/completions from a script of behaviours, one per request (the last one repeats):
    ``("ok", content)``, ``("sleep", seconds)``, ``("status", code, body, headers)``, ``("raw", body)``."""

    def __init__(self, script):
        self.script = list(script)
        self.requests = []  # (time, headers, json body)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.requests.append((time.monotonic(), dict(self.headers), body, self.path))
                index = min(len(server.requests) - 1, len(server.script) - 1)
                behaviour = server.script[index]
                if self.path != "/v1/chat/completions":
                    behaviour = ("status", 404, "no such route", {})
                if behaviour[0] == "sleep":
                    time.sleep(behaviour[1])
                    behaviour = ("ok", GOOD)
                if behaviour[0] == "ok":
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": behaviour[1]}}]})
                    self._send(200, payload.encode(), {})
                elif behaviour[0] == "raw":
                    self._send(200, behaviour[1].encode(), {})
                else:
                    self._send(behaviour[1], behaviour[2].encode(), behaviour[3])

            def _send(self, code, data, headers):
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(60.0, self.httpd.shutdown)  # never outlives a stuck test
        self.watchdog.daemon = True

    def __enter__(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc):
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def frame_request(image=None):
    image = np.zeros((60, 80, 3), np.uint8) if image is None else image
    return AnnotatorRequest("frame_objects", "List the objects.", [image], schema=FRAME_OBJECTS_SCHEMA,
                            meta={"frame": 3})


def parse(text):
    return parse_frame_objects(text, 80, 60)


def no_sleep(_):
    pass


def test_success_payload_images_and_api_key(monkeypatch):
    monkeypatch.setenv("TVAU_TEST_KEY", "s3cret")
    image = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    with FakeServer([("ok", f"```json\n{GOOD}\n```")]) as server:
        annotator = OpenAIChatAnnotator(server.url, "qwen-test", api_key_env="TVAU_TEST_KEY", timeout=5,
                                        max_image_side=400, json_mode="json_schema", extra_body={"top_p": 1})
        outcome = query_structured(annotator, frame_request(image), parse, RetryPolicy(3, 0.0), sleep=no_sleep)
    assert outcome.ok and outcome.attempts == 1
    assert outcome.value[0].category == "person"
    ((_, headers, body, path),) = server.requests
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer s3cret"
    assert body["model"] == "qwen-test" and body["temperature"] == 0.0 and body["top_p"] == 1
    assert body["response_format"]["json_schema"]["schema"] == FRAME_OBJECTS_SCHEMA
    system, user = body["messages"]
    assert system["role"] == "system" and user["content"][0] == {"type": "text", "text": "List the objects."}
    url = user["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (400, 300)  # longer side capped, aspect kept
    assert annotator.sent_size(image) == (300, 400)


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv("TVAU_UNSET_KEY", raising=False)
    with FakeServer([("ok", GOOD)]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", api_key_env="TVAU_UNSET_KEY", image_format="png")
        assert annotator.complete(frame_request()) == GOOD
    headers, body = server.requests[0][1], server.requests[0][2]
    assert "Authorization" not in headers
    assert body["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "response_format" not in body


def test_timeout_is_retried_then_recorded():
    with FakeServer([("sleep", 1.0)]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", timeout=0.2)
        started = time.monotonic()
        outcome = query_structured(annotator, frame_request(), parse, RetryPolicy(2, 0.0), sleep=no_sleep)
        elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.attempts == 2 and outcome.error_kind == "transient"
    assert "no reply" in outcome.error and "0.2 s" in outcome.error
    assert len(server.requests) == 2
    assert elapsed < 1.5  # the client gave up after the timeout, it did not wait for the slow replies


def test_malformed_reply_is_retried_then_recorded():
    with FakeServer([("ok", "I see one person in a red coat.")]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", timeout=5)
        outcome = query_structured(annotator, frame_request(), parse, RetryPolicy(3, 0.0), sleep=no_sleep)
    assert not outcome.ok and outcome.error_kind == "malformed" and outcome.attempts == 3
    assert outcome.raw == "I see one person in a red coat."
    assert len(server.requests) == 3


def test_server_errors_are_retried_and_recover():
    script = [("status", 503, '{"error": "loading"}', {}), ("status", 429, "slow down", {"Retry-After": "0.05"}),
              ("raw", "<html>proxy error</html>"), ("ok", GOOD)]
    waits = []
    with FakeServer(script) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", timeout=5)
        outcome = query_structured(annotator, frame_request(), parse, RetryPolicy(4, 0.01), sleep=waits.append)
    assert outcome.ok and outcome.attempts == 4 and len(server.requests) == 4
    assert waits == [0.01, 0.05, 0.04]  # backoff 0.01, 0.02 raised to Retry-After 0.05, 0.04


def test_request_errors_and_configuration_errors():
    with FakeServer([("status", 400, '{"error": "image too large"}', {})]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", timeout=5)
        outcome = query_structured(annotator, frame_request(), parse, RetryPolicy(3, 0.0), sleep=no_sleep)
    assert (outcome.ok, outcome.error_kind, outcome.attempts) == (False, "request", 1)
    assert "image too large" in outcome.error and len(server.requests) == 1
    with FakeServer([("status", 401, '{"error": "invalid key"}', {})]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", api_key_env="TVAU_TEST_KEY", timeout=5)
        with pytest.raises(AnnotatorConfigError, match=r"HTTP 401.*TVAU_TEST_KEY"):
            query_structured(annotator, frame_request(), parse, sleep=no_sleep)
    with FakeServer([("ok", GOOD)]) as server:
        wrong_root = OpenAIChatAnnotator(server.url.replace("/v1", "/api"), "m", timeout=5)
        with pytest.raises(AnnotatorConfigError, match="404.*base_url"):
            wrong_root.complete(frame_request())
    with pytest.raises(AnnotatorConfigError, match="http://"):
        OpenAIChatAnnotator("localhost:8000/v1", "m")
    with pytest.raises(AnnotatorConfigError, match="json_mode"):
        OpenAIChatAnnotator("http://127.0.0.1:9/v1", "m", json_mode="yaml")


def test_unreachable_server_is_transient():
    with FakeServer([("ok", GOOD)]) as server:
        url = server.url
    annotator = OpenAIChatAnnotator(url, "m", timeout=2)  # the server is closed now
    outcome = query_structured(annotator, frame_request(), parse, RetryPolicy(2, 0.0), sleep=no_sleep)
    assert not outcome.ok and outcome.error_kind == "transient" and "cannot reach" in outcome.error


def test_rate_limit_spaces_real_requests():
    with FakeServer([("ok", GOOD)]) as server:
        annotator = OpenAIChatAnnotator(server.url, "m", timeout=5, min_interval=0.15)
        for _ in range(3):
            annotator.complete(frame_request())
    times = [t for t, *_ in server.requests]
    assert all(b - a >= 0.14 for a, b in zip(times, times[1:]))


def test_rate_limiter_with_a_fake_clock():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(min_interval=0.5, max_per_minute=3, clock=lambda: now[0], sleep=sleep)
    assert limiter.wait() == 0.0
    assert limiter.wait() == 0.5  # too soon after the first
    now[0] += 2.0
    assert limiter.wait() == 0.0  # t = 2.5
    assert limiter.wait() == pytest.approx(57.5)  # a 4th call within the minute waits until t = 60
    assert slept == [0.5, 57.5]
    with pytest.raises(ValueError):
        RateLimiter(min_interval=-1)


def test_fit_image_never_upscales_and_rounds_to_the_grid():
    small = np.zeros((30, 40, 3), np.uint8)
    assert fit_image(small, 100) is small
    assert fit_image(np.zeros((100, 300, 3), np.uint8), 150).shape == (50, 150, 3)
    # 480x856 → longer side 840 → 471x840 → multiples of 28: 476x840
    assert fitted_size(480, 856, 840, 28) == (476, 840)
    assert fit_image(np.zeros((480, 856, 3), np.uint8), 840, 28).shape == (476, 840, 3)
    assert fitted_size(10, 20, None, 28) == (28, 28)
    annotator = OpenAIChatAnnotator("http://127.0.0.1:9/v1", "m", max_image_side=840, size_multiple=28)
    assert annotator.sent_size(np.zeros((480, 856, 3), np.uint8)) == (476, 840)
