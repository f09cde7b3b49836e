"""Writing ``tvau predict`` outputs: per-video heatmaps and per-frame scores.

``HeatmapWriter`` is a Lightning prediction-writer callback (add it under ``trainer.callbacks``). For each
video it writes ``{video_id}.npz`` (the id made a safe file name by :func:`~tvau_lightning.atomic.file_name_for`) with ``frame_index (N,)``, ``frame_scores (N,)`` and ``heatmap (N, H', W')``
float16 — the grid heatmap of each frame (a grid step repeated for the frames it covers) — and one
``frame_scores.csv`` over all videos. A weakly supervised category AHD (``WeakAHDTask``) adds its per-frame class
scores: ``frame_class_scores (N, K)`` float32 and ``class_names (K,)`` in each ``.npz`` (column 0 = normal), and
``category,category_score`` columns in the CSV (the top anomaly class of the frame, as ``tvau analyze`` names it). Files are written atomically. The output folder is the tool's own
(:func:`~tvau_lightning.atomic.claim_output_dir`, checked when prediction starts): a non-empty folder it did not
create, or one holding the dataset or the checkpoint, is refused.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from tvau_lightning.atomic import (
    atomic_path,
    claim_output_dir,
    file_name_for,
    signals_raise,
    write_text_atomic,
)
from tvau_lightning.modules.grid import steps_to_frames


class HeatmapWriter(BasePredictionWriter):
    """Collect ``AHDTask.predict_step`` outputs per video and write them at the end of prediction.

    Args:
        output_dir: folder for ``{video_id}.npz`` files and ``frame_scores.csv`` (created if missing).
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self._parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]] = defaultdict(list)
        self._class_names: list[str] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Refuse a foreign or input-holding output folder before any prediction runs (rank 0 claims it)."""
        if stage != "predict" or not trainer.is_global_zero:
            return
        inputs = [p for p in (getattr(trainer.datamodule, "root", None), getattr(trainer, "ckpt_path", None)) if p]
        claim_output_dir(self.output_dir, inputs)

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: dict[str, Any],
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        factor = int(prediction["temporal_factor"])
        heat = prediction["heatmap"]  # (B, T', H', W')
        classes = prediction.get("frame_class_scores")  # (B, T, K) for a category AHD
        if classes is not None and self._class_names is None:
            self._class_names = [str(c) for c in getattr(pl_module, "categories", [])] or \
                [f"class_{k}" for k in range(int(classes.shape[-1]))]
        for b, video_id in enumerate(prediction["video_id"]):
            index = prediction["frame_index"][b].numpy()
            keep = index >= 0
            per_frame = steps_to_frames(heat[b], temporal_factor=factor, num_frames=index.shape[0], dim=0)
            self._parts[video_id].append(
                (index[keep], prediction["frame_scores"][b].numpy()[keep], per_frame[torch.from_numpy(keep)].numpy(),
                 None if classes is None else classes[b].float().numpy()[keep])
            )

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        with signals_raise():  # SIGTERM unwinds: no temporary file is left beside the outputs
            self._write(trainer)

    def _write(self, trainer: Trainer) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rows: list[list[object]] = []
        names = self._class_names
        for video_id, parts in sorted(self._parts.items()):
            index = np.concatenate([p[0] for p in parts])
            order = np.argsort(index, kind="stable")
            index, first = np.unique(index[order], return_index=True)
            scores = np.concatenate([p[1] for p in parts])[order][first]
            heat = np.concatenate([p[2] for p in parts])[order][first]
            arrays = {"frame_index": index, "frame_scores": scores.astype(np.float32), "heatmap": heat.astype(np.float16)}
            video_rows = [[video_id, int(i), f"{s:.6f}"] for i, s in zip(index, scores)]
            if names is not None:
                classes = np.concatenate([p[3] for p in parts])[order][first].astype(np.float32)
                arrays |= {"frame_class_scores": classes, "class_names": np.array(names)}
                top = classes[:, 1:].argmax(axis=1) + 1  # the top anomaly class, column 0 being normal
                for row, k, values in zip(video_rows, top, classes):
                    row += [names[k], f"{values[k]:.6f}"]
            with atomic_path(self.output_dir / f"{file_name_for(video_id)}.npz") as tmp:
                np.savez_compressed(tmp, **arrays)
            rows.extend(video_rows)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["video_id", "frame", "score"] + (["category", "category_score"] if names is not None else []))
        writer.writerows(rows)
        name = "frame_scores.csv" if trainer.world_size == 1 else f"frame_scores.rank{trainer.global_rank}.csv"
        write_text_atomic(self.output_dir / name, buf.getvalue())
        self._parts.clear()
