"""The notebooks: committed without outputs, and run top to bottom (nbclient) on demo-like data."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    nbformat.write(notebook, tmp_path / name)  # kept for inspection when a check below fails
    return notebook


def _stdout(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream" and o.name == "stdout")


def _images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_01_explore_heatmaps_runs_on_demo_like_data(fitted_ahd, tmp_path, monkeypatch):
    monkeypatch.setenv("TVAU_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("TVAU_UBNORMAL", str(fitted_ahd.data.root))
    monkeypatch.setenv("TVAU_AHD_CKPT", str(fitted_ahd.checkpoint))
    monkeypatch.setenv("TVAU_NOTEBOOK_OUT", str(tmp_path / "out"))
    notebook = _run("01_explore_heatmaps.ipynb", tmp_path)
    text = _stdout(notebook)
    metrics = ast.literal_eval(re.search(r"\{'micro_auc'.*\}", text).group(0))
    assert set(metrics) == {"micro_auc", "macro_auc", "rbdc", "tbdc"}
    assert metrics["micro_auc"] > 0.9 and metrics["rbdc"] > 0.5  # the fitted AHD localises the anomalies
    assert re.search(r"GT regions hit \(IoU >= 0\.1\): (\d+)%", text) and _images(notebook) >= 6
    assert len(list((tmp_path / "out").glob("*_overlay.mp4"))) == 1


def test_02_dialogue_runs_on_demo_like_data(fitted_rae, tmp_path, monkeypatch):
    monkeypatch.setenv("TVAU_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("TVAU_RAE_CKPT", str(fitted_rae.checkpoint))
    monkeypatch.setenv("TVAU_DIALOGUES", str(fitted_rae.dialogues / "validation" / "phase_b.jsonl"))
    monkeypatch.setenv("TVAU_NOTEBOOK_RECORDS", "2")
    notebook = _run("02_dialogue.ipynb", tmp_path)
    text = _stdout(notebook)
    assert f"clips: {fitted_rae.num_frames} frames of {fitted_rae.frame_size}" in text
    assert text.count("Q: ") == 2 and "history: 4 turns" in text
    yes_no = ast.literal_eval(re.search(r"yes/no: (\{.*\})", text).group(1))
    assert set(yes_no) == {"accuracy", "balanced_accuracy"} and all(0 <= v <= 1 for v in yes_no.values())
    assert "2 dialogues" in text and re.search(r"BLEU-4 target: \d\.\d{4}", text) and _images(notebook) >= 4
