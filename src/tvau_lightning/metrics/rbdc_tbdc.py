"""RBDC and TBDC as torchmetrics, from heatmap clips (SPEC §6).

Each update turns the heatmaps into scored boxes in original video pixels
(:func:`~tvau_lightning.metrics.regions.heatmap_to_detections`) and stores them with the ground truth of the
clip's frames; ``compute()`` runs one sweep (:func:`~tvau_lightning.metrics.functional.rbdc_tbdc.region_track_sweep`)
over everything seen. N (the FPR denominator) is the number of distinct ``(video, frame)`` seen, so the
metric must see every frame of the split (normal videos included), as the evaluation loaders provide.

Ground truth comes either as **boxes with track ids** (``gt_boxes``: the dataset knows the tracks, e.g.
UBnormal's one track per tracks-file line — preferred, exact) or as **masks** (``gt_masks``): per-frame
8-connected components are stored and linked into tracks per video at compute time, after all clips are in
(clips split videos, so linking per clip would cut tracks). Masks at a size other than ``original_size`` are
mapped like heatmaps (cell → original pixels), an approximation of the components of the full-size masks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from tvau_lightning.metrics.functional.rbdc_tbdc import region_track_sweep
from tvau_lightning.metrics.regions import heatmap_to_detections, link_boxes, masks_to_frame_boxes
from tvau_lightning.metrics.state import RowStateMetric, first_occurrence_mask, unique_row_ids, video_hash

#: gt track id of rows that come from masks and still need linking
_UNLINKED = -1


class RegionTrackDetection(RowStateMetric):
    """RBDC and TBDC from one sweep; ``compute()`` returns ``{"rbdc": tensor, "tbdc": tensor}`` (float32).

    Args:
        alpha: fraction of a track's regions to detect for the track to count (TBDC).
        beta: IoU (inclusive +1 pixels) for a detection to detect a region.
        threshold: heatmap binarisation threshold (``heatmap > threshold``).
        link_iou: IoU for linking mask components into tracks across consecutive frames.

    Both values are NaN (with a warning) when no GT region was seen (e.g. a sanity check on normal clips).
    """

    def __init__(
        self, alpha: float = 0.1, beta: float = 0.1, threshold: float = 0.5, link_iou: float = 0.1, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("alpha", alpha), ("beta", beta), ("link_iou", link_iou)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        self.alpha, self.beta, self.threshold, self.link_iou = float(alpha), float(beta), float(threshold), float(link_iou)
        for prefix in ("seen", "det", "gt"):
            self.add_row_state(f"{prefix}_video", torch.int64)
            self.add_row_state(f"{prefix}_frame", torch.int64)
            self.add_row_state(f"{prefix}_occurrence", torch.int64)
        self.add_row_state("det_box", torch.float64, (4,))
        self.add_row_state("det_score", torch.float64)
        self.add_row_state("gt_box", torch.float64, (4,))
        self.add_row_state("gt_track", torch.int64)

    def update(
        self,
        heatmaps: torch.Tensor,
        video_ids: Sequence[str],
        frame_index: torch.Tensor,
        original_size: torch.Tensor,
        gt_masks: torch.Tensor | None = None,
        gt_boxes: Sequence[torch.Tensor | np.ndarray] | None = None,
        scores: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of clips.

        Args:
            heatmaps: ``(B, T, h, w)`` anomaly heatmaps in [0, 1] (any resolution); regions are ``> threshold``.
            video_ids: ``B`` video identifiers.
            frame_index: ``(B, T)`` original frame numbers, ``-1`` on padding (ignored).
            original_size: ``(B, 2)`` ``(H, W)`` of the source videos.
            gt_masks: ``(B, T, H', W')`` bool anomaly masks, or None.
            gt_boxes: per sample, ``(n, 6)`` rows ``(frame, track_id, x1, y1, x2, y2)`` in original pixels
                (track ids per video), or None. Give at most one of ``gt_masks``/``gt_boxes``; with neither,
                the batch adds detections and frames only (e.g. normal videos without GT).
            scores: ``(B, T, h, w)`` maps that rank the regions (max inside each; the AHD's unsaturated logit gap),
                or ``None`` to rank by the heatmap.
        """
        if gt_masks is not None and gt_boxes is not None:
            raise ValueError("pass either gt_masks or gt_boxes, not both (gt_boxes are exact; prefer them)")
        heat = torch.as_tensor(heatmaps).detach()
        batch = len(video_ids)
        if heat.ndim != 4 or heat.shape[0] != batch:
            raise ValueError(f"heatmaps must be (B, T, h, w) with B = {batch} video ids, got {tuple(heat.shape)}")
        index = torch.as_tensor(frame_index).detach().long().cpu().reshape(batch, -1)
        if index.shape[1] != heat.shape[1]:
            raise ValueError(f"frame_index {tuple(index.shape)} does not match heatmaps {tuple(heat.shape)}")
        sizes = torch.as_tensor(original_size).detach().long().cpu().reshape(batch, 2)
        if gt_boxes is not None and len(gt_boxes) != batch:
            raise ValueError(f"gt_boxes must hold one (n, 6) array per sample ({batch}), got {len(gt_boxes)}")
        heat = heat.float().cpu().numpy()
        ranking = None if scores is None else torch.as_tensor(scores).detach().float().cpu().numpy()
        if ranking is not None and ranking.shape != heat.shape:
            raise ValueError(f"scores {ranking.shape} must have the heatmaps' shape {heat.shape}")
        occurrences = self.take_occurrences(batch)
        for b, video_id in enumerate(video_ids):
            vid, occ = video_hash(video_id), occurrences[b]
            frames = index[b].numpy()
            real = frames[frames >= 0]
            self._append("seen", vid, occ, real)
            dets = heatmap_to_detections(heat[b], frames, sizes[b], threshold=self.threshold,
                                         scores=None if ranking is None else ranking[b])
            self._append("det", vid, occ, dets[:, 0].astype(np.int64), det_box=dets[:, 1:5], det_score=dets[:, 5])
            if gt_masks is not None:
                rows = masks_to_frame_boxes(gt_masks[b], frames, original_size=sizes[b])
                self._append("gt", vid, occ, rows[:, 0], gt_box=rows[:, 1:5],
                             gt_track=np.full(len(rows), _UNLINKED, dtype=np.int64))
            elif gt_boxes is not None:
                rows = torch.as_tensor(gt_boxes[b]).detach().cpu().numpy().reshape(-1, 6)
                if (rows[:, 1] < 0).any():
                    raise ValueError(f"gt_boxes of {video_id!r}: track ids must be >= 0, got {rows[:, 1].min()}")
                self._append("gt", vid, occ, rows[:, 0].astype(np.int64), gt_box=rows[:, 2:6],
                             gt_track=rows[:, 1].astype(np.int64))

    def _append(self, prefix: str, video: int, occurrence: int, frames: np.ndarray, **columns: np.ndarray) -> None:
        n = len(frames)
        self.append_rows(**{
            f"{prefix}_video": np.full(n, video, dtype=np.int64),
            f"{prefix}_frame": np.asarray(frames, dtype=np.int64),
            f"{prefix}_occurrence": np.full(n, occurrence, dtype=np.int64),
            **columns,
        })

    def compute(self) -> dict[str, torch.Tensor]:
        seen_v, seen_f, seen_o = (self.rows(f"seen_{c}") for c in ("video", "frame", "occurrence"))
        det_v, det_f, det_o = (self.rows(f"det_{c}") for c in ("video", "frame", "occurrence"))
        gt_v, gt_f, gt_o = (self.rows(f"gt_{c}") for c in ("video", "frame", "occurrence"))
        # keep, per (video, frame), only the rows of its first occurrence (DistributedSampler repeats clips)
        keys = np.stack([np.concatenate([seen_v, det_v, gt_v]), np.concatenate([seen_f, det_f, gt_f])], axis=1)
        keep = first_occurrence_mask(keys, np.concatenate([seen_o, det_o, gt_o]))
        n_seen, n_det = len(seen_v), len(det_v)
        keep_seen, keep_det, keep_gt = keep[:n_seen], keep[n_seen:n_seen + n_det], keep[n_seen + n_det:]
        _, num_frames = unique_row_ids(np.stack([seen_v[keep_seen], seen_f[keep_seen]], axis=1))
        gt_video, gt_track, gt_rows = self.link_gt_tracks(gt_v[keep_gt], gt_f[keep_gt], self.rows("gt_box")[keep_gt],
                                                      self.rows("gt_track")[keep_gt])
        nan = {"rbdc": torch.tensor(float("nan")), "tbdc": torch.tensor(float("nan"))}
        if num_frames == 0 or len(gt_rows) == 0:
            warnings.warn(f"RBDC/TBDC are undefined without ground-truth regions ({num_frames} frames seen, "
                          f"{len(gt_rows)} GT regions); returning NaN", RuntimeWarning, stacklevel=2)
            return nan
        curves = region_track_sweep(
            gt_video, gt_rows[:, 0].astype(np.int64), gt_rows[:, 1:5], gt_track,
            det_v[keep_det], det_f[keep_det], self.rows("det_box")[keep_det], self.rows("det_score")[keep_det],
            num_frames, alpha=self.alpha, beta=self.beta,
        )
        return {"rbdc": torch.tensor(curves.rbdc, dtype=torch.float32),
                "tbdc": torch.tensor(curves.tbdc, dtype=torch.float32)}

    def link_gt_tracks(
        self, video: np.ndarray, frame: np.ndarray, box: np.ndarray, track: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Regions with a global track id: given ids per (video, track), mask rows linked per video.

        Returns ``(video (R,), track (R,), rows (R, 5) frame, x1, y1, x2, y2)``.
        """
        rows = np.column_stack([frame.astype(np.float64), box]).reshape(-1, 5)
        given = track != _UNLINKED
        out_video = [video[given]]
        out_rows = [rows[given]]
        given_ids, next_id = unique_row_ids(np.stack([video[given], track[given]], axis=1))
        out_track = [given_ids]
        unlinked = ~given
        for v in np.unique(video[unlinked]):
            mine = unlinked & (video == v)
            for linked in link_boxes(rows[mine].astype(np.int64), link_iou=self.link_iou):
                out_video.append(np.full(len(linked), v, dtype=np.int64))
                out_rows.append(linked.astype(np.float64))
                out_track.append(np.full(len(linked), next_id, dtype=np.int64))
                next_id += 1
        return np.concatenate(out_video), np.concatenate(out_track), np.concatenate(out_rows).reshape(-1, 5)


class RBDC(RegionTrackDetection):
    """Only the region-based detection criterion of :class:`RegionTrackDetection` (a float32 scalar)."""

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()["rbdc"]


class TBDC(RegionTrackDetection):
    """Only the track-based detection criterion of :class:`RegionTrackDetection` (a float32 scalar)."""

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()["tbdc"]
