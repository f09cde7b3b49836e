"""Video files decoded with PyAV (always installed: its wheels bundle FFmpeg on every platform).

Frame-exact random access over a codec with inter frames needs an index. On open, the video stream's
packets are demuxed once (no decoding) and their presentation timestamps sorted: frame ``k`` is the packet
with the ``k``-th smallest pts, and the keyframe packets are the places a seek can land on. Reading frame
``k`` seeks to the last keyframe at or before it, then decodes forward until the frame whose pts is the
``k``-th; the decoder is kept where it stopped, so the next frames of a clip are decoded without a seek.
Files whose packets carry no usable pts (some old AVIs) are indexed by decoding them once, and then read
by decoding forward from the start.

``read`` converts each decoded frame to RGB and writes it straight into one preallocated ``(n, H, W, 3)``
array (:func:`~tvau_lightning.data.video.base.frame_buffer`), so no per-frame arrays are kept and stacked. The
conversion goes through one ``VideoReformatter`` kept by the reader: ``frame.to_ndarray(format=…)`` makes a new
one per frame, and so a new swscale context (~2.5 ms of setup per 720p frame, more than the conversion).

``read_yuv420`` skips the conversion: it copies the decoder's own planes (8-bit YUV 4:2:0, ``yuv420p`` or
``yuvj420p``) into one packed ``(n, H * 3 // 2, W)`` array and returns the frames' colour tags with it, for the
model's device to convert (:mod:`tvau_lightning.data.video.yuv`). A source in any other pixel format (4:2:2,
4:4:4, 10-bit …) or of odd size gets ``None``, and the caller reads RGB.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tvau_lightning.data.video.base import (
    VideoReadError,
    frame_buffer,
    frame_index_array,
    gather_frames,
    uint8_buffer,
)
from tvau_lightning.data.video.yuv import RANGE_JPEG, RANGE_UNSPECIFIED, YUVColour

#: the decoder pixel formats ``read_yuv420`` copies as they are (``yuvj420p``: the same planes, full range)
YUV420_FORMATS = ("yuv420p", "yuvj420p")


class PyAVVideo:
    """A video file decoded with PyAV, frame-exact for any index order.

    Args:
        path: the video file.
        num_threads: decoder threads (0 = FFmpeg's choice; 1 is best inside DataLoader workers).

    Attributes:
        shared_output: decode into shared memory inside a DataLoader worker (the frames leave the worker unresized;
            see :func:`~tvau_lightning.data.video.base.frame_buffer`).
    """

    shared_output = False

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self._num_threads = int(num_threads)
        self._reformatter: Any = None  # one RGB converter for every frame (see _rgb_into)
        self._yuv420 = True  # False once a frame was found that read_yuv420 cannot copy (then: RGB)
        self._open_container()
        self._decoder: Iterator[Any] | None = None  # the decoder where it stopped ...
        self._last = -1  # ... the index of the last frame it gave ...
        self._seek_slot = 0  # ... and the keyframe (slot in ``_keyframes``) it started from
        try:
            self._index_packets()
        except VideoReadError:
            raise
        except Exception as error:
            raise VideoReadError(
                f"cannot read the packets of {self.path}: {error} — the file is corrupt or truncated; "
                "re-download or re-encode it"
            ) from error
        if self._num_frames == 0:
            raise VideoReadError(f"{self.path} holds no video frames — the file is empty or truncated")
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self._fps = float(rate) if rate else 0.0
        width, height = self._stream.codec_context.width, self._stream.codec_context.height
        self._size: tuple[int, int] | None = (int(height), int(width)) if width and height else None

    def _open_container(self) -> None:
        import av

        try:
            self._container: Any = av.open(str(self.path))
        except Exception as error:
            raise VideoReadError(
                f"cannot open video {self.path}: {error} — the file is corrupt, truncated or not a video; "
                "re-download or re-encode it"
            ) from error
        if not self._container.streams.video:
            self._container.close()
            raise VideoReadError(f"{self.path} has no video stream; give a video file or a folder of frames")
        self._stream: Any = self._container.streams.video[0]
        if self._num_threads != 1:
            self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = max(self._num_threads, 0)

    # ----------------------------------------------------------------------------------------- index
    def _index_packets(self) -> None:
        """Frame ``k`` = the ``k``-th smallest packet pts; keyframes = the seek targets."""
        pts: list[int] = []
        keyframes: list[int] = []
        for packet in self._container.demux(self._stream):
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            if packet.pts is None:
                self._index_by_decoding()
                return
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                keyframes.append(int(packet.pts))
        ordered = sorted(pts)
        if len(set(ordered)) != len(ordered) or not keyframes:
            self._index_by_decoding()
            return
        self._pts: list[int] | None = ordered
        self._pts_index = {value: k for k, value in enumerate(ordered)}
        # presentation index of every keyframe, ascending: where a seek can land
        self._keyframes = sorted(self._pts_index[value] for value in keyframes)
        self._num_frames = len(ordered)
        self._rewind()

    def _index_by_decoding(self) -> None:
        """Fallback for packets without usable pts: count the frames by decoding them all once."""
        self._rewind()
        count = sum(1 for _ in self._container.decode(self._stream))
        self._pts = None
        self._pts_index = {}
        self._keyframes = [0]
        self._num_frames = count
        self._rewind()

    def _rewind(self) -> None:
        try:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        except Exception:  # a stream that cannot seek (a raw elementary stream): open it again
            self._container.close()
            self._open_container()
        self._decoder = self._container.decode(self._stream)
        self._last = -1
        self._seek_slot = 0

    def _seek_to_keyframe(self, slot: int) -> None:
        """Put the decoder on keyframe number ``slot`` (of :attr:`_keyframes`)."""
        if self._pts is None:
            self._rewind()
        else:
            key = self._keyframes[slot]
            self._container.seek(self._pts[key], stream=self._stream, backward=True, any_frame=False)
        self._seek_slot = slot
        self._decoder = self._container.decode(self._stream)
        self._last = -1

    # ----------------------------------------------------------------------------------------- reading
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

    def _needs_seek(self, index: int) -> bool:
        if self._decoder is None or index <= self._last:
            return True
        if self._pts is None:
            return False
        # a keyframe after the decoder's position and at or before the target: seeking there is cheaper
        next_key = bisect.bisect_right(self._keyframes, self._last)
        return next_key < len(self._keyframes) and self._keyframes[next_key] <= index

    def _frame_at(self, index: int) -> Any:
        """Decode frame ``index`` (an ``av.VideoFrame``; :meth:`_rgb_into` converts it)."""
        if self._needs_seek(index):
            self._seek_to_keyframe(max(bisect.bisect_right(self._keyframes, index) - 1, 0))
        while True:
            frame = self._decode_until(index)
            if frame is not None:
                return frame
            # the decoder passed the target without giving it (a seek that landed late, an open GOP whose
            # leading frames need the previous one): start again one keyframe earlier
            slot = min(self._seek_slot, bisect.bisect_right(self._keyframes, index) - 1) - 1
            if slot < 0 or self._pts is None:
                raise VideoReadError(
                    f"{self.path}: frame {index} of {self._num_frames} could not be decoded — the file is corrupt "
                    "or its timestamps are inconsistent; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"
                )
            self._seek_to_keyframe(slot)

    def _decode_until(self, index: int) -> Any:
        """Decode forward to frame ``index``; ``None`` if the decoder went past it without giving it."""
        assert self._decoder is not None
        for frame in self._decoder:
            if self._pts is None:
                position = self._last + 1
            else:
                position = self._pts_index.get(frame.pts, -1) if frame.pts is not None else -1
                if position < 0:
                    raise VideoReadError(
                        f"{self.path}: the decoder gave a frame with pts {frame.pts}, which no packet carries — "
                        "the file's timestamps are inconsistent; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"
                    )
            self._last = position
            if position == index:
                return frame
            if position > index:
                return None
        self._decoder = None
        raise VideoReadError(
            f"{self.path}: frame {index} of {self._num_frames} could not be decoded (the stream ended first) — "
            "the file is corrupt or truncated; re-download or re-encode it"
        )

    @contextmanager
    def _decode_errors(self, unique: np.ndarray) -> Iterator[None]:
        """Decoder failures inside a read → :class:`VideoReadError` naming the frames and the file (the decoder is
        dropped: the next read starts from a keyframe)."""
        try:
            yield
        except VideoReadError:
            raise
        except Exception as error:  # av.error.FFmpegError and friends
            self._decoder = None
            raise VideoReadError(
                f"cannot decode frames {unique[:5].tolist()}… of {self.path}: {error} — the file is corrupt or "
                "truncated; re-download or re-encode it"
            ) from error

    def read(self, indices: list[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        array = frame_index_array(indices, self._num_frames, self.path)
        if array.size == 0:
            return torch.zeros((0, *self.size, 3), dtype=torch.uint8)
        unique, inverse = np.unique(array, return_inverse=True)
        with self._decode_errors(unique):
            first = self._frame_at(int(unique[0]))
            frames = frame_buffer(len(unique), first.height, first.width, shared=self.shared_output)
            out = frames.numpy()  # a view: each frame is converted and written in place
            self._rgb_into(first, out, 0)
            for k in range(1, len(unique)):
                self._rgb_into(self._frame_at(int(unique[k])), out, k)
        self._size = (int(frames.shape[1]), int(frames.shape[2]))
        return gather_frames(frames, unique, array, inverse)

    def read_yuv420(self, indices: list[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, YUVColour] | None:
        """Frames at ``indices`` as packed YUV 4:2:0 ``(T, H * 3 // 2, W)`` uint8 (the decoder's planes, not
        converted; :mod:`tvau_lightning.data.video.yuv`) and their :class:`YUVColour`; ``None`` when the source is
        not 8-bit 4:2:0 of even size or its frames change format or colour tags (read RGB with :meth:`read`)."""
        array = frame_index_array(indices, self._num_frames, self.path)
        if array.size == 0 or not self._yuv420:
            return None
        unique, inverse = np.unique(array, return_inverse=True)
        with self._decode_errors(unique):
            first = self._frame_at(int(unique[0]))
            colour = self._yuv_colour(first)
            if colour is None:
                self._yuv420 = False
                return None
            height, width = int(first.height), int(first.width)
            frames = uint8_buffer((len(unique), height * 3 // 2, width), shared=self.shared_output)
            out = frames.numpy()
            self._planes_into(first, out, 0)
            for k in range(1, len(unique)):
                frame = self._frame_at(int(unique[k]))
                if self._yuv_colour(frame) != colour or (frame.height, frame.width) != (height, width):
                    return None  # tags or size change inside the clip: one RGB read is simpler than two matrices
                self._planes_into(frame, out, k)
        self._size = (height, width)
        return gather_frames(frames, unique, array, inverse), colour

    @staticmethod
    def _yuv_colour(frame: Any) -> YUVColour | None:
        """The colour tags of a frame ``read_yuv420`` can copy (``yuvj420p`` untagged → full range), else ``None``."""
        name = frame.format.name
        if name not in YUV420_FORMATS or frame.height % 2 or frame.width % 2:
            return None
        colour = YUVColour.of_frame(frame)
        if name == "yuvj420p" and colour.color_range == RANGE_UNSPECIFIED:
            colour = colour._replace(color_range=RANGE_JPEG)
        return colour

    @staticmethod
    def _planes_into(frame: Any, out: np.ndarray, row: int) -> None:
        """Copy the Y, U and V planes of a 4:2:0 frame into ``out[row]`` (I420 order, line padding dropped)."""
        flat = out[row].reshape(-1)  # a view: out is contiguous
        start = 0
        for plane in frame.planes:
            height, width = int(plane.height), int(plane.width)
            source = np.frombuffer(plane, dtype=np.uint8).reshape(height, int(plane.line_size))
            flat[start : start + height * width].reshape(height, width)[...] = source[:, :width]
            start += height * width

    def _rgb_into(self, frame: Any, out: np.ndarray, row: int) -> None:
        """Convert a decoded frame to RGB24 and write it into ``out[row]`` (one copy out of FFmpeg's buffer)."""
        if (frame.height, frame.width) != out.shape[1:3]:
            raise VideoReadError(
                f"{self.path}: a frame is {frame.height}x{frame.width} but the first frame read is "
                f"{out.shape[1]}x{out.shape[2]} — the resolution changes inside the stream; re-encode it at one "
                "size (ffmpeg -i IN -vf scale=W:H -c:v libx264 OUT.mp4)"
            )
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        out[row] = self._reformatter.reformat(frame, format="rgb24").to_ndarray()

    def close(self) -> None:
        """Release the demuxer and decoder (also done when the reader is garbage-collected)."""
        self._decoder = None
        self._container.close()
