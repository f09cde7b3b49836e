"""How to store the heatmap overlay of ``report.html`` for a long video: per-frame images or an aligned video?

Part 1 (media) writes ``--seconds`` of synthetic 1080p heatmaps (a 32×48 grid, one grid step per 2 frames, as
the AHD on Qwen2.5-VL gives; moving blobs through a steep sigmoid, so most cells sit near 0 or 1 like the real
``softmax(100·cos)``) with ``report.media.write_heatmap_media`` as JPEG images or an H.264 video, with the
longest side at 240, 320 (the report's default) or 480 px, or at full 1080p, and extrapolates bytes and write
time linearly to ``--minutes`` (both are per-frame costs: every frame, or every distinct heatmap, is encoded once).

Part 2 (page) writes a whole ``--minutes`` report with ``report.write_report`` in both modes (a plain grey
480×270 source video, so that only the page and the heatmap scale) and, when a Chromium is found, measures in
it: the time from navigation until the page is ready, the mean time of a seek to a random frame until both the
video and the heatmap show it, and during 5 s of playback how far the heatmap is from the presented frame.

    python benchmarks/bench_report_media.py                  # 10 s measured → 10 min, plus the full page
    python benchmarks/bench_report_media.py --seconds 10 --skip-page
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tvau_lightning.report.analyze_report import AnalyzeReport, ReportTrack, write_report
from tvau_lightning.report.media import write_heatmap_media

GRID = (32, 48)
FACTOR = 2  # frames per grid step


def grid_heatmaps(num_frames: int, seed: int = 0) -> torch.Tensor:
    """``(num_frames, 32, 48)`` heatmaps in [0, 1]: three blobs moving on smooth paths, per-step noise."""
    rng = np.random.default_rng(seed)
    steps = (num_frames + FACTOR - 1) // FACTOR
    t = np.arange(steps)[:, None, None] / 30.0
    y, x = np.mgrid[0:GRID[0], 0:GRID[1]]
    logit = np.full((steps, *GRID), -8.0)
    for k in range(3):
        cy = GRID[0] / 2 + GRID[0] / 3 * np.sin(0.3 * t * (k + 1) + k)
        cx = GRID[1] / 2 + GRID[1] / 3 * np.cos(0.2 * t * (k + 1) + 2 * k)
        logit = np.maximum(logit, 12.0 - ((y - cy) ** 2 + (x - cx) ** 2) / 2.0)
    logit += rng.normal(0.0, 1.5, size=logit.shape)
    heat = torch.from_numpy(1.0 / (1.0 + np.exp(-logit))).float()
    return heat.repeat_interleave(FACTOR, dim=0)[:num_frames]


def upsampled(grid: torch.Tensor, size: tuple[int, int], chunk: int = 16):
    for start in range(0, len(grid), chunk):
        maps = F.interpolate(grid[start:start + chunk, None], size=size, mode="bilinear", align_corners=False)
        yield from maps[:, 0].clamp_(0, 1).numpy()


def bench_media(seconds: float, minutes: float, fps: float, folder: Path) -> None:
    frames = int(round(seconds * fps))
    scale = minutes * 60.0 / seconds
    grid = grid_heatmaps(frames)
    print(f"Part 1: {frames} frames ({seconds:g} s at {fps:g} fps) of 1080p heatmaps, extrapolated ×{scale:g} "
          f"to {minutes:g} min")
    print(f"{'storage':<28}{'files':>8}{'MB measured':>13}{'MB / 10 min':>13}{'write s':>9}{'s / 10 min':>12}")
    for mode, max_side in (("images", 240), ("images", 320), ("images", 480), ("video", 320), ("video", 480),
                           ("images", 1920), ("video", 1920)):
        out = folder / f"{mode}_{max_side}"
        h, w = round(max_side * 9 / 16), max_side
        start = time.perf_counter()
        media = write_heatmap_media(out, upsampled(grid, (h, w)), fps=fps, source_size=(1080, 1920), mode=mode,
                                    max_side=max_side)
        seconds_taken = time.perf_counter() - start
        files = len(media.starts) if mode == "images" else 1
        print(f"{f'{mode} {w}x{h}':<28}{files:>8}{media.bytes / 1e6:>13.2f}{media.bytes / 1e6 * scale:>13.1f}"
              f"{seconds_taken:>9.1f}{seconds_taken * scale:>12.0f}")
        shutil.rmtree(out)


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def load_cdp():
    """The DevTools client of the report tests (``tests/report/conftest.py``)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("report_cdp", Path(__file__).parents[1] / "tests/report/conftest.py")
    cdp = importlib.util.module_from_spec(spec)
    sys.modules["report_cdp"] = cdp
    spec.loader.exec_module(cdp)
    return cdp


SEEK = """new Promise(resolve => {
  const t0 = performance.now(), v = document.getElementById('video'), h = document.getElementById('heat');
  tvauReport.seekFrame(%d);
  const ready = () => h.tagName === 'IMG' ? h.complete : (!h.seeking && h.readyState >= 2);
  const done = () => (!v.seeking && v.readyState >= 2 && ready()) ? resolve(performance.now() - t0) : setTimeout(done, 2);
  done(); })"""

# plays for `ms` and samples, at each presented frame of the source video, how many frames the heatmap shows
# away from it (images mode: the image of the presented frame is requested in the same callback, so 0 or the
# image's decode latency; video mode: |heatmap time - source time| in frames)
DRIFT = """new Promise(resolve => {
  const v = document.getElementById('video'), h = document.getElementById('heat'), fps = tvauReport.data.fps;
  const out = [];
  const cb = (now, m) => {
    if (h.tagName === 'VIDEO') out.push(Math.abs(h.currentTime - m.mediaTime) * fps);
    else out.push(h.complete ? 0 : 1);
    if (!v.paused) v.requestVideoFrameCallback(cb);
  };
  v.requestVideoFrameCallback(cb);
  v.play();
  setTimeout(() => { v.pause(); resolve(out); }, %d);
})"""


def bench_page(minutes: float, fps: float, folder: Path, max_side: int, seeks: int = 20) -> None:
    n = int(round(minutes * 60 * fps))
    grid = grid_heatmaps(n)
    scores = grid.reshape(n, -1).amax(1).numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    tracks = []
    for k, first in enumerate(sorted(rng.choice(n - 200, size=40, replace=False))):  # 40 tracks of 100 frames
        frames = np.arange(first, first + 100)
        boxes = np.tile(np.array([[10, 10, 60, 50]]), (100, 1)) + k
        tracks.append(ReportTrack(k, frames, boxes, np.full(100, 0.9)))
    size = (270, 480)
    report = AnalyzeReport(video="ten_minutes.mp4", fps=fps, size=size, scores=scores, tracks=tracks,
                           labels=(scores > 0.9).astype(np.int64))
    grey = np.full((*size, 3), 100, dtype=np.uint8)
    binary = find_chromium()
    cdp = load_cdp() if binary else None
    print(f"\nPart 2: a whole {minutes:g}-min report ({n} frames, 40 tracks; a plain grey {size[1]}x{size[0]} source "
          f"video, so that only the page and the heatmap scale), heatmap at {max_side}px")
    for mode in ("images", "video"):
        out = folder / f"page_{mode}"
        start = time.perf_counter()
        page = write_report(out, report, (grey for _ in range(n)), upsampled(grid, (270, 480)), heatmap_media=mode,
                            heatmap_max_side=max_side)
        took = time.perf_counter() - start
        media = out / "report_media"
        heat = [p for p in media.rglob("*") if p.is_file() and p.name.startswith(("0", "heatmap"))]
        line = (f"{mode:<7} written in {took:.0f} s; report.html {page.stat().st_size / 1e6:.2f} MB; heatmap "
                f"{len(heat)} file(s), {sum(p.stat().st_size for p in heat) / 1e6:.1f} MB")
        if cdp is None:
            print(line + "; no Chromium found: load, seek and drift not measured")
            continue
        browser = cdp.Browser(binary, folder / f"profile_{mode}")
        try:
            tab = browser.open("about:blank")
            start = time.perf_counter()
            tab.send("Page.navigate", {"url": page.as_uri()})
            tab.wait_for("window.tvauReport && document.getElementById('video').readyState >= 2", timeout=120)
            load = time.perf_counter() - start
            seek_ms = [tab.eval(SEEK % int(f), await_promise=True) for f in rng.integers(0, n, size=seeks)]
            tab.eval(SEEK % (n // 2), await_promise=True)
            drift = np.array(tab.eval(DRIFT % 5000, await_promise=True) or [0.0])
            print(line + f"; Chromium: page ready {load:.2f} s, seek {np.mean(seek_ms):.0f} ms mean / "
                  f"{np.max(seek_ms):.0f} max ({seeks} random frames); 5 s playback: heatmap off by "
                  f"{drift.mean():.2f} frames mean, {drift.max():.2f} max, >0.5 frame on "
                  f"{(drift > 0.5).mean():.0%} of {len(drift)} frames")
        finally:
            browser.close()
        shutil.rmtree(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="heatmap seconds measured in part 1 (10)")
    parser.add_argument("--minutes", type=float, default=10.0, help="video length extrapolated to / written (10)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--skip-page", action="store_true", help="only part 1")
    parser.add_argument("--max-side", type=int, default=320, help="heatmap longest side in part 2 (320)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_report_media."))
    try:
        torch.set_num_threads(1)
        bench_media(args.seconds, args.minutes, args.fps, folder)
        if not args.skip_page:
            bench_page(args.minutes, args.fps, folder, args.max_side)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
