"""The :class:`VideoReader` interface every frame reader implements, and what the backends share.

A reader knows ``num_frames``, ``fps`` and ``size`` ``(H, W)`` and reads any frames by index:
``read(indices) -> (T, H, W, 3)`` uint8 RGB, frame ``k`` being the ``k``-th frame in presentation order
(what a player shows ``k / fps`` seconds in). Every backend must return the same frame for the same index;
``tests/data/test_video_backends.py`` checks it across codecs and containers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

#: the decoder used for video files (``auto``: decord when installed, else PyAV). Frame folders are
#: always read with PIL.
VideoBackend = Literal["auto", "decord", "pyav", "torchcodec"]
VIDEO_BACKENDS: tuple[str, ...] = ("auto", "decord", "pyav", "torchcodec")


class VideoReadError(RuntimeError):
    """A video or frame image could not be opened or decoded; the message names the file."""


class VideoBackendError(RuntimeError):
    """The requested video backend is unknown, not installed or not implemented; the message says what to do."""


@runtime_checkable
class VideoReader(Protocol):
    """What every reader returned by :func:`~tvau_lightning.data.video.open_video` provides."""

    path: Path

    @property
    def num_frames(self) -> int: ...

    @property
    def fps(self) -> float: ...

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        ...

    def read(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as ``(T, H, W, 3)`` uint8 RGB."""
        ...


def frame_index_array(indices: list[int] | np.ndarray | torch.Tensor, num_frames: int, path: Path) -> np.ndarray:
    """``indices`` as a flat int64 array, checked against ``[0, num_frames)`` (the error names ``path``)."""
    if isinstance(indices, torch.Tensor):
        indices = indices.cpu().numpy()
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= num_frames):
        bad = array[(array < 0) | (array >= num_frames)]
        raise IndexError(f"{path}: frame indices {bad[:5].tolist()} out of range [0, {num_frames - 1}]")
    return array


def frame_buffer(count: int, height: int, width: int, shared: bool = False) -> torch.Tensor:
    """An uninitialised ``(count, height, width, 3)`` uint8 tensor for a reader to decode into, frame by frame
    (through ``.numpy()``, a view).

    Decoding into one buffer replaces a list of per-frame arrays and the ``np.stack`` that copied them (a second
    pass over every byte). With ``shared`` (the frames leave the worker as they are decoded: ``resize_on:
    device``), inside a DataLoader worker the buffer is allocated in shared memory, so a batch of one clip reaches
    the main process without the copy into shared memory the worker would otherwise make; otherwise it is a numpy
    allocation (which asks the kernel for huge pages on large arrays; shared memory costs more to fill, a waste
    for frames that are resized in the worker anyway).
    """
    return uint8_buffer((int(count), int(height), int(width), 3), shared)


def uint8_buffer(shape: tuple[int, ...], shared: bool = False) -> torch.Tensor:
    """An uninitialised uint8 tensor of ``shape``, in shared memory inside a DataLoader worker when ``shared``
    (see :func:`frame_buffer`; packed YUV 4:2:0 clips use it directly)."""
    shape = tuple(int(v) for v in shape)
    if shared and torch.utils.data.get_worker_info() is not None:
        try:
            storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
            return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
        except (AttributeError, RuntimeError):  # a torch without the shared allocator: plain memory
            pass
    return torch.from_numpy(np.empty(shape, dtype=np.uint8))


def gather_frames(
    unique_frames: np.ndarray | torch.Tensor, unique: np.ndarray, array: np.ndarray, inverse: np.ndarray
) -> torch.Tensor:
    """The frames of ``array`` (any order, repeats) from those of its sorted distinct indices ``unique``."""
    if isinstance(unique_frames, torch.Tensor):
        if len(unique) == len(array) and (unique == array).all():  # already in order: the buffer itself
            return unique_frames
        return unique_frames.index_select(0, torch.from_numpy(np.asarray(inverse, dtype=np.int64).reshape(-1)))
    if len(unique) == len(array) and (unique == array).all():  # already in order: no copy
        return torch.from_numpy(np.ascontiguousarray(unique_frames))
    return torch.from_numpy(np.ascontiguousarray(unique_frames[inverse]))
