"""A folder of numbered frame images (``000.jpg``, ``001.jpg``, … — ShanghaiTech's testing frames) read
with PIL: the images are ordered by the number in the name and the k-th image is frame k."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tvau_lightning.data.video.base import VideoReadError, frame_buffer, frame_index_array, gather_frames

#: file suffixes read as frame images inside a frame folder
FRAME_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: fps reported for a frame folder when the caller does not know better (ShanghaiTech records at 24 fps)
DEFAULT_FOLDER_FPS = 24.0

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

    Attributes:
        shared_output: read into shared memory inside a DataLoader worker (as :class:`PyAVVideo`).
    """

    shared_output = False

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
        array = frame_index_array(indices, len(self._files), self.path)
        if array.size == 0:
            return torch.zeros((0, *self._size, 3), dtype=torch.uint8)
        unique, inverse = np.unique(array, return_inverse=True)
        frames = frame_buffer(len(unique), *self._size, shared=self.shared_output)
        out = frames.numpy()  # a view: each image is written in place (no list of arrays to stack)
        for k, index in enumerate(unique):
            out[k] = self._read_one(int(index))
        return gather_frames(frames, unique, array, inverse)

