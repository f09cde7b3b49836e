"""``eval/report.html``: written from the files the evaluation writes (``evaluation.artifacts``), read tolerantly,
and opened in the browser (sortable table, no errors, nothing fetched outside the folder)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest


def page_data(page) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(match.group(1))


def evaluation_folder(folder):
    """The real evaluation artifacts of three videos: ``good`` (ranked perfectly), ``bad`` (ranked backwards,
    two false detections) and ``normal`` (no abnormal frame)."""
    from tvau_lightning.evaluation.artifacts import write_artifacts
    from tvau_lightning.evaluation.records import EvaluationRecords
    from tvau_lightning.evaluation.summary import summarize

    videos = ["bad", "good", "normal"]
    n = 20
    frame_video = np.repeat(np.arange(3), n)
    frame_index = np.tile(np.arange(n), 3)
    label = np.zeros(3 * n, dtype=bool)
    label[0:n][8:14] = True  # bad
    label[n:2 * n][5:12] = True  # good
    score = np.linspace(0.1, 0.2, 3 * n)
    score[n:2 * n][5:12] += 0.7  # good: its abnormal frames score highest
    score[0:n][:8] += 0.6  # bad: its normal frames score highest
    box = np.array([[10.0, 10.0, 29.0, 29.0]])
    gt_frames = np.arange(5, 12)
    det = [(1, f, [10, 10, 29, 29], 0.9) for f in range(5, 12)] + [(0, 2, [50, 50, 60, 60], 0.8),
                                                                   (0, 3, [50, 50, 60, 60], 0.8)]
    records = EvaluationRecords(
        videos=videos, frames_seen=np.full(3, n), frame_video=frame_video, frame_index=frame_index,
        frame_score=score, frame_label=label,
        det_video=np.array([d[0] for d in det]), det_frame=np.array([d[1] for d in det]),
        det_box=np.array([d[2] for d in det], dtype=np.float64), det_score=np.array([d[3] for d in det]),
        gt_video=np.ones(len(gt_frames), dtype=np.int64), gt_frame=gt_frames,
        gt_box=np.repeat(box, len(gt_frames), axis=0), gt_track=np.zeros(len(gt_frames), dtype=np.int64),
    )
    summary = summarize(records, num_resamples=50, seed=0)
    write_artifacts(summary, folder, stage="test", info={"checkpoint": "runs/ahd/best.ckpt"}, timelines=True)
    return folder


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    return evaluation_folder(tmp_path_factory.mktemp("eval") / "eval")


def test_report_from_real_artifacts(eval_dir):
    from tvau_lightning.report import write_eval_report

    page = write_eval_report(eval_dir)
    data = page_data(page)
    metrics = json.loads((eval_dir / "metrics.json").read_text())["metrics"]
    assert {m["name"]: (m["value"], m["low"], m["high"]) for m in data["metrics"]} == {
        k: (v["value"], v["ci_low"], v["ci_high"]) for k, v in metrics.items()}
    assert {c["png"] for c in data["curves"]} >= {"roc.png"}
    assert all((eval_dir / c["png"]).is_file() for c in data["curves"])
    with (eval_dir / "per_video.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert data["rows"] == rows
    assert [v["video"] for v in data["worst_auc"]] == ["bad", "good"]  # "normal" has no AUC
    assert data["worst_auc"][0]["command"] == "tvau analyze bad --ckpt runs/ahd/best.ckpt --out analyze/bad"
    assert data["worst_auc"][0]["timeline"] == "timelines/bad.png" and (eval_dir / "timelines/bad.png").is_file()
    by_video = {r["video"]: r for r in rows}
    expected_fp = {v: int(r["detections"]) - int(r["detected_regions"]) for v, r in by_video.items()}
    assert {v["video"]: v["false_positives"] for v in data["worst_fp"]} == {k: v for k, v in expected_fp.items() if v}
    assert data["settings"]["checkpoint"] == "runs/ahd/best.ckpt"
    assert data["settings"]["bootstrap.num_resamples"] == 50


def test_tolerant_reader(tmp_path):
    from tvau_lightning.report import write_eval_report

    (tmp_path / "metrics.json").write_text(json.dumps({"micro_auc": {"estimate": 0.8, "ci": [0.7, 0.9]},
                                                       "rbdc": 0.31, "seed": 3}))
    (tmp_path / "per_video.csv").write_text("Video_ID,Frame-AUC,FP\nv1,0.9,0\nv2,0.4,7\n")
    data = page_data(write_eval_report(tmp_path, ckpt="m.ckpt", video_paths={"v2": "/data/v2.mp4"}))
    assert data["metrics"] == [{"name": "micro_auc", "value": 0.8, "low": 0.7, "high": 0.9},
                               {"name": "rbdc", "value": 0.31, "low": None, "high": None}]
    assert data["settings"] == {"seed": 3}
    assert [(v["video"], v["auc"]) for v in data["worst_auc"]] == [("v2", 0.4), ("v1", 0.9)]
    assert data["worst_fp"][0]["command"] == "tvau analyze /data/v2.mp4 --ckpt m.ckpt --out analyze/v2"
    # a folder with none of the files still gives a page, and a broken file names itself
    empty = tmp_path / "empty"
    empty.mkdir()
    assert page_data(write_eval_report(empty))["metrics"] == []
    (empty / "metrics.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"metrics\.json: not readable JSON"):
        write_eval_report(empty)
    with pytest.raises(FileNotFoundError, match="evaluation folder not found"):
        write_eval_report(tmp_path / "missing")


def test_eval_report_in_browser(browser, eval_dir):
    from tvau_lightning.report import write_eval_report

    page = browser.open(write_eval_report(eval_dir).as_uri())
    try:
        page.wait_for("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert page.eval("document.querySelectorAll('#per-video tbody tr').length") == 3
        header = page.eval("Array.from(document.querySelectorAll('#per-video th')).map(th => th.dataset.col)")
        auc_col = header.index("auc")
        # click the auc header: ascending; again: descending; the empty cell (no AUC) stays last
        first_col = "Array.from(document.querySelectorAll('#per-video tbody tr')).map(tr => tr.children[0].textContent)"
        page.send("Runtime.evaluate", {"expression": f"document.querySelectorAll('#per-video th')[{auc_col}]"
                                                     ".scrollIntoView()"})
        th = page.eval(f"(() => {{ const r = document.querySelectorAll('#per-video th')[{auc_col}]"
                       ".getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        page.click(*th)
        assert page.eval(first_col) == ["bad", "good", "normal"]
        page.click(*th)
        assert page.eval(first_col) == ["good", "bad", "normal"]
        page.drain(0.3)
        assert page.console_errors() == []
        folder = eval_dir.resolve().as_uri() + "/"
        assert [u for u in page.requested_urls() if not (u.startswith(folder) or u.startswith("data:"))] == []
    finally:
        page.close()
