"""Video files decoded with decord (an optional extra: ``pip install tvau-lightning[decord]``).

decord has had no release since 2021 and has no wheels for macOS arm64 or Linux aarch64; where it installs
it is the fastest random-access reader, so ``open_video(backend="auto")`` prefers it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tvau_lightning.data.video.base import VideoReadError, frame_index_array, gather_frames


class DecordVideo:
    """A video file decoded with decord (``VideoReader`` + ``get_batch``).

    Args:
        path: the video file.
        num_threads: decoder threads (0 = decord's choice; 1 is best inside DataLoader workers).
    """

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 0) -> None:
        import decord

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        try:
            self._reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=num_threads)
        except Exception as error:  # decord raises RuntimeError/DECORDError/AssertionError
            raise VideoReadError(
                f"cannot open video {self.path}: {error} — the file is corrupt, truncated or not a video; "
                "re-download or re-encode it"
            ) from error
        self._num_frames = len(self._reader)
        self._fps = float(self._reader.get_avg_fps())
        self._size: tuple[int, int] | None = None  # decoded lazily: decord reports no size without a frame

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            frame = self.read([0])
            self._size = (int(frame.shape[1]), int(frame.shape[2]))
        return self._size

    def read(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        array = frame_index_array(indices, self._num_frames, self.path)
        if array.size == 0:
            return torch.zeros((0, *self.size, 3), dtype=torch.uint8)
        # decode each distinct frame once, in increasing order (decord seeks forward efficiently)
        unique, inverse = np.unique(array, return_inverse=True)
        try:
            batch = self._reader.get_batch(unique.tolist())
        except Exception as error:
            raise VideoReadError(
                f"cannot decode frames {unique[:5].tolist()}… of {self.path}: {error} — the file is corrupt or "
                "truncated; re-download or re-encode it"
            ) from error
        frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        self._size = (int(frames.shape[1]), int(frames.shape[2]))
        return gather_frames(frames, unique, array, inverse)
