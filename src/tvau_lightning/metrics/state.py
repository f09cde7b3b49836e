"""Metric-state plumbing: stable integer ids, first-occurrence deduplication, row states that sync under DDP.

torchmetrics states must be tensors, so string video ids are stored as int64 hashes. The hash is blake2b
(8 bytes, masked to 63 bits) — stable across processes and runs, unlike Python's salted ``hash()``.

``DistributedSampler`` pads ranks by repeating samples, so the same frame can reach a metric twice. Every
update tags its rows with an *occurrence id* ``(rank << 48) | counter`` (unique per sample across ranks); at
compute, each key (a ``(video, frame)`` pair or a sample id) keeps only the rows of its smallest occurrence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

_INT63 = (1 << 63) - 1
_RANK_SHIFT = 48


def video_hash(video_id: str) -> int:
    """Stable non-negative int63 id of a string (blake2b, 8 bytes, little-endian, top bit cleared)."""
    digest = hashlib.blake2b(str(video_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _INT63


def video_hashes(video_ids: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
    """``(B,)`` int64 tensor of :func:`video_hash` of each id."""
    if isinstance(video_ids, str):
        raise TypeError(f"video_ids must be a sequence of strings (one per sample), got the string {video_ids!r}")
    return torch.tensor([video_hash(v) for v in video_ids], dtype=torch.int64, device=device)


def _process_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


class OccurrenceCounter:
    """Hands out occurrence ids ``(rank << 48) | n`` — unique per sample within one metric, across ranks."""

    def __init__(self) -> None:
        self._next = 0

    def take(self, count: int) -> np.ndarray:
        """``(count,)`` int64 fresh occurrence ids."""
        start = self._next
        self._next += count
        return (np.int64(_process_rank()) << np.int64(_RANK_SHIFT)) + np.arange(start, start + count, dtype=np.int64)


def unique_row_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids of the distinct rows of ``keys (n, k)`` int64 (in sorted row order) and their number.

    ``np.unique(axis=0)`` does the same but several times slower (it sorts opaque byte views).
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    keys2d = keys.reshape(n, -1)
    order = np.lexsort(keys2d.T[::-1])
    sorted_keys = keys2d[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(starts) - 1
    return ids, int(starts.sum())


def first_occurrence_mask(keys: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """Bool mask of the rows whose occurrence is the smallest among the rows with the same key.

    Args:
        keys: ``(n,)`` or ``(n, k)`` int64 keys (e.g. columns ``video_hash, frame``).
        occurrence: ``(n,)`` int64 occurrence ids.
    Returns:
        ``(n,)`` bool; all rows of the winning occurrence of each key are kept (a frame's several detections
        stay together).
    """
    n = len(occurrence)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keys2d = keys.reshape(n, -1)
    # sort by the key columns (first column most significant), then by occurrence
    order = np.lexsort((occurrence, *keys2d.T[::-1]))
    sorted_keys = keys2d[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)
    group = np.cumsum(starts) - 1
    best = occurrence[order][starts]  # the smallest occurrence of each key: its group's first row
    keep = np.empty(n, dtype=bool)
    keep[order] = occurrence[order] == best[group]
    return keep


class RowStateMetric(Metric):
    """Base of the metrics here: every state is a list of per-row tensors concatenated across processes.

    Subclasses declare states with :meth:`add_row_state` and read them back as numpy with :meth:`rows`.
    A rank that never saw a batch syncs correctly typed empty tensors (torchmetrics would otherwise send an
    untyped 1-D float placeholder).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._row_specs: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        # never reset (not even by reset(), which forward() calls): ids stay unique for the metric's life
        self._occurrences = OccurrenceCounter()

    def add_row_state(self, name: str, dtype: torch.dtype, trailing: tuple[int, ...] = ()) -> None:
        """A list state of ``(n, *trailing)`` tensors of ``dtype``, reduced by concatenation."""
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._row_specs[name] = (dtype, trailing)

    def _empty(self, name: str) -> torch.Tensor:
        dtype, trailing = self._row_specs[name]
        return torch.zeros((0, *trailing), dtype=dtype, device=self.device)

    def _sync_dist(self, dist_sync_fn=gather_all_tensors, process_group=None) -> None:  # noqa: ANN001
        for name in self._row_specs:
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                value.append(self._empty(name))
        super()._sync_dist(dist_sync_fn, process_group=process_group)

    def append_rows(self, **rows: torch.Tensor | np.ndarray) -> None:
        """Append one tensor to each named state (converted to its dtype, on the metric's device)."""
        for name, value in rows.items():
            dtype, _ = self._row_specs[name]
            tensor = torch.as_tensor(value).to(device=self.device, dtype=dtype)
            getattr(self, name).append(tensor)

    def rows(self, name: str) -> np.ndarray:
        """The concatenated state ``name`` as a numpy array (CPU)."""
        value = getattr(self, name)
        if isinstance(value, list):
            value = torch.cat(value) if value else self._empty(name)
        dtype, trailing = self._row_specs[name]
        return value.reshape(-1, *trailing).to(dtype).cpu().numpy()

    def take_occurrences(self, count: int) -> np.ndarray:
        """Fresh occurrence ids for ``count`` samples (see the module docstring)."""
        return self._occurrences.take(count)
