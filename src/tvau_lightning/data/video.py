"""Reading frames of a video file (decord) or of a folder of JPEG frames (PIL) through one small interface.

``open_video(path)`` returns a :class:`VideoSource` with ``num_frames``, ``fps``, ``size`` ``(H, W)`` and
``read(indices) -> (T, H, W, 3) uint8``. Video files (mp4, avi, …) are decoded with decord; a folder is read
as numbered images (``000.jpg``, ``001.jpg``, … — ShanghaiTech's testing frames), ordered by the number in
the name, the k-th image being frame k. Every failure names the file that caused it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

#: file suffixes read as frame images inside a frame folder
FRAME_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: fps reported for a frame folder when the caller does not know better (ShanghaiTech records at 24 fps)
DEFAULT_FOLDER_FPS = 24.0


class VideoReadError(RuntimeError):
    """A video or frame image could not be opened or decoded; the message names the file."""


@runtime_checkable
class VideoSource(Protocol):
    """What every reader returned by :func:`open_video` provides."""

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


def _as_index_array(indices: list[int] | np.ndarray | torch.Tensor, num_frames: int, path: Path) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.cpu().numpy()
    array = np.asarray(indices, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= num_frames):
        bad = array[(array < 0) | (array >= num_frames)]
        raise IndexError(f"{path}: frame indices {bad[:5].tolist()} out of range [0, {num_frames - 1}]")
    return array


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
        array = _as_index_array(indices, self._num_frames, self.path)
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
        if len(unique) == len(array) and (unique == array).all():  # already in order: no copy
            return torch.from_numpy(np.ascontiguousarray(frames))
        return torch.from_numpy(np.ascontiguousarray(frames[inverse]))


_NUMBER = re.compile(r"(\d+)")


def _frame_number(path: Path) -> int:
    """The frame number in an image name (the last run of digits: ``000.jpg`` → 0, ``img_0012.jpg`` → 12)."""
    numbers = _NUMBER.findall(path.stem)
    if not numbers:
        raise VideoReadError(
            f"{path}: frame images must carry their frame number in the name (000.jpg, 001.jpg, …); "
            "rename the file or remove it from the folder"
        )
    return int(numbers[-1])


def list_frame_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The frame images of ``folder`` in frame order (by the number in the name, not lexicographically)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frame folder not found: {folder}")
    images = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_IMAGE_SUFFIXES and not p.name.startswith(".")]
    numbered = sorted(images, key=_frame_number)
    for previous, current in zip(numbered, numbered[1:]):
        if _frame_number(previous) == _frame_number(current):
            raise VideoReadError(
                f"{folder}: two images carry frame number {_frame_number(current)} ({previous.name}, "
                f"{current.name}); keep one"
            )
    return numbered


class FrameFolderVideo:
    """A folder of numbered frame images read with PIL; image k (in numeric order) is frame k.

    Args:
        path: the folder.
        fps: frames per second to report (a folder has no timing; ShanghaiTech records at 24 fps).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = DEFAULT_FOLDER_FPS) -> None:
        self.path = Path(path)
        self._files = list_frame_images(self.path)
        if not self._files:
            raise VideoReadError(f"frame folder {self.path} holds no images ({', '.join(FRAME_IMAGE_SUFFIXES)})")
        self._fps = float(fps)
        try:
            with Image.open(self._files[0]) as image:
                width, height = image.size
        except Exception as error:
            raise VideoReadError(f"cannot read frame image {self._files[0]}: {error}") from error
        self._size = (int(height), int(width))

    @property
    def files(self) -> list[Path]:
        """The frame images, in frame order."""
        return list(self._files)

    @property
    def num_frames(self) -> int:
        return len(self._files)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _read_one(self, index: int) -> np.ndarray:
        path = self._files[index]
        try:
            with Image.open(path) as image:
                frame = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise VideoReadError(f"cannot read frame image {path}: {error} — the file is corrupt; replace it") from error
        if frame.shape[:2] != self._size:
            raise VideoReadError(
                f"{path} is {frame.shape[0]}x{frame.shape[1]} but the folder's first frame is "
                f"{self._size[0]}x{self._size[1]}; all frames of a video must have one size"
            )
        return frame

    def read(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        array = _as_index_array(indices, len(self._files), self.path)
        if array.size == 0:
            return torch.zeros((0, *self._size, 3), dtype=torch.uint8)
        unique, inverse = np.unique(array, return_inverse=True)
        frames = np.stack([self._read_one(int(i)) for i in unique])
        return torch.from_numpy(np.ascontiguousarray(frames[inverse]))


def open_video(
    path: str | os.PathLike[str], *, fps: float | None = None, num_threads: int = 0
) -> DecordVideo | FrameFolderVideo:
    """Open a video file (decord) or a folder of numbered frame images (PIL).

    Args:
        path: a video file (mp4, avi, …) or a folder of frames.
        fps: for a frame folder, the frame rate to report (default 24); ignored for video files, which know it.
        num_threads: decord decoder threads for video files (0 = automatic).

    Raises:
        FileNotFoundError: nothing at ``path``.
        VideoReadError: the file cannot be decoded (the message names it).
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderVideo(path, fps=DEFAULT_FOLDER_FPS if fps is None else fps)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    return DecordVideo(path, num_threads=num_threads)
