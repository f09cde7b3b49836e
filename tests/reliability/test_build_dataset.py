"""``tvau build-dataset`` against a broken annotator server (a fake OpenAI-compatible server on 127.0.0.1):
every case asserts the exit code, the message, what was written, and that a rerun asks only what failed."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tvau_lightning.commands.build_dataset import build_dataset_main

KEY = "sk-test-0123456789abcdef-SECRET"
EMPTY = json.dumps({"objects": []})


class FakeServer:
    """POST /v1/chat/completions answered by ``respond(index, headers) -> (status, body)``, one call per request
    (threaded, self-stopping after 60 s)."""

    def __init__(self, respond, port=0):
        self.respond = respond
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append(dict(self.headers))
                status, body = server.respond(len(server.requests) - 1, dict(self.headers))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(60.0, self.httpd.shutdown)
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


def completion(content):
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})


def always(status, body):
    return lambda index, headers: (status, body)


def videos(tmp_path):
    """Two normal 4-frame videos as frame folders (2 frames asked each: 2 questions per video)."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        folder = root / "videos" / name
        folder.mkdir(parents=True)
        for t in range(4):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"{t:03d}.png")
    (root / "labels.json").write_text(json.dumps({"a": 0, "b": 0}))
    return root


def run(root, out, url, *extra):
    return build_dataset_main(["--source", "folder", "--root", str(root), "--fps", "4", "--annotator", "openai",
                               "--base-url", url, "--model", "served-model", "--api-key-env", "TVAU_TEST_KEY",
                               "--sample-fps", "2", "--max-frames-per-video", "2", "--verify", "none",
                               "--attempts", "2", "--backoff", "0", "--no-progress", "--dense-records", "--out", str(out),
                               *extra])


def done_videos(out):
    """Ids of the videos in the work folder and in phase_b.jsonl (a normal clip always gets its record)."""
    work = sorted(p.stem for p in (out / "work").glob("*/*.json"))
    lines = (out / "phase_b.jsonl").read_text().splitlines() if (out / "phase_b.jsonl").exists() else []
    return work, sorted(json.loads(line)["video_id"] for line in lines)


def no_key_anywhere(out, *texts):
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.lower() not in path.read_text(errors="replace").lower(), path
    for text in texts:
        assert KEY.lower() not in text.lower()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TVAU_TEST_KEY", KEY)


def test_server_down_fails_every_video_and_the_rerun_retries_them(tmp_path, capsys):
    root, out = videos(tmp_path), tmp_path / "out"
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert run(root, out, url) == 1
    err = capsys.readouterr().err
    assert (f"tvau build-dataset: 2 of 2 video(s) failed and are not in the dataset; first: custom/a: unanswered "
            f"frame_objects question: cannot reach {url}/chat/completions:") in err
    assert "Connection refused" in err and "asks only the failed videos again" in err
    assert done_videos(out) == ([], [])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 0, 2)
    assert [f["video_id"] for f in summary["failed_videos"]] == ["a", "b"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["video_id"], f["error_kind"], f["attempts"]) for f in failures] == [("a", "transient", 2),
                                                                                   ("b", "transient", 2)]
    with FakeServer(lambda i, h: completion(EMPTY), port) as server:  # the server is back: both are asked again
        assert run(root, out, server.url) == 0
        assert len(server.requests) == 4
        assert done_videos(out) == (["a", "b"], ["a", "b"])
        assert run(root, out, server.url) == 0  # nothing failed any more: no request at all
        assert len(server.requests) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 2, 0)


@pytest.mark.parametrize("respond, message", [
    (always(500, "internal error"), "HTTP 500 from {url}/chat/completions: internal error"),
    (always(200, "<html>oops</html>"), "{url}/chat/completions sent a body that is not a chat completion: "
                                       "'<html>oops</html>'"),
], ids=["http500", "garbage"])
def test_failed_questions_fail_their_video_and_only_it_is_asked_again(tmp_path, capsys, respond, message):
    root, out = videos(tmp_path), tmp_path / "out"
    # video a is answered (requests 0 and 1), every request about video b fails
    with FakeServer(lambda i, h: completion(EMPTY) if i < 2 else respond(i, h)) as server:
        assert run(root, out, server.url) == 1
        assert len(server.requests) == 2 + 2  # b's first question, 2 attempts; its second question is not asked
        err = capsys.readouterr().err
        first = message.format(url=server.url)
        assert (f"1 of 2 video(s) failed and are not in the dataset; first: custom/b: unanswered frame_objects "
                f"question: {first}") in err
        assert done_videos(out) == (["a"], ["a"])
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["done"], summary["skipped"], summary["failed"]) == (1, 0, 1)
        assert summary["failed_videos"][0]["error"] == f"unanswered frame_objects question: {first}"
        server.respond = lambda i, h: completion(EMPTY)  # the server is fixed
        assert run(root, out, server.url) == 0
        assert len(server.requests) == 4 + 2  # only video b's two questions
    assert done_videos(out) == (["a", "b"], ["a", "b"])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (1, 1, 0)


@pytest.mark.parametrize("status, body, message", [
    (401, {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}},
     "refused the request with HTTP 401: Incorrect API key provided: [API key redacted] — sent the key in "
     "$TVAU_TEST_KEY; set the right key in that environment variable"),
    (403, {"error": "forbidden"}, "refused the request with HTTP 403: forbidden — sent the key in $TVAU_TEST_KEY"),
    (404, {"error": {"message": "The model `served-model` does not exist.", "type": "NotFoundError", "code": 404}},
     "answered HTTP 404: The model `served-model` does not exist. — check that the server serves model "
     "'served-model' (--model)"),
    (400, {"error": {"message": "model 'served-model' not found, try pulling it first"}},
     "answered HTTP 400: model 'served-model' not found, try pulling it first — check that the server serves model"),
], ids=["401", "403", "404-model", "400-model-not-found"])
def test_configuration_errors_stop_at_the_first_request(tmp_path, capsys, status, body, message):
    root, out = videos(tmp_path), tmp_path / "out"
    with FakeServer(always(status, json.dumps(body))) as server:
        assert run(root, out, server.url) == 1
        assert len(server.requests) == 1  # no retry, no second video
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [f"tvau build-dataset stopped: {server.url}/chat/completions {message}"] or (
        len(lines) == 1 and lines[0].startswith(f"tvau build-dataset stopped: {server.url}/chat/completions {message}"))
    assert captured.out == ""
    assert done_videos(out) == ([], [])
    assert not (out / "summary.json").exists()
    no_key_anywhere(out, captured.err, captured.out)


def test_the_api_key_never_reaches_a_file_even_when_the_server_echoes_it(tmp_path, capsys):
    root, out = videos(tmp_path), tmp_path / "out"

    def echo(index, headers):
        sent = headers["Authorization"].removeprefix("Bearer ")
        assert sent == KEY  # the key is sent to the server...
        if index < 2:  # ...which puts it in video a's answers
            return completion(json.dumps({"objects": [{"category": sent, "attributes": [sent],
                                                       "box": [2, 2, 12, 12]}]}))
        return 500, json.dumps({"error": {"message": f"overloaded, your key {sent} is rate limited"}})

    with FakeServer(echo) as server:
        assert run(root, out, server.url) == 1
    captured = capsys.readouterr()
    no_key_anywhere(out, captured.err, captured.out)
    assert "overloaded, your key [API key redacted] is rate limited" in captured.err
    assert "[API key redacted]" in (out / "failures.jsonl").read_text()
    # the answer, redacted (categories are lower-cased by the reply parser)
    assert "[api key redacted]" in (out / "work" / "custom" / "a.json").read_text().lower()
    assert "[api key redacted]" in (out / "phase_a.jsonl").read_text().lower()


@pytest.mark.parametrize("option, value, message", [
    ("--fps", "0", "argument --fps: must be a finite number > 0, got '0'"),
    ("--fps", "nan", "argument --fps: must be a finite number, got 'nan'"),
    ("--sample-fps", "-2", "argument --sample-fps: must be a finite number > 0, got '-2'"),
    ("--max-image-side", "-5", "argument --max-image-side: must be a whole number >= 1, got '-5'"),
    ("--concurrency", "0", "argument --concurrency: must be a whole number >= 1, got '0'"),
    ("--timeout", "inf", "argument --timeout: must be a finite number, got 'inf'"),
    ("--val-fraction", "1.5", "argument --val-fraction: must be a number between 0 and 1 (exclusive), got '1.5'"),
])
def test_numeric_options_are_checked_before_any_work(tmp_path, capsys, option, value, message):
    root, out = videos(tmp_path), tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run(root, out, "http://127.0.0.1:9/v1", option, value)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"tvau build-dataset: error: {message}"
    assert not out.exists()


def test_numeric_values_from_a_config_file_are_checked_too(tmp_path, capsys):
    config = tmp_path / "builder.yaml"
    config.write_text("source: folder\nfps: 0\n")
    with pytest.raises(SystemExit) as exit_info:
        build_dataset_main(["--config", str(config), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tvau build-dataset: error: --config {config}: fps: must be a finite number > 0, got '0'")
