"""A fast Qwen2.5-VL vision path: the stock transformers blocks, with window attention batched (SPEC §7).

The stock ``Qwen2_5_VisionTransformerPretrainedModel`` (transformers 5.x, SDPA/eager attention) splits the
window-ordered token sequence at ``cu_seqlens`` and calls attention once per window: a Python loop of
~16 windows × frames per block, which keeps an H100 at ~6 % of its bf16 peak (70 frames/s on a 16×448² clip).
:class:`FastQwen2_5VisionTower` runs the same computation with the *same* ``nn.Parameter`` objects (it wraps
the stock module; nothing is copied), but groups attention segments of equal length and calls
``torch.nn.functional.scaled_dot_product_attention`` once per group on a ``(segments, heads, length, head_dim)``
batch:

* window blocks: when every window of the batch has the same number of tokens (``H'`` and ``W'`` in merged
  units divisible by the window size, e.g. 448² → 16×16 merged units, 4×4 windows of 4×4 units), the
  window-ordered sequence is simply viewed as ``(num_windows, window_len, heads, head_dim)``: one SDPA call,
  no gather.
* full-attention blocks (``fullatt_block_indexes``): Qwen2.5-VL's "full" attention spans **one frame**
  (one temporal grid step), not the whole clip — the stock ``cu_seqlens`` has one segment per frame. Frames
  of equal size are batched the same way.
* ragged grids (edge windows smaller than the interior ones, or videos of different sizes in one batch):
  segments are grouped by length — at most four window lengths per grid (interior, right edge, bottom edge,
  corner) — and each group is gathered, attended with one SDPA call without any mask, and scattered back.
  This is exact (no padding, no mask, no wasted FLOPs) and still a handful of calls instead of one per window.
  Groups that are one contiguous run of the sequence are sliced rather than gathered.

Everything outside attention (patch embedding, 2-D rotary embedding, RMSNorms, MLPs, merger) calls the stock
submodules, so LoRA wrappers, dtype/device moves and loaded weights are seen by both paths. Differences from
the stock module, all deliberate: attention always goes through SDPA (the stock module's
``_attn_implementation`` — eager / sdpa / flash — is not consulted), forward hooks registered on the stock
*blocks* do not fire (blocks are run through their submodules), and ``output_attentions`` is not offered.

Token order: like the stock tower, blocks run in *window-permuted* order. Groups of ``spatial_merge_size²``
consecutive tokens are one merged unit (a 2×2 patch square, in (row, column) order); the merged units are
ordered window by window (``window_index``). :func:`window_order_to_grids` undoes both to row-major
``(T', H', W', C)`` grids: argsort of the window index in groups of ``spatial_merge_size²`` tokens, then unfold
the 2×2 merge order.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn

__all__ = [
    "AttentionGroup",
    "AttentionLayout",
    "CompileFallbackWarning",
    "FastQwen2_5VisionTower",
    "FastVisionOutput",
    "SyncWarning",
    "WindowPlan",
    "build_window_plan",
    "window_order_to_grids",
]


class SyncWarning(UserWarning):
    """A call that makes the host wait for the device (e.g. reading the values of a GPU tensor)."""


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` is unavailable or failed; the fast tower runs eagerly."""


def _warn_compile_fallback(error: BaseException) -> None:
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    warnings.warn(
        f"torch.compile of the fast Qwen2.5-VL vision blocks is unavailable ({type(error).__name__}: {first}); "
        "running them eagerly (same results, slower). Set compile_vision: false to silence this, or install a "
        "working compiler toolchain (inductor needs a C++ compiler on CPU, Triton on GPU)",
        CompileFallbackWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------------------------------
# Attention layouts: which tokens attend to which, as groups of equal-length segments
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionGroup:
    """``count`` attention segments of ``length`` tokens each.

    Attributes:
        length: tokens per segment.
        count: number of segments in the group.
        start: the group is the contiguous run ``[start, start + count·length)`` of the sequence, or ``None``.
        index: ``(count·length,)`` long — sequence positions of the group's tokens (segment-major), when the
            group is not contiguous; ``None`` when ``start`` is set.
    """

    length: int
    count: int
    start: int | None
    index: torch.Tensor | None

    @property
    def num_tokens(self) -> int:
        return self.length * self.count

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of ``x`` ``(N, ...)`` that belong to this group, segment-major ``(count·length, ...)``."""
        if self.start is not None:
            return x[self.start : self.start + self.num_tokens]
        return x.index_select(0, self.index)


@dataclass(frozen=True)
class AttentionLayout:
    """A packed sequence's attention segments (from ``cu_seqlens``), grouped by length for batched SDPA.

    Attributes:
        groups: equal-length groups; concatenating their tokens gives a permutation of the sequence.
        inverse: ``(N,)`` long — row ``i`` of the sequence is row ``inverse[i]`` of the concatenated group
            outputs; ``None`` when the concatenation is already in sequence order.
        num_tokens: N, the sequence length.
    """

    groups: tuple[AttentionGroup, ...]
    inverse: torch.Tensor | None
    num_tokens: int

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor | Sequence[int], device: torch.device) -> AttentionLayout:
        """Group the segments ``[cu[i], cu[i+1])`` of a sequence by length (empty segments are dropped).

        ``cu_seqlens`` ``(S + 1,)`` starts at 0 and ends at N, as the stock tower's ``cu_seqlens``.
        """
        cu = [int(c) for c in (cu_seqlens.tolist() if isinstance(cu_seqlens, torch.Tensor) else cu_seqlens)]
        if not cu or cu[0] != 0 or any(b < a for a, b in zip(cu[:-1], cu[1:])):
            raise ValueError(f"cu_seqlens must start at 0 and never decrease, got {cu[:8]}…")
        starts_by_len: dict[int, list[int]] = {}
        for a, b in zip(cu[:-1], cu[1:]):
            if b > a:
                starts_by_len.setdefault(b - a, []).append(a)
        groups: list[AttentionGroup] = []
        positions: list[torch.Tensor] = []  # each group's token positions, on the CPU
        for length, starts in sorted(starts_by_len.items(), key=lambda item: item[1][0]):
            st = torch.tensor(starts, dtype=torch.long)
            pos = (st[:, None] + torch.arange(length)[None, :]).reshape(-1)
            positions.append(pos)
            if all(s1 - s0 == length for s0, s1 in zip(starts[:-1], starts[1:])):
                groups.append(AttentionGroup(length, len(starts), starts[0], None))  # a contiguous run: slice
            else:
                groups.append(AttentionGroup(length, len(starts), None, pos.to(device)))
        order = torch.cat(positions)
        inverse = None
        if not torch.equal(order, torch.arange(cu[-1])):
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel())
            inverse = inverse.to(device)
        return cls(groups=tuple(groups), inverse=inverse, num_tokens=cu[-1])

    @property
    def is_dense(self) -> bool:
        """One group covering the sequence in order: attention is a plain reshape, no gather/scatter."""
        return len(self.groups) == 1 and self.inverse is None


# --------------------------------------------------------------------------------------------------
# The per-grid plan: window order, rotary positions, attention layouts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowPlan:
    """Everything about token order that depends only on ``grid_thw`` (computed once per grid, cached).

    Attributes:
        grid_thw: ``((t, h, w), ...)`` patch grid per video (``t`` temporal steps of ``temporal_patch_size``
            frames; ``h``, ``w`` in patches).
        spatial_merge_size: side of a merged unit in patches (2).
        window_index: ``(N / s²,)`` long — the stock ``window_index``: merged unit ``window_index[j]`` (in the
            input's block-major order) is the ``j``-th merged unit of the window-ordered sequence.
        reverse_index: ``(N / s²,)`` long — ``argsort(window_index)``; window order → input order.
        position_ids: ``(N, 2)`` long — (row, column) of every token in window order (for the 2-D rotary).
        window_layout: attention segments of the window-attention blocks.
        full_layout: attention segments of the full-attention blocks (one per frame).
    """

    grid_thw: tuple[tuple[int, int, int], ...]
    spatial_merge_size: int
    window_index: torch.Tensor
    reverse_index: torch.Tensor
    position_ids: torch.Tensor
    window_layout: AttentionLayout
    full_layout: AttentionLayout

    @property
    def num_tokens(self) -> int:
        return self.window_layout.num_tokens


def _window_index(
    grid_thw: Sequence[tuple[int, int, int]], spatial_merge_size: int, merger_window: int
) -> tuple[torch.Tensor, list[int]]:
    """The stock window order (``transformers.vision_utils.get_vision_window_index``), computed by sorting.

    Merged units are ordered by (frame, window row, window column, row, column): frame-major, windows
    row-major within a frame, units row-major within a window; windows at the right/bottom edge are cut
    short when the merged grid is not a multiple of the window. Returns ``window_index`` ``(N / s²,)`` and
    ``cu_window_seqlens`` in tokens.
    """
    unit = spatial_merge_size**2
    indices, lengths, offset = [], [], 0
    for t, h, w in grid_thw:
        gh, gw = h // spatial_merge_size, w // spatial_merge_size
        nwh, nww = -(-gh // merger_window), -(-gw // merger_window)
        ti = torch.arange(t)[:, None, None]
        r = torch.arange(gh)[None, :, None]
        c = torch.arange(gw)[None, None, :]
        window = (ti * nwh + r // merger_window) * nww + c // merger_window  # (t, gh, gw) window id
        key = (window * (gh * gw) + r * gw + c).reshape(-1)
        indices.append(torch.argsort(key) + offset)
        lengths.append(torch.bincount(window.reshape(-1), minlength=t * nwh * nww))
        offset += t * gh * gw
    cu = [0]
    for n in torch.cat(lengths).tolist():
        cu.append(cu[-1] + n * unit)
    return torch.cat(indices), cu


def _block_major_positions(grid_thw: Sequence[tuple[int, int, int]], s: int) -> torch.Tensor:
    """``(N, 2)`` (row, column) of every patch in the input's block-major order (``s×s`` squares)."""
    out = []
    for t, h, w in grid_thw:
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        shape = (h // s, s, w // s, s)
        rows = rows.reshape(shape).transpose(1, 2).reshape(-1)
        cols = cols.reshape(shape).transpose(1, 2).reshape(-1)
        out.append(torch.stack([rows, cols], dim=-1).repeat(t, 1))
    return torch.cat(out)


def build_window_plan(
    grid_thw: torch.Tensor | Sequence[Sequence[int]],
    *,
    spatial_merge_size: int,
    window_size: int,
    patch_size: int,
    device: torch.device | str = "cpu",
) -> WindowPlan:
    """The :class:`WindowPlan` of a batch of videos with patch grids ``grid_thw`` ``(B, 3)``.

    ``window_size`` is in pixels (112 for Qwen2.5-VL), as in the vision config; a window spans
    ``window_size // spatial_merge_size // patch_size`` merged units per side.
    """
    grid = _check_grid(grid_thw, spatial_merge_size)
    merger_window = window_size // spatial_merge_size // patch_size
    if merger_window < 1:
        raise ValueError(
            f"window_size={window_size} is smaller than one merged unit "
            f"(spatial_merge_size·patch_size = {spatial_merge_size * patch_size} pixels); fix the vision config"
        )
    device = torch.device(device)
    unit = spatial_merge_size**2
    window_index, cu_window = _window_index(grid, spatial_merge_size, merger_window)
    token_order = (window_index[:, None] * unit + torch.arange(unit)[None, :]).reshape(-1)
    position_ids = _block_major_positions(grid, spatial_merge_size)[token_order]
    cu_full = [0]
    for t, h, w in grid:
        for _ in range(t):
            cu_full.append(cu_full[-1] + h * w)
    return WindowPlan(
        grid_thw=grid,
        spatial_merge_size=spatial_merge_size,
        window_index=window_index.to(device),
        reverse_index=torch.argsort(window_index).to(device),
        position_ids=position_ids.to(device),
        window_layout=AttentionLayout.from_cu_seqlens(cu_window, device),
        full_layout=AttentionLayout.from_cu_seqlens(cu_full, device),
    )


def _check_grid(grid_thw: torch.Tensor | Sequence[Sequence[int]], s: int) -> tuple[tuple[int, int, int], ...]:
    """``grid_thw`` as a tuple of ``(t, h, w)`` ints. Pass it as a CPU tensor or as Python ints: reading a GPU
    tensor's values waits for the device (a host sync per forward), so that case warns."""
    if isinstance(grid_thw, torch.Tensor):
        if grid_thw.device.type != "cpu":
            warnings.warn(
                f"grid_thw is on {grid_thw.device}: reading it forces a host sync on every forward; pass the "
                "patch grids as Python ints or a CPU tensor (the adapter keeps them on the CPU)",
                SyncWarning,
                stacklevel=3,
            )
        rows = grid_thw.tolist()
    else:
        rows = [list(r) for r in grid_thw]
    if not rows or any(len(r) != 3 for r in rows):
        raise ValueError(f"grid_thw must be a (num_videos, 3) list of (t, h, w) patch grids, got {rows!r}")
    grid = tuple((int(t), int(h), int(w)) for t, h, w in rows)
    for i, (t, h, w) in enumerate(grid):
        if t < 1 or h < 1 or w < 1 or h % s or w % s:
            raise ValueError(
                f"grid_thw[{i}] = {(t, h, w)}: t, h, w must be positive and h, w multiples of "
                f"spatial_merge_size={s} (frame sides must be multiples of patch_size·{s} pixels)"
            )
    return grid


def window_order_to_grids(hidden: torch.Tensor, plan: WindowPlan) -> list[torch.Tensor]:
    """Window-ordered tokens ``(N, C)`` → one row-major grid ``(T', H', W', C)`` per video.

    ``[t, r, c]`` of a grid is the patch at row ``r``, column ``c`` of temporal step ``t``. Undoes the window
    permutation (``reverse_index``, in groups of ``s²`` tokens) and then the ``s×s`` merge order.
    """
    s = plan.spatial_merge_size
    unit = s * s
    if hidden.dim() != 2 or hidden.shape[0] != plan.num_tokens:
        raise ValueError(
            f"expected window-ordered tokens of shape ({plan.num_tokens}, C) for grids {plan.grid_thw}, "
            f"got {tuple(hidden.shape)}"
        )
    c = hidden.shape[-1]
    units = hidden.reshape(-1, unit, c).index_select(0, plan.reverse_index.to(hidden.device))
    grids, offset = [], 0
    for t, h, w in plan.grid_thw:
        n = t * (h // s) * (w // s)
        grids.append(rearrange(units[offset : offset + n], "(t h w) (s1 s2) c -> t (h s1) (w s2) c",
                               t=t, h=h // s, w=w // s, s1=s))
        offset += n
    return grids


# --------------------------------------------------------------------------------------------------
# The tower
# --------------------------------------------------------------------------------------------------


@dataclass
class FastVisionOutput:
    """One pass of :class:`FastQwen2_5VisionTower`.

    Attributes:
        hidden_states: requested layer → ``(N, C_vis)`` tokens in window-permuted order (as the stock
            ``output_hidden_states``): layer ``k ≥ 1`` is the output of block ``k`` (1-based), layer 0 the
            block input (patch embeddings).
        last_hidden_state: ``(N, C_vis)`` output of the last block in window-permuted order (the stock
            ``last_hidden_state``), or ``None`` when the pass stopped early.
        pooler_output: ``(N / s², D)`` merger output in input (block-major) order — the stock
            ``pooler_output``, the LLM's visual tokens — or ``None`` when not requested.
        plan: the token-order plan of this batch (for :meth:`grids` / :func:`window_order_to_grids`).
    """

    hidden_states: dict[int, torch.Tensor]
    last_hidden_state: torch.Tensor | None
    pooler_output: torch.Tensor | None
    plan: WindowPlan

    def grids(self, layer: int) -> list[torch.Tensor]:
        """Layer ``layer`` as one row-major ``(T', H', W', C_vis)`` grid per video."""
        if layer not in self.hidden_states:
            raise KeyError(f"layer {layer} was not requested; available: {sorted(self.hidden_states)}")
        return window_order_to_grids(self.hidden_states[layer], self.plan)

    def stacked_grid(self, layer: int) -> torch.Tensor:
        """Layer ``layer`` as ``(B, T', H', W', C_vis)``; all videos must share one grid."""
        if len(set(self.plan.grid_thw)) != 1:
            raise ValueError(
                f"videos have different grids {self.plan.grid_thw}; use .grids(layer) for one tensor per video"
            )
        return torch.stack(self.grids(layer))


class FastQwen2_5VisionTower(nn.Module):
    """The stock Qwen2.5-VL vision tower with window attention batched into few SDPA calls.

    Wraps (registers, does not copy) a ``Qwen2_5_VisionTransformerPretrainedModel``; ``fast.visual`` is that
    module, so ``fast.parameters()`` are the stock parameters.

    Args:
        visual: the stock tower (``model.model.visual`` of a ``Qwen2_5_VLForConditionalGeneration``).
        compile: run each block through ``torch.compile`` (one compiled graph per block kind, grid and dtype:
            the blocks always run with autocast off, at the weights' dtype, so entering or leaving autocast never
            recompiles). When compiling is unavailable or fails, the blocks run eagerly after one warning.
        compile_options: keyword arguments for ``torch.compile`` (``mode``, ``dynamic``, ``fullgraph``,
            ``backend``; ``BackboneConfig.compile_options()`` builds them from the config).
        patch_embed_matmul: compute the patch embedding (a ``Conv3d`` whose stride equals its kernel) as one
            matrix product with the same weight — the same sums in a different kernel, ~6× faster than the
            Conv3d on a CPU (cuDNN's bf16 Conv3d is also known to be slow); differences are float rounding
            (~1e-6 relative in fp32). ``False`` calls the stock module (bit-identical layer 0).
        plan_cache_size: how many grids' :class:`WindowPlan` to keep.

    Example::

        fast = FastQwen2_5VisionTower(model.model.visual)
        out = fast(pixel_values, video_grid_thw, layers=[1, 8, 16, 32], return_merged=True)
        feats = out.stacked_grid(8)          # (B, T', H', W', C_vis), row-major
        visual_tokens = out.pooler_output    # (B·T'·H'·W' / 4, D), as the stock tower
    """

    def __init__(
        self,
        visual: nn.Module,
        *,
        compile: bool = False,
        compile_options: dict[str, Any] | None = None,
        patch_embed_matmul: bool = True,
        plan_cache_size: int = 16,
    ) -> None:
        super().__init__()
        missing = [a for a in ("patch_embed", "rotary_pos_emb", "blocks", "merger", "config") if not hasattr(visual, a)]
        if missing:
            raise TypeError(
                f"{type(visual).__name__} is not a Qwen2.5-VL vision tower (missing {missing}); pass "
                "model.model.visual of a Qwen2_5_VLForConditionalGeneration"
            )
        self.visual = visual
        cfg = visual.config
        self.spatial_merge_size = int(cfg.spatial_merge_size)
        self.window_size = int(cfg.window_size)
        self.patch_size = int(cfg.patch_size)
        self.fullatt_block_indexes = frozenset(int(i) for i in cfg.fullatt_block_indexes)
        self.depth = len(visual.blocks)
        self.compile = compile
        self.compile_options = dict(compile_options or {})
        self.patch_embed_matmul = patch_embed_matmul
        self._compiled_block: Callable[..., torch.Tensor] | None = None
        if compile:
            try:
                self._compiled_block = torch.compile(self._block_forward, **self.compile_options)
            except Exception as err:  # noqa: BLE001 - no compiler on this install: eager, with a warning
                _warn_compile_fallback(err)
        self._plans: OrderedDict[tuple[Any, ...], WindowPlan] = OrderedDict()
        self._plan_cache_size = plan_cache_size

    # ---- plan ------------------------------------------------------------------------------------

    def plan(self, grid_thw: torch.Tensor | Sequence[Sequence[int]], device: torch.device | str) -> WindowPlan:
        """The cached :class:`WindowPlan` for ``grid_thw`` ``(B, 3)`` on ``device``."""
        grid = _check_grid(grid_thw, self.spatial_merge_size)
        key = (grid, str(torch.device(device)))
        plan = self._plans.get(key)
        if plan is None:
            plan = build_window_plan(
                grid,
                spatial_merge_size=self.spatial_merge_size,
                window_size=self.window_size,
                patch_size=self.patch_size,
                device=device,
            )
            self._plans[key] = plan
            while len(self._plans) > self._plan_cache_size:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    # ---- forward ---------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor,
        grid_thw: torch.Tensor | Sequence[Sequence[int]],
        layers: Sequence[int] = (),
        return_merged: bool = True,
    ) -> FastVisionOutput:
        """One vision pass.

        Args:
            pixel_values: ``(N, C·temporal_patch_size·patch_size²)`` flattened patches in the Qwen2.5-VL
                processor's block-major order (as the stock tower takes them).
            grid_thw: ``(B, 3)`` patch grid ``(t, h, w)`` per video (``video_grid_thw``).
            layers: block outputs to return, 1-based (0 = the block input). Window-permuted order.
            return_merged: also run the remaining blocks and the merger (the LLM's visual tokens). When
                ``False``, the pass stops after the deepest requested layer.

        Returns:
            :class:`FastVisionOutput`.
        """
        wanted = sorted({int(k) for k in layers})
        bad = [k for k in wanted if not 0 <= k <= self.depth]
        if bad:
            raise ValueError(f"layers {bad} out of range: this tower has blocks 1..{self.depth} (0 = block input)")
        if not wanted and not return_merged:
            raise ValueError("nothing to compute: pass layers=[...] and/or return_merged=True")
        plan = self.plan(grid_thw, pixel_values.device)
        if pixel_values.dim() != 2 or pixel_values.shape[0] != plan.num_tokens:
            raise ValueError(
                f"pixel_values has shape {tuple(pixel_values.shape)} but grid_thw {plan.grid_thw} needs "
                f"{plan.num_tokens} patch rows (sum of t·h·w); preprocess the clip with the Qwen2.5-VL patch layout"
            )
        stop = self.depth if return_merged else wanted[-1]
        visual = self.visual
        unit = self.spatial_merge_size**2

        # The tower computes at its weights' dtype with autocast off (the weights already are the compute dtype,
        # bf16 on GPUs): an autocast region around the call changes nothing, and a compiled block sees one global
        # autocast state, so it compiles once per (shape, dtype) whatever the caller's autocast.
        with torch.autocast(device_type=pixel_values.device.type, enabled=False):
            x = self._patch_embed(pixel_values)
            x = x.reshape(-1, unit, x.shape[-1]).index_select(0, plan.window_index).reshape(x.shape)
            cos, sin = visual.rotary_pos_emb(x, plan.position_ids)

            hidden: dict[int, torch.Tensor] = {}
            if 0 in wanted:
                hidden[0] = x
            for i in range(stop):
                blk = visual.blocks[i]
                layout = plan.full_layout if i in self.fullatt_block_indexes else plan.window_layout
                if getattr(blk, "gradient_checkpointing", False) and blk.training and torch.is_grad_enabled():
                    x = torch.utils.checkpoint.checkpoint(self._run_block, blk, x, cos, sin, layout, use_reentrant=False)
                else:
                    x = self._run_block(blk, x, cos, sin, layout)
                if i + 1 in wanted:
                    hidden[i + 1] = x

            last = x if stop == self.depth else None
            merged = None
            if return_merged:
                merged = visual.merger(x).index_select(0, plan.reverse_index)
        return FastVisionOutput(hidden_states=hidden, last_hidden_state=last, pooler_output=merged, plan=plan)

    def _patch_embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, C·T·P·P)`` flattened patches → ``(N, C_vis)`` embeddings (input order)."""
        proj = self.visual.patch_embed.proj
        if not (self.patch_embed_matmul and type(proj) is nn.Conv3d and proj.bias is None):
            return self.visual.patch_embed(pixel_values)
        # Conv3d with stride == kernel over a (C, T, P, P) patch is a dot product with the flattened kernel,
        # whose (C, T, P, P) layout is the patch's flattening order.
        weight = proj.weight.reshape(proj.weight.shape[0], -1)
        return F.linear(pixel_values.reshape(-1, weight.shape[1]).to(weight.dtype), weight)

    @property
    def compiled(self) -> bool:
        """Whether the blocks run through ``torch.compile`` (``False`` after a fallback to eager)."""
        return self._compiled_block is not None

    def _run_block(
        self, blk: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: AttentionLayout
    ) -> torch.Tensor:
        """One block, compiled when possible. A compile failure reruns the block eagerly — an error that is the
        input's fault raises there, unchanged — and, when that succeeds, switches to eager with one warning."""
        compiled = self._compiled_block
        if compiled is None:
            return self._block_forward(blk, x, cos, sin, layout)
        try:
            return compiled(blk, x, cos, sin, layout)
        except Exception as err:  # noqa: BLE001 - see the docstring
            out = self._block_forward(blk, x, cos, sin, layout)
            self._compiled_block = None
            _warn_compile_fallback(err)
            return out

    @staticmethod
    def _block_forward(
        blk: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: AttentionLayout
    ) -> torch.Tensor:
        """One ``Qwen2_5_VLVisionBlock`` on window-ordered tokens ``(N, C)`` through its own submodules."""
        x = x + _batched_attention(blk.attn, blk.norm1(x), cos, sin, layout)
        return x + blk.mlp(blk.norm2(x))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _batched_attention(
    attn: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: AttentionLayout
) -> torch.Tensor:
    """``Qwen2_5_VLVisionAttention`` on ``(N, C)`` with segments batched per equal-length group.

    Same arithmetic as the stock module: qkv projection, 2-D rotary on q and k in float32 (cast back to the
    input dtype), SDPA with ``attn.scaling``, output projection.
    """
    n, dim = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(n, 3, heads, -1)
    # Rotary on q and k at once (the stock applies the same float32 formula to each separately).
    qk = qkv[:, :2].float()
    c, s = cos[:, None, None, :].float(), sin[:, None, None, :].float()
    qk = (qk * c + _rotate_half(qk) * s).to(qkv.dtype)
    q, k = qk.unbind(1)
    v = qkv[:, 2]
    dropout = attn.attention_dropout if attn.training else 0.0
    outs = []
    for g in layout.groups:
        qg, kg, vg = (g.take(t).reshape(g.count, g.length, heads, -1).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(qg, kg, vg, dropout_p=dropout, scale=attn.scaling)
        outs.append(o.transpose(1, 2).reshape(g.num_tokens, dim))
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    if layout.inverse is not None:
        out = out.index_select(0, layout.inverse)
    return attn.proj(out)
