"""The files ``write_analyze_report`` writes, checked without a browser: media sizes and counts, the page's data,
escaping, answers' frame ranges, and the contract with ``inference.analyze.VideoAnalysis``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest


def page_data(page) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S)
    assert match, "no data element in the page"
    return json.loads(match.group(1))


def video_meta(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count = sum(1 for _ in reader)
    return meta, count


@pytest.fixture(scope="module")
def report(tmp_path_factory, scene):
    return scene.build_report(tmp_path_factory.mktemp("analyze_report"))


def test_media_files(report, scene):
    media = report.folder / "report_media"
    meta, count = video_meta(media / "video.mp4")
    assert tuple(meta["size"]) == (scene.WIDTH, scene.HEIGHT) and count == scene.NUM_FRAMES
    assert meta["fps"] == pytest.approx(scene.FPS)
    head = (media / "video.mp4").read_bytes()[:4096]
    assert b"moov" in head, "faststart: the index must precede the media data"
    # one image per run of identical heatmaps: runs computed from the drawing, independently of the writer
    grid = scene.redness_grid(report.frames)
    changes = [0] + [f for f in range(1, len(grid)) if not np.array_equal(grid[f], grid[f - 1])]
    data = page_data(report.page)
    assert data["heatmap"]["starts"] == changes
    assert sorted(p.name for p in (media / "heatmap").iterdir()) == [f"{k:06d}.jpg" for k in range(len(changes))]
    for track in report.analysis.tracks:
        assert (media / f"track_{track.track_id}.jpg").is_file()


def test_page_data(report, scene):
    data = page_data(report.page)
    assert data["num_frames"] == scene.NUM_FRAMES and data["fps"] == scene.FPS
    assert data["scores"] == [round(float(s), 4) for s in report.analysis.scores]
    assert data["label_ranges"] == [list(scene.WALK)]
    walker = next(t for t in data["tracks"] if t["start"] == scene.WALK[0])
    assert (walker["end"], len(walker["frames"]), len(walker["boxes"])) == (scene.WALK[1], 24, 24)
    x, y = scene.walker_xy(20)
    x1, y1, x2, y2 = walker["boxes"][walker["frames"].index(20)]
    assert x1 <= x and y1 <= y and x2 >= x + scene.SIDE - 1 and y2 >= y + scene.SIDE - 1  # the box holds the intruder
    html = report.page.read_text()
    assert "http://" not in html and "https://" not in html and "<link rel=\"stylesheet\"" not in html


def test_odd_sized_video_is_padded(tmp_path, scene):
    from tvau_lightning.report import AnalyzeReport, write_report

    frames = np.full((6, 35, 47, 3), 90, dtype=np.uint8)
    report = AnalyzeReport(video="odd.mp4", fps=10.0, size=(35, 47), scores=np.linspace(0, 1, 6))
    page = write_report(tmp_path, report, iter(frames), (np.full((35, 47), v) for v in np.linspace(0, 1, 6)))
    meta, count = video_meta(tmp_path / "report_media" / "video.mp4")
    assert tuple(meta["size"]) == (48, 36) and count == 6
    data = page_data(page)
    assert (data["video_width"], data["video_height"], data["width"], data["height"]) == (48, 36, 47, 35)
    assert data["heatmap"]["starts"] == list(range(6))


def test_names_cannot_break_the_page(tmp_path):
    from tvau_lightning.report import AnalyzeReport, write_report

    name = "</script><script>alert(1)</script>.mp4"
    report = AnalyzeReport(video=name, fps=5.0, size=(8, 8), scores=np.array([0.2, 0.7]),
                           answers=[{"kind": "judgment", "question": "?", "answer": "</script>", "frames": None}])
    page = write_report(tmp_path, report, iter(np.zeros((2, 8, 8, 3), np.uint8)), iter(np.zeros((2, 8, 8))))
    html = page.read_text()
    assert html.count("</script>") == 2  # the data element's and the script's own
    data = page_data(page)
    assert data["video"] == name and data["answers"][0]["answer"] == "</script>"
    assert "<title>tvau analyze — script&gt;.mp4</title>" in html  # the last path part, escaped


def test_frame_count_mismatch_is_an_error(tmp_path):
    from tvau_lightning.report import AnalyzeReport, write_report

    report = AnalyzeReport(video="v.mp4", fps=5.0, size=(8, 8), scores=np.zeros(3))
    with pytest.raises(ValueError, match=r"v\.mp4: 2 frames were given for 3 frame scores"):
        write_report(tmp_path, report, iter(np.zeros((2, 8, 8, 3), np.uint8)), iter(np.zeros((3, 8, 8))))
    with pytest.raises(ValueError, match=r"v\.mp4: 4 heatmaps were given for 3 frame scores"):
        write_report(tmp_path, report, iter(np.zeros((3, 8, 8, 3), np.uint8)), iter(np.zeros((4, 8, 8))))


def test_answer_frames():
    from tvau_lightning.report.analyze_report import normalize_answers

    doc = {"frames_used": [4, 8, 30], "answers": [
        {"kind": "judgment", "question": "Anomaly?", "answer": "Yes."},
        {"kind": "temporal", "question": "When?", "answer": "It starts at 2.5 seconds and ends at 4 s."},
        {"kind": "target", "question": "Who?", "answer": "A man.", "frames": [10, 99]},
    ]}
    out = normalize_answers(doc, fps=10.0, num_frames=50)
    assert [a["frames"] for a in out] == [[4, 30], [25, 39], [10, 49]]
    assert normalize_answers(None, 10.0, 50) == []


def test_answer_citations_become_parts():
    """answers.json's resolved time references → the page's parts (clamped to the video); a citation whose span
    does not hold its text (an edited answer) stays plain text."""
    from tvau_lightning.report.analyze_report import normalize_answers

    text = "At frame 3, then frame 9."
    doc = {"frames_used": [0, 30, 60, 90], "answers": [
        {"kind": "trajectory", "question": "How?", "answer": text, "source_frames": [90, 90], "citations": [
            {"text": "frame 3", "span": [3, 10], "source_frames": [90, 90], "out_of_range": False},
            {"text": "frame 9", "span": [17, 24], "source_frames": [150, 150], "out_of_range": True}]},
        {"kind": "anchor", "question": "When?", "answer": "Later.", "citations": [
            {"text": "frame 1", "span": [0, 7], "source_frames": [30, 30]}]},
    ]}
    first, second = normalize_answers(doc, fps=30.0, num_frames=120)
    assert first["parts"] == [{"text": "At "}, {"text": "frame 3", "frames": [90, 90], "out_of_range": False},
                              {"text": ", then "}, {"text": "frame 9", "frames": [119, 119], "out_of_range": True},
                              {"text": "."}]
    assert first["frames"] == [90, 90] and first["cited"] is True
    assert second["parts"] == [{"text": "Later."}] and second["cited"] is False
    assert second["frames"] == [0, 90]  # no resolved span: the frames the dialogue saw


def test_real_video_analysis(tmp_path, scene):
    """``write_analyze_report`` reads what ``inference.analyze.VideoAnalysis`` holds (the lead's one-line call)."""
    import torch

    from tvau_lightning.inference.analyze import VideoAnalysis, link_detections
    from tvau_lightning.metrics.regions import heatmap_to_detections
    from tvau_lightning.report import write_analyze_report

    frames = scene.draw_frames()
    grid = scene.redness_grid(frames)
    rows = heatmap_to_detections(grid, np.arange(len(grid)), (scene.HEIGHT, scene.WIDTH))
    tracks, ids = link_detections(rows)
    labels = np.zeros(len(frames), dtype=np.int64)
    labels[scene.WALK[0]:scene.WALK[1] + 1] = 1
    analysis = VideoAnalysis(video=tmp_path / "v.mp4", fps=scene.FPS, size=(scene.HEIGHT, scene.WIDTH),
                             grid_heatmaps=torch.from_numpy(grid), scores=grid.reshape(len(grid), -1).max(1),
                             detections=rows, detection_tracks=ids, tracks=tracks, labels=labels,
                             info={"backbone": "tiny", "clip_len": 8})
    page = write_analyze_report(tmp_path / "out", analysis=analysis, source=scene.ArraySource(frames, tmp_path / "v.mp4"),
                                answers={"frames_used": [0, 47], "answers": []})
    data = page_data(page)
    assert [(t["start"], t["end"]) for t in data["tracks"]] == [(int(t.frames[0]), int(t.frames[-1])) for t in tracks]
    assert data["summary"]["num_tracks"] == len(tracks) and "frame_auc" in data["summary"]
    assert data["info"]["backbone"] == "tiny"
    # the shortcut (grid → stored size) agrees with the full-size maps (frame_heatmaps) resized to that size
    from tvau_lightning.report.analyze_report import _analysis_heatmaps
    from tvau_lightning.report.media import resize_map

    size = (data["heatmap"]["height"], data["heatmap"]["width"])
    shortcut = torch.stack(list(_analysis_heatmaps(analysis, (48, 64))))
    full = analysis.frame_heatmaps(np.arange(len(grid))).numpy()
    resized = np.stack([resize_map(m, (48, 64)) for m in full])
    assert np.abs(shortcut.numpy() - resized).mean() < 0.02 and size == (scene.HEIGHT, scene.WIDTH)


def test_category_data_in_the_page(tmp_path, scene):
    """A category AHD's analysis: each frame's top category (argmax over k ≥ 1 of the class scores) and colour,
    the tracks' categories and the summary's ranking are embedded; a binary analysis embeds no categories."""
    report = scene.build_report(tmp_path, categories=True)
    data = page_data(report.page)
    cats = data["categories"]
    assert cats["names"] == scene.CATEGORY_NAMES
    expected = ["Fighting" if scene.STAND[0] <= f <= scene.STAND[1] else "Arson" for f in range(scene.NUM_FRAMES)]
    assert [cats["names"][k] for k in cats["frame"]] == expected  # outside the anomalies Arson (0.05) > Fighting (0.04)
    scores = scene.category_scores()
    assert cats["score"] == [round(float(scores[f, cats["frame"][f]]), 4) for f in range(scene.NUM_FRAMES)]
    assert cats["colors"][0] is None and len(set(cats["colors"][1:])) == 2
    walker = next(t for t in data["tracks"] if t["start"] == scene.WALK[0])
    stander = next(t for t in data["tracks"] if t["start"] == scene.STAND[0])
    assert (walker["category"], stander["category"]) == ("Arson", "Fighting")
    # over the 30 frames above the threshold: Arson (18 × 0.8 + 12 × 0.3) / 30 = 0.6, Fighting 0.42
    assert data["summary"]["top_category"] == "Arson"
    assert [c["name"] for c in data["summary"]["categories"]] == ["Arson", "Fighting"]
    plain = page_data(scene.build_report(tmp_path / "binary").page)
    assert "categories" not in plain and all(t["category"] is None for t in plain["tracks"])
