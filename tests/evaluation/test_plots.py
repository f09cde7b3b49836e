"""The matplotlib figures: what they draw, their legends, and rendering without a display."""

from __future__ import annotations

import numpy as np
import pytest

from tvau_lightning.evaluation import roc_curve
from tvau_lightning.evaluation.plots import (
    detection_curve_figure,
    figure_png,
    figure_rgb,
    roc_figure,
    save_figure,
    score_timelines_figure,
)
from tvau_lightning.metrics.functional import rbdc_tbdc_curves


def _legend(figure, axis=0):
    return [t.get_text() for t in figure.axes[axis].get_legend().get_texts()]


def test_roc_figure_draws_the_curve_with_its_auc(tmp_path):
    curve = roc_curve([0.1, 0.4, 0.35, 0.8, 0.2, 0.9], [0, 0, 1, 1, 0, 1])
    figure = roc_figure(curve)
    line = figure.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), curve.fpr)
    np.testing.assert_allclose(line.get_ydata(), curve.tpr)
    assert any(f"AUC = {curve.auc:.4f}" in text for text in _legend(figure))
    path = save_figure(figure, tmp_path / "sub" / "roc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = figure_rgb(figure)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 200
    assert figure_png(figure)[:4] == b"\x89PNG"


def test_detection_curve_figure_names_rbdc_and_tbdc():
    curves = rbdc_tbdc_curves({"v": [np.array([[0, 0, 0, 9, 9], [1, 0, 0, 9, 9]])]},
                              {"v": np.array([[0, 0, 0, 9, 9, 0.9], [1, 50, 50, 60, 60, 0.8], [1, 0, 0, 9, 9, 0.7]])},
                              num_frames=4)
    figure = detection_curve_figure(curves)
    legend = _legend(figure)
    assert f"RBDC = {curves.rbdc:.4f}" in legend[0] and f"TBDC = {curves.tbdc:.4f}" in legend[1]
    rbdr, tbdr = figure.axes[0].get_lines()[:2]
    np.testing.assert_allclose(rbdr.get_xdata(), curves.fpr)
    np.testing.assert_allclose(rbdr.get_ydata(), curves.rbdr)
    np.testing.assert_allclose(tbdr.get_ydata(), curves.tbdr)


def test_score_timelines_shade_each_abnormal_run():
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 0])
    figure = score_timelines_figure({"a": (np.arange(8), np.linspace(0, 1, 8), labels),
                                     "b": (np.arange(5), np.zeros(5), None)},
                                    auc={"a": 0.75, "b": None}, threshold=0.5)
    top, bottom = figure.axes
    assert len(top.patches) == 2  # two runs of abnormal frames
    spans = sorted(p.get_x() for p in top.patches)
    assert spans == pytest.approx([0.5, 4.5])
    assert "AUC 0.750" in top.get_title(loc="left") and "n/a" in bottom.get_title(loc="left")
    assert len(bottom.patches) == 0
    with pytest.raises(ValueError, match="3 frames but 2 scores"):
        score_timelines_figure({"c": (np.arange(3), np.zeros(2), None)})
    with pytest.raises(ValueError, match="at least one video"):
        score_timelines_figure({})
