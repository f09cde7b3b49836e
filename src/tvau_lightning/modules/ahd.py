"""The Anomaly Heatmap Decoder (paper §3.2.1, Eqs. 2–7; SPEC §3).

Intermediate vision features of a frozen LVLM are projected per layer to the LLM width, compared by cosine
similarity with one normal and one abnormal text prototype, fused over layers with learnable weights, and
turned into a two-class softmax per spatio-temporal cell; the abnormal channel is the heatmap. A cell is
judged abnormal where p(abnormal) > p(normal), i.e. heatmap > 0.5 — no tuned threshold.

The grid helpers (mask downsampling for training, heatmap upsampling for evaluation) live here too, since
they define how the heatmap grid maps to frames: one grid step covers ``temporal_factor`` frames
(2 for Qwen2.5-VL, 1 for per-frame towers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AHDOutput:
    """What the AHD returns for a batch of clips.

    Attributes:
        class_maps: ``(B, T', 2, H', W')`` fused cosine similarities ``H_c = Σ_i w_i h_c^i`` (Eq. 6),
            class 0 = normal, 1 = abnormal, values in [-1, 1]; the RAE's input.
        logits: ``(B, T', 2, H', W')`` ``class_maps`` times the logit scale (the softmax temperature).
        heatmap: ``(B, T', H', W')`` p(abnormal) in [0, 1] (Eq. 7).
        frame_logits: ``(B, T', 2)`` from the optional frame-level head, else ``None``.
        layer_weights: ``(L,)`` the normalised fusion weights ``w_i``.
    """

    class_maps: torch.Tensor
    logits: torch.Tensor
    heatmap: torch.Tensor
    frame_logits: torch.Tensor | None
    layer_weights: torch.Tensor


class AnomalyHeatmapDecoder(nn.Module):
    """Per-layer MLPs + cosine similarity with class prototypes + learnable layer fusion.

    Args:
        vision_dims: channel width ``C_i`` of each input layer (one MLP per layer).
        text_dim: ``D``, the width of the class prototypes (the LLM's embedding width).
        hidden_dim: hidden width of each 2-layer MLP; ``None`` → ``text_dim``.
        logit_scale: softmax temperature multiplier on the cosine similarities (the author's prototype
            used 100).
        learnable_scale: learn the scale (stored as its log), else keep it fixed.
        fusion: ``softmax`` (weights are a softmax of learnable logits, so they stay positive and sum to
            1) or ``linear`` (raw learnable weights, initialised to 1/L).
        frame_head: add the optional frame-level classifier (off by default, as in the paper).
    """

    def __init__(
        self,
        vision_dims: Sequence[int],
        text_dim: int,
        *,
        hidden_dim: int | None = None,
        logit_scale: float = 100.0,
        learnable_scale: bool = False,
        fusion: str = "softmax",
        frame_head: bool = False,
    ) -> None:
        super().__init__()
        if not vision_dims:
            raise ValueError("AnomalyHeatmapDecoder needs at least one vision layer")
        if fusion not in ("softmax", "linear"):
            raise ValueError(f"fusion must be 'softmax' or 'linear', got {fusion!r}")
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        hidden = hidden_dim or text_dim
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, text_dim)) for c in vision_dims
        )
        self.fusion = fusion
        n = len(vision_dims)
        init = torch.zeros(n) if fusion == "softmax" else torch.full((n,), 1.0 / n)
        self.layer_logits = nn.Parameter(init)
        log_scale = torch.tensor(math.log(logit_scale))
        if learnable_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale, persistent=True)
        self.frame_head = nn.Linear(4, 2) if frame_head else None
        self.register_buffer("prototypes", torch.zeros(2, text_dim), persistent=True)
        self.register_buffer("has_prototypes", torch.tensor(False), persistent=True)

    @property
    def num_layers(self) -> int:
        return len(self.projections)

    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        """Store the class prototypes ``(2, D)`` (row 0 normal, row 1 abnormal); saved with the weights."""
        if prototypes.shape != self.prototypes.shape:
            raise ValueError(f"prototypes must have shape {tuple(self.prototypes.shape)}, got {tuple(prototypes.shape)}")
        self.prototypes.copy_(prototypes.detach().to(self.prototypes))
        self.has_prototypes.fill_(True)

    def layer_weights(self) -> torch.Tensor:
        """The fusion weights ``w`` ``(L,)``."""
        return self.layer_logits.softmax(0) if self.fusion == "softmax" else self.layer_logits

    def forward(self, features: Sequence[torch.Tensor], prototypes: torch.Tensor | None = None) -> AHDOutput:
        """Heatmaps from per-layer features.

        Args:
            features: one ``(B, T', H', W', C_i)`` tensor per layer, in the order of ``vision_dims``.
            prototypes: ``(2, D)`` class prototypes; defaults to the stored ones.
        """
        if len(features) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} feature layers, got {len(features)}")
        if prototypes is None:
            if not bool(self.has_prototypes):
                raise RuntimeError("no class prototypes: call set_prototypes() or pass prototypes=")
            prototypes = self.prototypes
        weights = self.layer_weights()
        text = F.normalize(prototypes.float(), dim=-1)
        sims = []
        for proj, feat in zip(self.projections, features):
            v = F.normalize(proj(feat.to(proj[0].weight.dtype)).float(), dim=-1)
            sims.append(torch.einsum("bthwd,cd->btchw", v, text))  # Eq. 5, (B, T', 2, H', W')
        class_maps = torch.einsum("l,lbtchw->btchw", weights.float(), torch.stack(sims))  # Eq. 6
        logits = class_maps * self.log_scale.exp()
        heatmap = logits.softmax(dim=2)[:, :, 1]  # Eq. 7
        frame_logits = None
        if self.frame_head is not None:
            pooled = torch.cat([logits.amax(dim=(-2, -1)), logits.mean(dim=(-2, -1))], dim=-1)  # (B, T', 4)
            frame_logits = self.frame_head(pooled)
        return AHDOutput(class_maps, logits, heatmap, frame_logits, weights.detach())


# --------------------------------------------------------------------------------------------------
# Grid ↔ frames
# --------------------------------------------------------------------------------------------------


def _pad_time(x: torch.Tensor, factor: int, dim: int = 1) -> torch.Tensor:
    """Pad dim ``dim`` to a multiple of ``factor`` by repeating the last step (as the video processor does)."""
    t = x.shape[dim]
    rem = (-t) % factor
    if rem == 0:
        return x
    last = x.narrow(dim, t - 1, 1)
    return torch.cat([x] + [last] * rem, dim=dim)


def downsample_masks(
    masks: torch.Tensor, grid: tuple[int, int, int], *, temporal_factor: int, mode: str = "area", area_threshold: float = 0.5
) -> torch.Tensor:
    """GT pixel masks ``(B, T, H, W)`` → grid targets ``(B, T', H', W')`` (float 0/1).

    Temporal: max over each group of ``temporal_factor`` frames (the paper's pairwise merge). Spatial:
    ``area`` marks a cell abnormal when at least ``area_threshold`` of its pixels are; ``nearest`` samples
    the cell centre; ``max`` marks a cell touched by any abnormal pixel.
    """
    t_out, h_out, w_out = grid
    m = _pad_time(masks.float(), temporal_factor)
    b, t = m.shape[:2]
    m = m.reshape(b, t // temporal_factor, temporal_factor, *m.shape[2:]).amax(dim=2)
    if m.shape[1] != t_out:
        raise ValueError(f"{masks.shape[1]} frames give {m.shape[1]} grid steps, expected {t_out}")
    flat = m.reshape(b * t_out, 1, *m.shape[2:])
    if mode == "area":
        out = (F.adaptive_avg_pool2d(flat, (h_out, w_out)) >= area_threshold).float()
    elif mode == "nearest":
        out = F.interpolate(flat, size=(h_out, w_out), mode="nearest")
    elif mode == "max":
        out = F.adaptive_max_pool2d(flat, (h_out, w_out))
    else:
        raise ValueError(f"mask downsampling mode must be area, nearest or max, got {mode!r}")
    return out.reshape(b, t_out, h_out, w_out)


def downsample_valid(valid: torch.Tensor, *, temporal_factor: int) -> torch.Tensor:
    """Frame validity ``(B, T)`` → grid-step validity ``(B, T')``: a step counts if any of its frames is real."""
    v = _pad_time(valid.float(), temporal_factor)
    return v.reshape(v.shape[0], -1, temporal_factor).amax(dim=2) > 0


def upsample_heatmap(
    heatmap: torch.Tensor, *, num_frames: int, frame_size: tuple[int, int], temporal_factor: int
) -> torch.Tensor:
    """Grid heatmap ``(B, T', H', W')`` → frame heatmap ``(B, T, H, W)``: bilinear in space, each grid
    step repeated for its ``temporal_factor`` frames, trimmed to ``num_frames`` (SPEC §3 evaluation)."""
    b, t_grid = heatmap.shape[:2]
    up = F.interpolate(heatmap.reshape(b * t_grid, 1, *heatmap.shape[2:]).float(), size=frame_size,
                       mode="bilinear", align_corners=False)
    up = up.reshape(b, t_grid, *frame_size).repeat_interleave(temporal_factor, dim=1)
    if up.shape[1] < num_frames:
        raise ValueError(f"{t_grid} grid steps × {temporal_factor} cover fewer than {num_frames} frames")
    return up[:, :num_frames].clamp_(0.0, 1.0)


def frame_scores(frame_heatmap: torch.Tensor) -> torch.Tensor:
    """Per-frame anomaly score ``(B, T)``: the spatial max of ``(B, T, H, W)`` heatmaps."""
    return frame_heatmap.flatten(2).amax(dim=2)

