"""Fixtures of the report tests: a synthetic analyzed video and a headless Chromium driven over the Chrome
DevTools Protocol (a small client on ``websocket-client``; the browser is the system's, never downloaded).

The video: 48 frames of 96×128 at 12 fps, grey with a faint texture; a red 14×14 "intruder" walks left to
right over frames 12–35 and a second one stands still over frames 30–41. The heatmap model is a stand-in that
marks the 16-px grid cells holding red pixels (0.95, else 0.05); regions and tracks come from the library's own
``metrics.regions`` code, while what they should be is known from the drawing. The frames are handed to the
writer from memory (:class:`ArraySource`, the ``data.video`` reader interface).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

FPS = 12.0
NUM_FRAMES = 48
HEIGHT, WIDTH = 96, 128
SIDE = 14
WALK = (12, 35)  # first and last frame of the walking intruder
STAND = (30, 41)
STAND_XY = (10, 70)  # its top-left corner (x, y)
CELL = 16  # grid cell of the stand-in heatmap model, pixels
#: a stand-in category AHD's classes: the walker is "Arson", the one standing still "Fighting" (it wins where both are)
CATEGORY_NAMES = ["Normal", "Arson", "Fighting"]


def walker_xy(frame: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of the walking intruder at ``frame`` (within :data:`WALK`)."""
    t = (frame - WALK[0]) / (WALK[1] - WALK[0])
    return int(round(8 + t * (WIDTH - SIDE - 16))), 20


def draw_frames() -> np.ndarray:
    """``(N, H, W, 3)`` uint8: the synthetic video."""
    rng = np.random.default_rng(0)
    base = (110 + rng.integers(-6, 7, size=(HEIGHT, WIDTH, 1))).repeat(3, axis=2).astype(np.uint8)
    frames = np.repeat(base[None], NUM_FRAMES, axis=0)
    for f in range(NUM_FRAMES):
        if WALK[0] <= f <= WALK[1]:
            x, y = walker_xy(f)
            frames[f, y:y + SIDE, x:x + SIDE] = (230, 20, 20)
        if STAND[0] <= f <= STAND[1]:
            x, y = STAND_XY
            frames[f, y:y + SIDE, x:x + SIDE] = (230, 20, 20)
    return frames


def redness_grid(frames: np.ndarray) -> np.ndarray:
    """Stand-in AHD: ``(T, H, W, 3)`` uint8 → ``(T, H/16, W/16)`` heatmaps, 0.95 in cells holding red pixels, else
    0.05."""
    x = frames.astype(np.int16)
    red = (x[..., 0] > 160) & (x[..., 1] < 90) & (x[..., 2] < 90)
    t, h, w = red.shape
    return np.where(red.reshape(t, h // CELL, CELL, w // CELL, CELL).any(axis=(2, 4)), 0.95, 0.05).astype(np.float32)


def category_scores() -> np.ndarray:
    """``(N, 3)`` stand-in per-frame class scores: Arson 0.8 while only the walker is there, Fighting 0.9 while the
    other one stands, low elsewhere."""
    out = np.tile(np.array([0.9, 0.05, 0.04]), (NUM_FRAMES, 1))
    out[WALK[0]:WALK[1] + 1] = (0.2, 0.8, 0.1)
    out[STAND[0]:STAND[1] + 1] = (0.1, 0.3, 0.9)
    return out


@dataclass
class ArraySource:
    """Frames in memory behind the ``data.video`` reader interface."""

    frames: np.ndarray
    path: Path
    fps: float = FPS

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    def read(self, indices) -> torch.Tensor:
        return torch.from_numpy(self.frames[np.asarray(indices)])


@dataclass
class SyntheticAnalysis:
    """The fields of ``report.analyze_report.AnalysisLike``, computed with the library's region code."""

    video: Path
    fps: float
    size: tuple[int, int]
    scores: np.ndarray
    tracks: list
    labels: np.ndarray | None
    grid_heatmaps: torch.Tensor
    threshold: float = 0.5
    info: dict = field(default_factory=dict)
    class_names: list | None = None
    class_scores: np.ndarray | None = None

    def summary(self) -> dict:
        out = {"num_frames": len(self.scores), "max_score": float(self.scores.max()),
               "frames_above_threshold": int((self.scores > 0.5).sum()), "num_tracks": len(self.tracks)}
        if self.class_names is not None:
            above = self.scores > 0.5
            ranking = sorted(({"name": name, "score": float(self.class_scores[above, k].mean()),
                               "frames": int((self.class_scores[above, 1:].argmax(1) + 1 == k).sum())}
                              for k, name in enumerate(self.class_names) if k), key=lambda r: -r["score"])
            out.update({"top_category": ranking[0]["name"], "categories": ranking, "category_basis": "above_threshold"})
        return out

    def frame_heatmaps(self, indices) -> torch.Tensor:
        grid = self.grid_heatmaps[np.asarray(indices)][:, None]
        return F.interpolate(grid, size=self.size, mode="bilinear", align_corners=False)[:, 0]


def synthetic_analysis(video: Path, frames: np.ndarray, categories: bool = False) -> SyntheticAnalysis:
    from tvau_lightning.metrics.regions import heatmap_to_detections, link_boxes
    from tvau_lightning.report import ReportTrack

    grid = redness_grid(frames)
    rows = heatmap_to_detections(grid, np.arange(len(grid)), (HEIGHT, WIDTH))
    tracks = [ReportTrack(i, t[:, 0].astype(np.int64), t[:, 1:].astype(np.int64), np.full(len(t), 0.95))
              for i, t in enumerate(link_boxes(rows[:, :5].round().astype(np.int64)))]
    labels = np.zeros(len(frames), dtype=np.int64)
    labels[WALK[0]:WALK[1] + 1] = 1
    info = {"ahd_checkpoint": "runs/ahd/best.ckpt", "backbone": "tiny_qwen2_5_vl", "frame_size": [96, 128],
            "clip_len": 8, "device": "cpu", "dtype": "float32"}
    analysis = SyntheticAnalysis(video, FPS, (HEIGHT, WIDTH), grid.reshape(len(grid), -1).max(axis=1).astype(np.float64),
                                 tracks, labels, torch.from_numpy(grid), info=info)
    if categories:
        analysis.class_names, analysis.class_scores = list(CATEGORY_NAMES), category_scores()
        for t in tracks:
            t.category = "Arson" if int(t.frames[0]) == WALK[0] else "Fighting"
    return analysis


@dataclass
class SyntheticReport:
    folder: Path
    page: Path
    analysis: SyntheticAnalysis
    frames: np.ndarray


def build_report(folder: Path, *, heatmap_media: str = "images", answers: dict | None = None,
                 categories: bool = False) -> SyntheticReport:
    from tvau_lightning.report import write_analyze_report

    frames = draw_frames()
    video = folder / "source" / "intruder.mp4"
    analysis = synthetic_analysis(video, frames, categories=categories)
    out = folder / "analyze"
    page = write_analyze_report(out, analysis=analysis, source=ArraySource(frames, video), answers=answers,
                                heatmap_media=heatmap_media)
    return SyntheticReport(out, page, analysis, frames)


# ---------------------------------------------------------------------------------------------- the browser

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """A Chromium-family browser on this machine: ``$TVAU_CHROMIUM`` or the first of :data:`BROWSER_NAMES` on
    ``PATH``."""
    if os.environ.get("TVAU_CHROMIUM"):
        return os.environ["TVAU_CHROMIUM"]
    return next((p for p in map(shutil.which, BROWSER_NAMES) if p), None)


class CDPError(RuntimeError):
    pass


class Page:
    """One browser tab over the DevTools protocol: commands, and the events seen so far (console, network)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise CDPError(f"{method}: no answer in {timeout} s")

    def eval(self, expression: str, await_promise: bool = False) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        raise CDPError(f"timed out after {timeout} s waiting for {expression}")

    def key(self, key: str, code: str, key_code: int, text: str | None = None) -> None:
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": key_code}
        if text:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": key_code})

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self) -> np.ndarray:
        """The viewport as ``(H, W, 3)`` uint8 RGB."""
        from PIL import Image

        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def drain(self, seconds: float = 0.2) -> None:
        """Collect the events that arrive within ``seconds``."""
        import websocket

        self.ws.settimeout(seconds)
        try:
            while True:
                message = json.loads(self.ws.recv())
                if "method" in message:
                    self.events.append(message)
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(30)

    def close(self) -> None:
        self.ws.close()


class Browser:
    """A headless Chromium process with a private profile; :meth:`open` gives a :class:`Page` on a URL."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.profile = profile
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--mute-audio", "--autoplay-policy=no-user-gesture-required", "--hide-scrollbars",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "--window-size=1200,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.process.poll() is not None:
                raise CDPError(f"{binary} exited with {self.process.returncode}: "
                               f"{self.process.stderr.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.close()
                raise CDPError(f"{binary} did not open its DevTools port within 60 s")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def open(self, url: str) -> Page:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            target = json.loads(response.read())
        page = Page(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False})
        page.send("Page.navigate", {"url": url})
        page.wait_for("document.readyState === 'complete'")
        return page

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_browser()
    if binary is None:
        if os.environ.get("CI"):  # CI installs Debian's chromium (.ci/run): a missing browser there is a failure
            pytest.fail("no Chromium found in CI: .ci/run should have installed Debian's chromium package")
        pytest.skip("no Chromium found (apt-get install chromium, or set TVAU_CHROMIUM=/path/to/chrome); the "
                    "report's browser tests need one")
    b = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


#: the model saw every third frame (16 frames, 4 fps); "frame 4" is source frame 12 (the walker enters), "frame 11"
#: source frame 33, "frame 20" was never shown (clamped to the last frame shown, 45)
FRAMES_USED = list(range(0, 48, 3))
TRAJECTORY = ("The person enters from the left edge at frame 4, moves to the right, and leaves through the right "
              "edge at frame 11; it is seen again at frame 20.")


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory) -> SyntheticReport:
    from tvau_lightning.inference.citations import citations_span, resolve_citations

    citations = resolve_citations(TRAJECTORY, FRAMES_USED, FPS)  # as ChatSession.standard_answers does
    answers = {"video": "intruder.mp4", "frames_used": FRAMES_USED, "fps": FPS / 3, "answers": [
        {"kind": "judgment", "question": "Is there an anomaly in the video?", "answer": "Yes."},
        {"kind": "temporal", "question": "When does it happen?", "answer": "From 1.0 s to 3.0 s."},
        {"kind": "trajectory", "question": "Describe its motion trajectory.", "answer": TRAJECTORY,
         "source_frames": citations_span(citations), "citations": [c.to_json(FPS) for c in citations]},
    ]}
    return build_report(tmp_path_factory.mktemp("report"), answers=answers)


@pytest.fixture(scope="session")
def scene():
    """This module: the synthetic scene's constants and helpers (a test module cannot import a conftest)."""
    return sys.modules[__name__]
