"""A (C+1)-way AHD for fine-grained categories, its text prototypes, and the weak (video-label) losses.

**Decoder.** :class:`CategoryHeatmapDecoder` is the AHD (``modules/ahd.py``, Eqs. 2–7) with ``K = C + 1``
prototypes instead of two: per cell a softmax over ``normal`` + C categories. The binary heatmap is
``1 − p(normal)``; the unsaturated score is its logit, ``logsumexp_{k≥1} l_k − l_0`` (so ``heatmap =
sigmoid(scores)`` as for the binary AHD); a frame's category is the argmax over categories of its frame score
(the spatial max of ``p_k``).

**Prototypes** (:func:`category_sentences`). Row 0 is the prompt bank's normal sentences; row ``k`` the bank's
abnormal sentence/phrase templates filled with category ``k``'s words (its name, plus synonyms if given).
Optionally, in the spirit of Ex-VAD's LAAM (label augmentation and alignment): descriptive sentences per
category (from a file), of which the ``top_k`` most similar to the category's template prototype are averaged
into it (:func:`augment_prototypes`).

**Weak losses** — multiple-instance learning over the heatmap, a *bag* being one training clip labelled with
its video's labels (use clips as long as the videos for true video bags):

* binary top-k MIL (XD-Violence's, Wu et al. ECCV 2020, as cited by Ex-VAD Eq. 11):
  ``L_bin = BCE( mean(top-k_{cells} s), y )`` with ``s = 1 − p(normal)`` per valid cell and ``y = 1`` for an
  abnormal video; ``k = ⌈k_ratio · #cells⌉``;
* category MIL-alignment (VadCLIP's MIL-Align): per class ``k`` the bag logit ``L_k = mean(top-k_{cells} l_k)``;
  ``L_cat = − Σ_k ŷ_k log softmax(L)_k`` with ``ŷ`` the video's multi-hot labels normalised to sum 1;
* optional smoothness ``λ_1 Σ_t (S_t − S_{t−1})²`` and sparsity ``λ_2 Σ_t S_t`` over per-step bag scores
  ``S_t = max_cells s`` (Sultani et al. CVPR 2018, Eq. 7), on abnormal bags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tvau_lightning.modules.ahd import AHDOutput, AnomalyHeatmapDecoder
from tvau_lightning.modules.grid import steps_to_frames
from tvau_lightning.modules.prompts import PromptBank


class CategoryHeatmapDecoder(AnomalyHeatmapDecoder):
    """The AHD with ``num_classes`` prototypes (row 0 = normal): :class:`AnomalyHeatmapDecoder` with
    ``num_classes = C + 1``; its ``class_maps``/``logits`` have ``K`` classes on dim 2."""

    def __init__(self, vision_dims: Sequence[int], text_dim: int, num_classes: int, **kwargs: Any) -> None:
        kwargs.pop("frame_head", None)  # the binary frame head has no meaning for K classes
        super().__init__(vision_dims, text_dim, num_classes=num_classes, **kwargs)


# --------------------------------------------------------------------------------------------- frame scores
def step_class_scores(out: AHDOutput) -> torch.Tensor:
    """Per-grid-step class scores ``(B, T', K)`` float32: for a category ``k ≥ 1`` the spatial max of ``p_k`` over
    the step's grid, for normal ``1 − max heatmap`` (the normal probability of the most anomalous cell)."""
    probs = out.logits.float().softmax(dim=2).flatten(3).amax(dim=3)  # (B, T', K)
    probs[:, :, 0] = 1.0 - out.heatmap.float().flatten(2).amax(dim=2)
    return probs


def frame_class_scores(out: AHDOutput, *, temporal_factor: int, num_frames: int) -> torch.Tensor:
    """Per-frame class scores ``(B, T, K)`` (:func:`step_class_scores`, each grid step over the ``temporal_factor``
    frames it covers): what ``WeakAHDTask`` ranks frames by for its category metrics and ``tvau analyze`` writes.
    A frame's category is the argmax over ``k ≥ 1``."""
    return steps_to_frames(step_class_scores(out), temporal_factor=temporal_factor, num_frames=num_frames)


# --------------------------------------------------------------------------------------------- prototypes
def category_words(name: str, synonyms: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Words of a category: its name in lower case with spaces (``RoadAccidents`` → ``road accidents``), plus
    ``synonyms[name]``."""
    spaced = "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(name)).lower().strip()
    return list(dict.fromkeys([spaced, *((synonyms or {}).get(name, []))]))


def category_sentences(
    bank: PromptBank, categories: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None
) -> list[list[str]]:
    """Sentences per class: index 0 the bank's normal sentences, index ``k`` the abnormal templates filled with
    ``categories[k]``'s words (``categories[0]`` is the normal class and is not used as a word)."""
    rows = [bank.sentences("normal")]
    for name in categories[1:]:
        words = category_words(name, synonyms)
        rows.append([s.format(p.format(w)) for s in bank.abnormal_sentences for p in bank.phrases for w in words])
    return rows


def augment_prototypes(
    prototypes: torch.Tensor, descriptions: Sequence[torch.Tensor | None], top_k: int = 4
) -> torch.Tensor:
    """LAAM-style label augmentation: row ``k`` becomes the mean of its template prototype and the ``top_k``
    description embeddings ``descriptions[k]`` ``(n_k, D)`` most cosine-similar to it (rows with ``None`` or no
    descriptions are kept). Returns ``(K, D)``."""
    out = prototypes.clone().float()
    for k, rows in enumerate(descriptions):
        if rows is None or len(rows) == 0:
            continue
        rows = rows.float()
        sims = F.normalize(rows, dim=-1) @ F.normalize(out[k], dim=-1)
        keep = rows[sims.topk(min(top_k, len(rows))).indices]
        out[k] = torch.cat([out[k : k + 1], keep]).mean(0)
    return out


# --------------------------------------------------------------------------------------------- weak losses
def _topk_mean(values: torch.Tensor, valid: torch.Tensor, k_ratio: float) -> torch.Tensor:
    """Mean of the top ``⌈k_ratio · n_valid⌉`` valid entries per row of ``values (B, N)`` (``valid (B, N)`` bool)."""
    masked = values.masked_fill(~valid, float("-inf"))
    counts = valid.sum(dim=1).clamp(min=1)
    k_max = int(max(1, math.ceil(k_ratio * int(counts.max()))))
    top = masked.topk(min(k_max, values.shape[1]), dim=1).values  # (B, k_max)
    ks = (counts.float() * k_ratio).ceil().clamp(min=1).long()
    take = torch.arange(top.shape[1], device=values.device)[None] < ks[:, None]
    return (top.masked_fill(~take, 0.0)).sum(dim=1) / take.sum(dim=1).clamp(min=1)


def binary_mil_loss(out: AHDOutput, step_valid: torch.Tensor, abnormal: torch.Tensor, k_ratio: float) -> torch.Tensor:
    """``L_bin``: BCE between the top-k mean of ``1 − p(normal)`` over a clip's valid cells and its video label.

    Args:
        out: the decoder output (``heatmap (B, T', H', W')``).
        step_valid: ``(B, T')`` bool, grid steps holding real frames.
        abnormal: ``(B,)`` bool video labels.
        k_ratio: fraction of a clip's cells averaged.
    """
    heat = out.heatmap.flatten(1)
    valid = step_valid[..., None, None].expand_as(out.heatmap).flatten(1)
    bag = _topk_mean(heat, valid, k_ratio).clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(bag, abnormal.float())


def category_mil_loss(
    out: AHDOutput, step_valid: torch.Tensor, video_labels: torch.Tensor, k_ratio: float
) -> torch.Tensor:
    """``L_cat``: cross-entropy between the softmax of per-class top-k bag logits and the normalised multi-hot
    video labels ``(B, K)``. A normal video's bag is the *bottom*-k of the normal logit's negation, i.e. the
    normal class must win everywhere — implemented by taking, for class 0, the mean of its top-k lowest cells."""
    logits = out.logits.movedim(2, -1)  # (B, T', H', W', K)
    batch, classes = logits.shape[0], logits.shape[-1]
    flat = logits.reshape(batch, -1, classes)  # (B, N, K)
    valid = step_valid[..., None, None].expand(out.logits.shape[0], out.logits.shape[1], *out.logits.shape[3:])
    valid = valid.reshape(batch, -1)
    bag = torch.stack([_topk_mean(flat[..., k], valid, k_ratio) for k in range(1, classes)], dim=1)
    normal = -_topk_mean(-flat[..., 0], valid, k_ratio)  # the normal class at its weakest cells
    bag = torch.cat([normal[:, None], bag], dim=1)  # (B, K)
    target = video_labels.float()
    target = target / target.sum(dim=1, keepdim=True).clamp(min=1.0)
    return -(target * bag.log_softmax(dim=1)).sum(dim=1).mean()


def temporal_regularisers(out: AHDOutput, step_valid: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothness ``Σ_t (S_t − S_{t−1})²`` and sparsity ``Σ_t S_t`` of per-step scores ``S_t = max_cells s`` on the
    valid steps of abnormal bags (Sultani et al. 2018, Eq. 7), averaged over those bags; zeros when none."""
    steps = out.heatmap.flatten(2).amax(dim=2) * step_valid  # (B, T')
    pair = step_valid[:, 1:] & step_valid[:, :-1]
    smooth = (((steps[:, 1:] - steps[:, :-1]) ** 2) * pair).sum(dim=1)
    sparse = steps.sum(dim=1)
    weight = abnormal.float()
    denominator = weight.sum().clamp(min=1.0)
    return (smooth * weight).sum() / denominator, (sparse * weight).sum() / denominator
