"""``report.html`` of ``tvau analyze`` opened in a real headless Chromium (conftest: the synthetic video, the CDP
client). Each test reloads the page so that no state leaks between them."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def page(browser, synthetic_report):
    page = browser.open(synthetic_report.page.as_uri())
    page.wait_for("document.getElementById('video').readyState >= 2")
    yield page
    page.close()


def seek_and_wait(page, frame: int | None = None) -> int:
    """Wait until a seek (started by the test, or here with ``frame``) has settled; returns the readout frame."""
    if frame is not None:
        page.eval(f"tvauReport.seekFrame({frame})")
    page.wait_for("!document.getElementById('video').seeking && document.getElementById('video').readyState >= 2")
    page.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)
    return int(page.eval("document.getElementById('readout').dataset.frame"))


def rect(page, selector: str) -> dict:
    return page.eval(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect(); "
                     "return {left: r.left, top: r.top, width: r.width, height: r.height}; })()")


def stage_pixel(page, shot: np.ndarray, x: float, y: float) -> np.ndarray:
    """The screenshot's colour at source pixel ``(x, y)`` (the stage maps the even-padded video size)."""
    r = rect(page, "#stage")
    data = page.eval("tvauReport.data")
    px = r["left"] + (x + 0.5) * r["width"] / data["video_width"]
    py = r["top"] + (y + 0.5) * r["height"] / data["video_height"]
    return shot[int(py), int(px)].astype(int)


def test_loads_offline_without_errors(page, synthetic_report, scene):
    duration = page.eval("document.getElementById('video').duration")
    assert duration == pytest.approx(scene.NUM_FRAMES / scene.FPS, abs=1.0 / scene.FPS)
    assert page.eval("[document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]") \
        == [128, 96]
    page.wait_for("document.getElementById('heat').complete && document.getElementById('heat').naturalWidth > 0")
    page.drain(0.3)
    assert page.console_errors() == []
    folder = synthetic_report.folder.resolve().as_uri() + "/"
    urls = page.requested_urls()
    assert any(u.endswith("report_media/video.mp4") for u in urls)
    outside = [u for u in urls if not (u.startswith(folder) or u.startswith("data:"))]
    assert outside == [], f"requests outside {folder}: {outside}"


def test_track_click_seeks_to_first_frame(page, synthetic_report, scene):
    tracks = synthetic_report.analysis.tracks
    assert sorted((int(t.frames[0]), int(t.frames[-1])) for t in tracks) == [scene.WALK, scene.STAND]
    timeline = rect(page, "#timeline")
    for track in tracks:
        start = int(track.frames[0])
        row = rect(page, f"#tracks tr[data-track='{track.track_id}']")
        page.click(row["left"] + row["width"] / 2, row["top"] + row["height"] / 2)
        assert seek_and_wait(page) == start
        assert page.eval("document.getElementById('video').currentTime") == pytest.approx((start + 0.5) / scene.FPS, abs=1e-3)
        assert int(page.eval("document.getElementById('cursor').dataset.frame")) == start
        cursor = rect(page, "#cursor")
        centre = cursor["left"] + cursor["width"] / 2 - timeline["left"]
        assert centre == pytest.approx((start + 0.5) / scene.NUM_FRAMES * timeline["width"], abs=1.5)
        assert f"frame {start} /" in page.eval("document.getElementById('readout').textContent")


def test_seeking_is_frame_accurate(page, scene):
    """The standing intruder appears at frame STAND[0]: one frame earlier the video shows grey there."""
    page.key("h", "KeyH", 72, "h")  # heatmap off: the pixels are the video's
    cx, cy = scene.STAND_XY[0] + scene.SIDE / 2, scene.STAND_XY[1] + scene.SIDE / 2
    assert seek_and_wait(page, scene.STAND[0]) == scene.STAND[0]
    on = stage_pixel(page, page.screenshot(), cx, cy)
    page.key("ArrowLeft", "ArrowLeft", 37)
    assert seek_and_wait(page) == scene.STAND[0] - 1
    off = stage_pixel(page, page.screenshot(), cx, cy)
    assert on[0] > 180 and on[1] < 80 and on[2] < 80, on
    assert abs(off[0] - off[1]) < 30 and abs(off[0] - off[2]) < 30, off
    page.key("ArrowRight", "ArrowRight", 39)
    assert seek_and_wait(page) == scene.STAND[0]


def test_heatmap_toggles_with_key_and_checkbox(page):
    hidden = "getComputedStyle(document.getElementById('heat')).display === 'none'"
    assert page.eval(hidden) is False
    page.key("h", "KeyH", 72, "h")
    assert page.eval(hidden) is True
    assert page.eval("document.getElementById('heat-toggle').checked") is False
    box = rect(page, "#heat-toggle")
    page.click(box["left"] + box["width"] / 2, box["top"] + box["height"] / 2)
    assert page.eval(hidden) is False
    page.key("h", "KeyH", 72, "h")
    assert page.eval(hidden) is True


def test_screenshot_overlay_is_red_on_the_intruder(page, scene):
    frame = 24
    x, y = scene.walker_xy(frame)
    assert seek_and_wait(page, frame) == frame
    page.eval("(() => { const o = document.getElementById('heat-opacity'); o.value = '1'; "
              "o.dispatchEvent(new Event('input')); })()")
    page.wait_for("(() => { const h = document.getElementById('heat'); return h.complete && h.naturalWidth > 0 && "
                  f"h.src.endsWith(String(tvauReport.data.heatmap.starts.filter(s => s <= {frame}).length - 1)"
                  ".padStart(6, '0') + '.jpg'); })()")
    shot = page.screenshot()
    on = stage_pixel(page, shot, x + scene.SIDE / 2, y + scene.SIDE / 2)
    far = stage_pixel(page, shot, 100, 80)  # no intruder within two cells
    assert on[0] > 2 * on[1] + 40 and on[0] > 2 * on[2] + 40, f"overlay on the intruder is not red: {on}"
    assert far[2] > far[0] + 80, f"overlay away from the intruder is not blue: {far}"
    page.key("h", "KeyH", 72, "h")
    far_off = stage_pixel(page, page.screenshot(), 100, 80)
    assert abs(far_off[0] - far_off[2]) < 30, f"with the heatmap off the background should be grey: {far_off}"


def test_boxes_drawn_in_track_colours(page, synthetic_report, scene):
    frame = 24
    seek_and_wait(page, frame)
    track = next(t for t in synthetic_report.analysis.tracks if t.frames[0] == scene.WALK[0])
    x1, y1, x2, y2 = track.boxes[list(track.frames).index(frame)]
    colour = page.eval(f"tvauReport.data.tracks.find(t => t.id === {track.track_id}).color")
    # the canvas is same-origin: read its pixels directly (the left edge of the box, a few pixels down)
    pixel = page.eval(f"Array.from(document.getElementById('boxes').getContext('2d')"
                      f".getImageData({int(x1) + 1}, {int((y1 + y2) // 2)}, 1, 1).data)")
    assert "#{:02x}{:02x}{:02x}".format(*pixel[:3]) == colour and pixel[3] == 255
    inside = page.eval(f"Array.from(document.getElementById('boxes').getContext('2d')"
                       f".getImageData({int((x1 + x2) // 2)}, {int((y1 + y2) // 2)}, 1, 1).data)")
    assert inside[3] == 0


def test_keyboard_and_timeline(page, scene):
    assert seek_and_wait(page, 10) == 10
    page.key("ArrowRight", "ArrowRight", 39)
    assert seek_and_wait(page) == 11
    timeline = rect(page, "#timeline")
    target = 40
    page.click(timeline["left"] + (target + 0.5) / scene.NUM_FRAMES * timeline["width"], timeline["top"] + 10)
    assert seek_and_wait(page) == target
    page.key(" ", "Space", 32, " ")
    page.wait_for("!document.getElementById('video').paused")
    page.key(" ", "Space", 32, " ")
    page.wait_for("document.getElementById('video').paused")


def test_answer_click_seeks(page):
    items = page.eval("Array.from(document.querySelectorAll('#answers li')).map(li => li.textContent)")
    assert len(items) == 3 and "From 1.0 s to 3.0 s." in items[1]
    li = rect(page, "#answers li:nth-child(2)")
    page.click(li["left"] + 10, li["top"] + li["height"] / 2)
    assert seek_and_wait(page) == 12  # 1.0 s at 12 fps
    assert page.eval("tvauReport.data.answers[1].frames") == [12, 35]  # "to 3.0 s": the last frame before 3 s


def test_citation_click_seeks_to_the_frame_the_model_saw(page, scene):
    """"frame 4" of the trajectory answer is the 5th frame the model saw (every 3rd frame: source frame 12, where the
    walker enters), not source frame 4; the timeline marks the span the answer's references cover."""
    cites = page.eval("Array.from(document.querySelectorAll('#answers li:nth-child(3) button.cite'))"
                      ".map(b => [b.textContent, b.className])")
    assert cites == [["frame 4", "cite"], ["frame 11", "cite"], ["frame 20", "cite out-of-range"]]
    assert page.eval("document.querySelectorAll('#answers li:nth-child(2) button.cite').length") == 0
    for k, expected in ((2, scene.FRAMES_USED[11]), (1, scene.FRAMES_USED[4]), (3, scene.FRAMES_USED[-1])):
        button = rect(page, f"#answers li:nth-child(3) button.cite:nth-of-type({k})")
        page.click(button["left"] + button["width"] / 2, button["top"] + button["height"] / 2)
        assert seek_and_wait(page) == expected
        assert page.eval("document.getElementById('video').currentTime") == \
            pytest.approx((expected + 0.5) / scene.FPS, abs=1e-3)
    assert scene.FRAMES_USED[4] == scene.WALK[0]
    # the answer's span on the timeline: from the first cited frame (12) to the last (45, the clamped "frame 20")
    timeline, mark = rect(page, "#timeline"), rect(page, ".answer-span[data-answer='2']")
    first, last = 12, 45
    assert mark["left"] - timeline["left"] == pytest.approx(first / scene.NUM_FRAMES * timeline["width"], abs=1.5)
    assert mark["width"] == pytest.approx((last - first + 1) / scene.NUM_FRAMES * timeline["width"], abs=1.5)
    assert page.eval("document.querySelectorAll('.answer-span').length") == 1  # the uncited answers have none
    assert page.eval("document.querySelector('.answer-span').classList.contains('active')") is True


def test_heatmap_video_variant(browser, tmp_path, scene):
    report = scene.build_report(tmp_path, heatmap_media="video")
    page = browser.open(report.page.as_uri())
    try:
        page.wait_for("document.getElementById('heat').tagName === 'VIDEO' && "
                      "document.getElementById('heat').readyState >= 2")
        assert page.eval("document.getElementById('heat').duration") == pytest.approx(scene.NUM_FRAMES / scene.FPS, abs=1 / scene.FPS)
        assert seek_and_wait(page, 24) == 24
        page.wait_for("!document.getElementById('heat').seeking")
        assert page.eval("document.getElementById('heat').currentTime") == pytest.approx(24.5 / scene.FPS, abs=1e-3)
        page.drain(0.3)
        assert page.console_errors() == []
    finally:
        page.close()


def test_url_fragment_opens_at_a_frame(browser, synthetic_report):
    page = browser.open(synthetic_report.page.as_uri() + "#frame=30")
    try:
        page.wait_for("document.getElementById('video').readyState >= 2")
        assert seek_and_wait(page) == 30
        assert page.eval("document.getElementById('video').currentTime") == pytest.approx(30.5 / 12.0, abs=1e-3)
    finally:
        page.close()


def test_categories_in_header_timeline_and_tracks(browser, tmp_path, scene):
    """A category AHD's report: the top category chip, the readout's category of the current frame, the lane's
    colour under each frame above the threshold (none below), the tooltip and the track list's categories."""
    report = scene.build_report(tmp_path, categories=True)
    page = browser.open(report.page.as_uri())
    try:
        page.wait_for("document.getElementById('video').readyState >= 2")
        chips = page.eval("document.getElementById('chips').textContent")
        assert "top category Arson" in chips
        assert "Arson 0.60 (18 fr), Fighting 0.42 (12 fr)" in page.eval("document.getElementById('meta').textContent")
        colors = page.eval("tvauReport.data.categories.colors")
        for frame, name in ((20, "Arson"), (35, "Fighting")):
            assert seek_and_wait(page, frame) == frame
            assert page.eval("document.getElementById('readout').dataset.category") == name
            assert name in page.eval("document.getElementById('readout').textContent")
        lane = "document.getElementById('category-lane')"
        width = page.eval(f"{lane}.width")
        height = page.eval(f"{lane}.height")

        def lane_pixel(frame: int) -> str:
            x = int((frame + 0.5) * width / scene.NUM_FRAMES)
            rgba = page.eval(f"Array.from({lane}.getContext('2d').getImageData({x}, {height // 2}, 1, 1).data)")
            return "#{:02x}{:02x}{:02x}".format(*rgba[:3])

        assert lane_pixel(20) == colors[1] and lane_pixel(35) == colors[2]
        assert lane_pixel(5) == "#101114"  # below the threshold: no category drawn
        r = rect(page, "#category-wrap")
        x, y = r["left"] + r["width"] * 20.5 / scene.NUM_FRAMES, r["top"] + r["height"] / 2
        page.eval(f"document.getElementById('category-wrap').dispatchEvent(new MouseEvent('mousemove', "
                  f"{{clientX: {x}, clientY: {y}, bubbles: true}}))")
        assert page.eval("document.getElementById('category-wrap').title") == "frame 20 · score 0.950 · Arson 0.80"
        page.eval(f"document.getElementById('category-wrap').dispatchEvent(new MouseEvent('click', "
                  f"{{clientX: {x}, clientY: {y}, bubbles: true}}))")
        assert seek_and_wait(page) == 20
        cells = page.eval("Array.from(document.querySelectorAll('#tracks td.category-col')).map(td => td.textContent)")
        assert sorted(cells) == ["Arson", "Fighting"]
        assert page.eval("document.querySelector('#tracks th.category-col').hidden") is False
        page.drain(0.3)
        assert page.console_errors() == []
    finally:
        page.close()


def test_binary_report_has_no_category_lane(page):
    assert page.eval("document.getElementById('category-wrap').hidden") is True
    assert page.eval("document.querySelector('#tracks th.category-col').hidden") is True
    assert page.eval("document.getElementById('readout').dataset.category") == ""
