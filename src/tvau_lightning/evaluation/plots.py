"""Evaluation figures drawn with matplotlib: the ROC curve, the RBDR/TBDR-vs-FPR curves, score timelines.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` and rendered by the Agg
canvas, so nothing here opens a window, touches a display or changes the process-wide backend (safe in
training jobs, notebooks and tests alike). :func:`figure_png` / :func:`figure_rgb` turn a figure into PNG
bytes or an ``(H, W, 3)`` uint8 array (for TensorBoard, notebooks); :func:`save_figure` writes a PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tvau_lightning.evaluation.curves import ROCCurve
from tvau_lightning.metrics.arrays import ArrayLike, to_numpy
from tvau_lightning.metrics.functional import RegionTrackCurves

_DPI = 100


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attach the Agg canvas: rendering never involves a GUI backend
    return figure


def roc_figure(curve: ROCCurve, *, title: str = "Frame-level ROC (micro)") -> Figure:
    """The frame ROC curve with its AUC in the legend and the chance diagonal."""
    figure = _figure(4.8, 4.2)
    ax = figure.add_subplot()
    ax.plot(curve.fpr, curve.tpr, color="tab:blue", lw=2, label=f"frames (AUC = {curve.auc:.4f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance (AUC = 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def detection_curve_figure(curves: RegionTrackCurves, *, title: str = "Region / track detection") -> Figure:
    """RBDR and TBDR against false positives per frame (0 … 1), RBDC/TBDC (the areas) in the legend."""
    figure = _figure(5.6, 4.2)
    ax = figure.add_subplot()
    ax.plot(curves.fpr, curves.rbdr, color="tab:orange", lw=2,
            label=f"RBDR (RBDC = {curves.rbdc:.4f}, {curves.num_regions} region(s))")
    ax.plot(curves.fpr, curves.tbdr, color="tab:green", lw=2,
            label=f"TBDR (TBDC = {curves.tbdc:.4f}, {curves.num_tracks} track(s))")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=f"false positives per frame ({curves.num_frames} frames)",
           ylabel="detection rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` index pairs of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def score_timelines_figure(
    series: Mapping[str, tuple[ArrayLike, ArrayLike, ArrayLike | None]],
    *,
    auc: Mapping[str, float | None] | None = None,
    threshold: float | None = None,
    title: str | None = None,
) -> Figure:
    """Frame scores over time, one panel per video, ground-truth abnormal frames shaded red.

    Args:
        series: video → ``(frames (T,), scores (T,), labels (T,) or None)``.
        auc: video → its frame AUC, shown in the panel title when given (None: single-class video).
        threshold: a score threshold drawn as a dashed line (e.g. 0.5 for probabilities).
        title: the figure's title.
    """
    if not series:
        raise ValueError("score_timelines_figure needs at least one video")
    figure = _figure(8.0, 0.4 + 1.7 * len(series))
    axes = figure.subplots(len(series), 1, squeeze=False)[:, 0]
    for ax, (video, (frames, scores, labels)) in zip(axes, series.items()):
        x = to_numpy(frames, np.float64).reshape(-1)
        y = to_numpy(scores, np.float64).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"video {video!r}: {x.size} frames but {y.size} scores")
        if labels is not None:
            lab = to_numpy(labels).reshape(-1).astype(bool)
            if lab.shape != x.shape:
                raise ValueError(f"video {video!r}: {x.size} frames but {lab.size} labels")
            for k, (start, stop) in enumerate(_runs(lab)):
                ax.axvspan(x[start] - 0.5, x[stop - 1] + 0.5, color="tab:red", alpha=0.18, lw=0,
                           label="abnormal (ground truth)" if k == 0 else None)
        ax.plot(x, y, color="tab:blue", lw=1.4, label="frame score")
        if threshold is not None:
            ax.axhline(threshold, color="0.4", ls="--", lw=1, label=f"threshold {threshold:g}")
        name = str(video)
        if auc is not None and video in auc:
            value = auc[video]
            name += f" — AUC {value:.3f}" if value is not None else " — AUC n/a (one class)"
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
        if len(x):
            ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
    axes[-1].set_xlabel("frame")
    axes[0].legend(loc="upper right", fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def figure_rgb(figure: Figure) -> np.ndarray:
    """The figure rendered as an ``(H, W, 3)`` uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(figure))
    return path
