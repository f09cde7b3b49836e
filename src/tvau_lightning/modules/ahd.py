"""The Anomaly Heatmap Decoder (paper §3.2.1, Eqs. 2–7; SPEC §3).

Intermediate vision features of a frozen LVLM are projected per layer to the LLM width, compared by cosine
similarity with one normal and one abnormal text prototype, fused over layers with learnable weights, and
turned into a two-class softmax per spatio-temporal cell; the abnormal channel is the heatmap. A cell is
judged abnormal where p(abnormal) > p(normal), i.e. heatmap > 0.5 — no tuned threshold.

How the heatmap grid maps to frames and pixels (one grid step covers ``temporal_factor`` frames) is defined
once, in :mod:`tvau_lightning.modules.grid`.

Ranking frames and regions uses :attr:`AHDOutput.scores`, the fp32 logit gap, not the heatmap: in fp32 the
softmax reaches exactly 1.0 once the gap passes ~17 (and under bf16 much earlier), so heatmap values tie at
the top while the gap keeps their order.
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
        scores: ``(B, T', H', W')`` float32 anomaly scores ``(H_abn − H_norm)·scale``, the logit gap:
            ``heatmap = sigmoid(scores)``, so it ranks cells exactly as the heatmap does but never saturates.
            Frames and regions are ranked by it (AUC, RBDC/TBDC); ``scores > 0`` ⇔ ``heatmap > 0.5``.
    """

    class_maps: torch.Tensor
    logits: torch.Tensor
    heatmap: torch.Tensor
    frame_logits: torch.Tensor | None
    layer_weights: torch.Tensor
    scores: torch.Tensor


class AnomalyHeatmapDecoder(nn.Module):
    """Per-layer MLPs + cosine similarity with class prototypes + learnable layer fusion.

    Args:
        vision_dims: channel width ``C_i`` of each input layer (one MLP per layer).
        text_dim: ``D``, the width of the class prototypes (the LLM's embedding width).
        hidden_dim: hidden width of each 2-layer MLP; ``None`` → the layer's own width ``C_i`` (the paper's
            Table 4 AHD size, ≈ 24.96 M parameters at 7B shapes, is four 1280 → 1280 → 3584 MLPs; docs/metrics.md).
        logit_scale: softmax temperature multiplier on the cosine similarities (the author's prototype
            used 100).
        learnable_scale: learn the scale (stored as its log), else keep it fixed.
        fusion: ``softmax`` (weights are a softmax of learnable logits, so they stay positive and sum to
            1) or ``linear`` (raw learnable weights, initialised to 1/L).
        frame_head: add the optional frame-level classifier (off by default, as in the paper; binary only).
        num_classes: ``K`` prototypes, row 0 = normal: 2 for the paper's AHD, ``C + 1`` for fine-grained
            categories (then ``heatmap = 1 − p(normal)`` and ``scores`` its logit, ``logsumexp_{k≥1} l_k − l_0``).
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
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (normal + one anomaly class), got {num_classes}")
        if frame_head and num_classes != 2:
            raise ValueError("the frame-level head is binary: use it with num_classes=2")
        if not vision_dims:
            raise ValueError("AnomalyHeatmapDecoder needs at least one vision layer")
        if fusion not in ("softmax", "linear"):
            raise ValueError(f"fusion must be 'softmax' or 'linear', got {fusion!r}")
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(c, hidden_dim or c), nn.GELU(), nn.Linear(hidden_dim or c, text_dim))
            for c in vision_dims
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
        self.register_buffer("prototypes", torch.zeros(num_classes, text_dim), persistent=True)
        self.register_buffer("has_prototypes", torch.tensor(False), persistent=True)

    @property
    def num_layers(self) -> int:
        return len(self.projections)

    @property
    def num_classes(self) -> int:
        """``K``: normal + the anomaly classes (2 for the paper's binary AHD)."""
        return int(self.prototypes.shape[0])

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
        # the projections run at the weights' dtype, or at the autocast dtype under autocast — then bf16 features
        # go in as they are (an fp32 copy of a 7B-shaped clip's grids would only be cast back by autocast)
        autocast = torch.is_autocast_enabled(features[0].device.type)
        projected = [proj(feat if autocast else feat.to(proj[0].weight.dtype))
                     for proj, feat in zip(self.projections, features)]
        # cosine similarities, fusion and softmax in fp32 even under autocast: bf16 class maps would tie scores
        with torch.autocast(device_type=projected[0].device.type, enabled=False):
            text = F.normalize(prototypes.float(), dim=-1)
            sims = [torch.einsum("bthwd,cd->btchw", F.normalize(v.float(), dim=-1), text)  # Eq. 5, (B, T', 2, H', W')
                    for v in projected]
            class_maps = torch.einsum("l,lbtchw->btchw", weights.float(), torch.stack(sims))  # Eq. 6
            logits = class_maps * self.log_scale.float().exp()
            if self.num_classes == 2:
                heatmap = logits.softmax(dim=2)[:, :, 1]  # Eq. 7
                scores = logits[:, :, 1] - logits[:, :, 0]
            else:  # normal + C categories: anomalous = not normal; the score is the logit of 1 − p(normal)
                heatmap = 1.0 - logits.softmax(dim=2)[:, :, 0]
                scores = torch.logsumexp(logits[:, :, 1:], dim=2) - logits[:, :, 0]
        frame_logits = None
        if self.frame_head is not None:
            pooled = torch.cat([logits.amax(dim=(-2, -1)), logits.mean(dim=(-2, -1))], dim=-1)  # (B, T', 4)
            frame_logits = self.frame_head(pooled)
        return AHDOutput(class_maps, logits, heatmap, frame_logits, weights.detach(), scores)


def frame_scores(frame_maps: torch.Tensor) -> torch.Tensor:
    """Per-frame anomaly score ``(B, T)``: the spatial max of ``(B, T, H, W)`` maps (heatmaps or the unsaturated
    :attr:`AHDOutput.scores` brought to frames with :func:`~tvau_lightning.modules.grid.upsample_scores`)."""
    return frame_maps.flatten(2).amax(dim=2)

