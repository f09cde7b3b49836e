"""Reading frames of a video file or of a folder of frame images through one small interface.

``open_video(path, backend)`` returns a :class:`VideoReader` with ``num_frames``, ``fps``, ``size`` ``(H, W)``
and ``read(indices) -> (T, H, W, 3)`` uint8. Video files (mp4, avi, mkv, …) are decoded by a backend:

* ``decord`` — :class:`DecordVideo`, fastest random access; an optional extra
  (``pip install tvau-lightning[decord]``) because it has no wheels for macOS arm64 or Linux aarch64.
* ``pyav`` — :class:`PyAVVideo`, always installed (PyAV's wheels bundle FFmpeg on every platform).
* ``torchcodec`` — not implemented: its PyPI wheels need system FFmpeg libraries and a torch build matching
  the wheel, which the test machines lack, and an untested backend would be a promise we cannot keep.
* ``auto`` — decord when it imports, else PyAV; AVI files always go to PyAV, because decord's seeking in
  AVIs with B-frames returns wrong frames (dmlc/decord#195, #252; ``test_video_backends.py`` reproduces it).

A folder is read as numbered images (``000.jpg``, ``001.jpg``, … — ShanghaiTech's testing frames) with PIL
(:class:`FrameFolderVideo`), whatever the backend. Every failure names the file that caused it.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

from tvau_lightning.data.video.base import (
    VIDEO_BACKENDS,
    VideoBackend,
    VideoBackendError,
    VideoReader,
    VideoReadError,
    frame_index_array,
)
from tvau_lightning.data.video.decord import DecordVideo
from tvau_lightning.data.video.frame_folder import (
    DEFAULT_FOLDER_FPS,
    FRAME_IMAGE_SUFFIXES,
    FrameFolderVideo,
    list_frame_images,
)
from tvau_lightning.data.video.pyav import PyAVVideo

__all__ = [
    "DECORD_INEXACT_SUFFIXES",
    "DEFAULT_FOLDER_FPS",
    "FRAME_IMAGE_SUFFIXES",
    "VIDEO_BACKENDS",
    "DecordVideo",
    "FrameFolderVideo",
    "PyAVVideo",
    "VideoBackend",
    "VideoBackendError",
    "VideoReadError",
    "VideoReader",
    "available_backends",
    "frame_index_array",
    "list_frame_images",
    "open_video",
    "resolve_backend",
]

#: the backends that decode video files, and the module each needs
_BACKEND_MODULES = {"decord": "decord", "pyav": "av"}
#: containers ``auto`` never gives to decord: its random access there is not frame-exact (B-frames in AVI)
DECORD_INEXACT_SUFFIXES = (".avi",)


@functools.cache
def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # not installed, or installed but broken (a wheel for another platform)
        return False
    return True


def available_backends() -> list[str]:
    """The video-file backends that work in this environment (``decord`` first when installed)."""
    return [name for name, module in _BACKEND_MODULES.items() if _importable(module)]


def resolve_backend(backend: str) -> str:
    """The concrete backend ``backend`` stands for (``auto`` → ``decord`` if it imports, else ``pyav``).

    Raises:
        VideoBackendError: an unknown name, a backend that is not installed, or ``torchcodec``.
    """
    if backend not in VIDEO_BACKENDS:
        raise VideoBackendError(f"unknown video backend {backend!r}; use one of {', '.join(VIDEO_BACKENDS)}")
    if backend == "auto":
        return "decord" if _importable("decord") else "pyav"
    if backend == "torchcodec":
        raise VideoBackendError(
            "video backend 'torchcodec' is not implemented: its wheels need system FFmpeg libraries and a "
            "matching torch build; use video_backend 'pyav' (always installed) or 'decord'"
        )
    if not _importable(_BACKEND_MODULES[backend]):
        extra = "pip install 'tvau-lightning[decord]'" if backend == "decord" else "pip install av"
        raise VideoBackendError(
            f"video backend {backend!r} is not installed here; {extra}, or use video_backend 'auto'"
        )
    return backend


def open_video(
    path: str | os.PathLike[str], backend: VideoBackend = "auto", *, fps: float | None = None, num_threads: int = 0
) -> VideoReader:
    """Open a video file (with ``backend``) or a folder of numbered frame images (PIL).

    Args:
        path: a video file (mp4, avi, mkv, …) or a folder of frames.
        backend: ``auto`` (decord if installed, else PyAV; PyAV for AVI files), ``decord``, ``pyav`` or
            ``torchcodec`` (not implemented); ignored for a frame folder.
        fps: for a frame folder, the frame rate to report (default 24); ignored for video files, which know it.
        num_threads: decoder threads for video files (0 = automatic; 1 is best inside DataLoader workers).

    Raises:
        FileNotFoundError: nothing at ``path``.
        VideoReadError: the file cannot be decoded (the message names it).
        VideoBackendError: ``backend`` is unknown, not installed or not implemented.
    """
    concrete = resolve_backend(backend)
    path = Path(path)
    if path.is_dir():
        return FrameFolderVideo(path, fps=DEFAULT_FOLDER_FPS if fps is None else fps)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    if concrete == "decord" and backend == "auto" and path.suffix.lower() in DECORD_INEXACT_SUFFIXES:
        concrete = "pyav"
    if concrete == "decord":
        return DecordVideo(path, num_threads=num_threads)
    return PyAVVideo(path, num_threads=num_threads)
