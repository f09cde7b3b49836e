"""The media files of an HTML report: the source video as browser-playable H.264, the heatmap overlay (per-frame
images or an aligned video) and track thumbnails.

Browsers play H.264 only in yuv420p with even sides, and start playing a file read from disk before it is fully
parsed only when its index (``moov``) comes first ("faststart"). A short keyframe interval keeps seeking to an
arbitrary frame quick (a seek decodes from the previous keyframe).

The heatmap is written at a reduced size (its longest side at most ``max_side`` = 320 pixels by default; it is a
bilinear upsampling of a coarse grid, e.g. 32×48, so nothing is lost and the browser scales it up) and coloured
with ``tvau analyze``'s "jet" map. Consecutive identical heatmaps (a grid step covers several frames) are stored
once.

Why per-frame images and not a second, aligned video by default (``benchmarks/bench_report_media.py``, figures
in ``benchmarks/README.md``): for a 10-minute 1080p video at 30 fps the images take ~55–60 MB (9,000 JPEGs at
320×180) against ~11–12 MB for an H.264 heatmap video, but the overlay is exact: the page swaps to the image of
the frame the video presents. A second video plays on its own decoder and clock; in Chromium it was more than
half a frame away from the source on ~30 % of the frames during playback (up to 1.6 frames), i.e. the heatmap of
the wrong frame — which defeats a report about what the model saw in each frame. ``mode="video"`` remains for
those who prefer size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tvau_lightning.visualize import colorize_heatmap

#: how the heatmap overlay is stored: one JPEG per distinct heatmap, or one H.264 video aligned with the source
HEATMAP_MEDIA = ("images", "video")


def as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A NumPy view of a tensor or array (tensors are moved to the CPU)."""
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad ``(H, W, 3)`` with one black row/column at the bottom/right where a side is odd (H.264 in yuv420p
    needs even sides; padding keeps pixel coordinates unchanged, unlike a resize or a crop)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def even_size(height: int, width: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to even sides (the size of :func:`pad_even`'s output)."""
    return height + height % 2, width + width % 2


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Values in [0, 1] ``(h, w)`` → ``(h, w, 3)`` uint8 colours of :func:`~tvau_lightning.visualize.colorize_heatmap`
    (the map of ``tvau analyze``'s overlay video)."""
    return colorize_heatmap(torch.from_numpy(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)))).numpy()


def heatmap_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` of the stored heatmap: the source aspect with the longest side at most ``max_side``, even
    sides (so the same size serves images and H.264)."""
    scale = min(1.0, max_side / max(height, width))
    h, w = max(2, round(height * scale)), max(2, round(width * scale))
    return h + h % 2, w + w % 2


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map ``(H, W)`` to ``size = (h, w)``."""
    if heatmap.shape == size:
        return heatmap.astype(np.float32)
    image = Image.fromarray(heatmap.astype(np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR))


class H264Writer:
    """Stream uint8 RGB frames ``(H, W, 3)`` into a browser-playable mp4 (H.264, yuv420p, faststart, one
    keyframe per ``keyint`` frames). Odd sides are padded with :func:`pad_even`.

    Use as a context manager; :attr:`count` is the number of frames written.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, crf: int = 23, preset: str = "veryfast",
                 keyint: int = 24) -> None:
        self.path, self.fps, self.crf, self.preset, self.keyint = Path(path), float(fps), crf, preset, keyint
        self.count = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray | torch.Tensor) -> None:
        import imageio_ffmpeg

        array = np.ascontiguousarray(pad_even(as_numpy(frame).astype(np.uint8, copy=False)))
        if self._writer is None:
            self._size = array.shape[:2]
            self._writer = imageio_ffmpeg.write_frames(
                str(self.path), (array.shape[1], array.shape[0]), fps=self.fps, codec="libx264",
                pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
                output_params=["-crf", str(self.crf), "-preset", self.preset, "-g", str(self.keyint),
                               "-movflags", "+faststart"],
            )
            self._writer.send(None)
        elif array.shape[:2] != self._size:
            raise ValueError(f"{self.path}: frame {self.count} is {array.shape[0]}x{array.shape[1]}, the first "
                             f"was {self._size[0]}x{self._size[1]}; all frames of a video need one size")
        self._writer.send(array)
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class HeatmapMedia:
    """Where the heatmap overlay of each frame is stored, as the page reads it.

    Attributes:
        mode: ``"images"`` or ``"video"``.
        size: ``(h, w)`` of the stored heatmap.
        path: for ``video`` the mp4; for ``images`` the folder, files ``{k:06d}.jpg``.
        starts: for ``images``, the first frame of each stored image (image ``k`` serves frames
            ``starts[k]`` to ``starts[k + 1] - 1``).
        bytes: total size on disk.
        num_frames: how many heatmaps (frames) were given.
    """

    mode: str
    size: tuple[int, int]
    path: Path
    starts: list[int] = field(default_factory=list)
    bytes: int = 0
    num_frames: int = 0


def write_heatmap_media(folder: Path, heatmaps: Iterable[np.ndarray | torch.Tensor], *, fps: float,
                        source_size: tuple[int, int], mode: str = "images", max_side: int = 320,
                        quality: int = 85, crf: int = 28, preset: str = "veryfast") -> HeatmapMedia:
    """Write the heatmaps ``(H, W)`` in [0, 1] (one per frame, any size of the source's aspect) under ``folder``.

    ``images``: ``folder/heatmap/{k:06d}.jpg``, one JPEG (``quality``) per run of identical consecutive
    heatmaps. ``video``: ``folder/heatmap.mp4`` (H.264, ``crf``), one frame per source frame.
    """
    if mode not in HEATMAP_MEDIA:
        raise ValueError(f"heatmap media must be one of {HEATMAP_MEDIA}, got {mode!r}")
    size = heatmap_size(*source_size, max_side)
    folder.mkdir(parents=True, exist_ok=True)
    if mode == "video":
        path = folder / "heatmap.mp4"
        with H264Writer(path, fps, crf=crf, preset=preset) as writer:
            for heat in heatmaps:
                writer.write(colorize(resize_map(as_numpy(heat), size)))
        if writer.count == 0:
            raise ValueError("no heatmaps to write")
        return HeatmapMedia("video", size, path, bytes=path.stat().st_size, num_frames=writer.count)
    path = folder / "heatmap"
    path.mkdir(parents=True, exist_ok=True)
    starts: list[int] = []
    previous: np.ndarray | None = None
    total = 0
    count = 0
    for frame, heat in enumerate(heatmaps):
        count += 1
        heat = as_numpy(heat)
        if previous is not None and heat.shape == previous.shape and np.array_equal(heat, previous):
            continue
        previous = heat.copy()
        target = path / f"{len(starts):06d}.jpg"
        Image.fromarray(colorize(resize_map(heat, size))).save(target, quality=quality)
        total += target.stat().st_size
        starts.append(frame)
    if not starts:
        raise ValueError("no heatmaps to write")
    return HeatmapMedia("images", size, path, starts=starts, bytes=total, num_frames=count)


def crop_thumbnail(frame: np.ndarray, box: Iterable[float], *, size: int = 96, margin: float = 0.25) -> Image.Image:
    """A square-ish thumbnail of ``box`` (inclusive ``x1, y1, x2, y2``) in ``frame (H, W, 3)`` with a margin
    around it, at most ``size`` pixels on its longest side."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = margin * max(x2 - x1 + 1, y2 - y1 + 1)
    left, top = int(max(0, np.floor(x1 - pad))), int(max(0, np.floor(y1 - pad)))
    right, bottom = int(min(w, np.ceil(x2 + 1 + pad))), int(min(h, np.ceil(y2 + 1 + pad)))
    image = Image.fromarray(np.ascontiguousarray(frame[top:max(bottom, top + 1), left:max(right, left + 1)]))
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return image


def iterate_chunks(num_frames: int, chunk: int = 16) -> Iterator[np.ndarray]:
    """Frame indices ``0..num_frames-1`` in consecutive chunks of at most ``chunk``."""
    for start in range(0, num_frames, chunk):
        yield np.arange(start, min(num_frames, start + chunk))
