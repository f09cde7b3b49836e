"""The Region-aware Anomaly Encoder (paper §3.2.2, Eqs. 8–12; SPEC §4).

Class-wise heatmaps ``(B, T', 2, H', W')`` → temporal differences (motion) → a light conv backbone →
per step: 9 region prompts (3×3 adaptive average pooling + MLP), 1 global prompt (spatial mean + MLP) and
10 learnable base prompts → ``(T'−1) × 20`` prompt tokens of the LLM width. Three learned marker embeddings
(start, slot, end) frame the block in ``inputs_embeds``: ``[start, P_An + slot, end]`` — the slot marker is
added to every prompt token as a type embedding, so the user's tokenizer and vocabulary are never modified.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class RegionAwareAnomalyEncoder(nn.Module):
    """Heatmaps → anomaly prompt embeddings.

    Args:
        text_dim: ``D``, the language model's embedding width.
        in_channels: heatmap channels (2: normal, abnormal).
        hidden_channels: ``C_h``, width of the conv backbone.
        num_conv_layers: Conv2d(3×3)+GELU layers in the backbone.
        grid: region pooling grid (3×3 → 9 region prompts per step).
        num_base_tokens: ``N_base`` learnable base prompts shared across time (10).
        mlp_hidden: hidden width of the region/global MLPs; ``None`` → ``text_dim``.
    """

    def __init__(
        self,
        text_dim: int,
        *,
        in_channels: int = 2,
        hidden_channels: int = 64,
        num_conv_layers: int = 3,
        grid: tuple[int, int] = (3, 3),
        num_base_tokens: int = 10,
        mlp_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if num_conv_layers < 1:
            raise ValueError("num_conv_layers must be at least 1")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_conv_layers):
            layers += [nn.Conv2d(c, hidden_channels, kernel_size=3, padding=1), nn.GELU()]
            c = hidden_channels
        self.backbone = nn.Sequential(*layers)
        self.grid = tuple(grid)
        hidden = mlp_hidden or text_dim
        self.region_mlp = _mlp(hidden_channels, hidden, text_dim)
        self.global_mlp = _mlp(hidden_channels, hidden, text_dim)
        self.base_prompts = nn.Parameter(torch.randn(num_base_tokens, text_dim) * 0.02)
        self.marker_start = nn.Parameter(torch.randn(text_dim) * 0.02)
        self.marker_slot = nn.Parameter(torch.randn(text_dim) * 0.02)
        self.marker_end = nn.Parameter(torch.randn(text_dim) * 0.02)
        self.text_dim = text_dim

    @property
    def tokens_per_step(self) -> int:
        """``N_base + grid cells + 1`` (20 with the defaults)."""
        return self.base_prompts.shape[0] + self.grid[0] * self.grid[1] + 1

    def num_prompt_tokens(self, num_steps: int) -> int:
        """Prompt tokens for ``num_steps`` = T' heatmap steps, markers included: ``(T'−1)·20 + 2``."""
        if num_steps < 2:
            raise ValueError(f"the RAE needs at least 2 heatmap time steps (temporal differences), got {num_steps}")
        return (num_steps - 1) * self.tokens_per_step + 2

    def encode(self, class_maps: torch.Tensor) -> torch.Tensor:
        """``P_An`` without markers: ``(B, T', 2, H', W')`` → ``(B, T'−1, 20, D)`` (Eq. 12)."""
        if class_maps.dim() != 5:
            raise ValueError(f"expected class heatmaps (B, T', C, H', W'), got shape {tuple(class_maps.shape)}")
        b, t = class_maps.shape[:2]
        if t < 2:
            raise ValueError(f"the RAE needs at least 2 heatmap time steps (temporal differences), got {t}")
        x = class_maps[:, 1:] - class_maps[:, :-1]  # Eq. 8: motion, (B, T'-1, C, H', W')
        dtype = self.base_prompts.dtype
        feats = self.backbone(x.reshape(b * (t - 1), *x.shape[2:]).to(dtype))  # Eq. 9
        grid = nn.functional.adaptive_avg_pool2d(feats, self.grid).flatten(2).transpose(1, 2)  # (N, 9, C_h)
        region = self.region_mlp(grid)  # Eq. 10
        global_ = self.global_mlp(feats.mean(dim=(-2, -1))).unsqueeze(1)  # Eq. 11
        base = self.base_prompts.unsqueeze(0).expand(feats.shape[0], -1, -1)
        prompts = torch.cat([base, region, global_], dim=1)  # Eq. 12
        return prompts.reshape(b, t - 1, self.tokens_per_step, self.text_dim)

    def forward(self, class_maps: torch.Tensor) -> torch.Tensor:
        """The prompt block for ``inputs_embeds``: ``(B, K, D)`` with ``K = (T'−1)·20 + 2``:
        ``[start, P_An + slot, end]``."""
        prompts = self.encode(class_maps)
        b = prompts.shape[0]
        body = prompts.reshape(b, -1, self.text_dim) + self.marker_slot
        start = self.marker_start.expand(b, 1, -1)
        end = self.marker_end.expand(b, 1, -1)
        return torch.cat([start, body, end], dim=1)
