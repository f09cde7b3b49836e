"""Planar YUV 4:2:0 frames (``frames_format: yuv420``) and their conversion to RGB on any device.

A decoder's native output for almost every video (H.264, HEVC, MPEG-4 in ``yuv420p``) is planar YUV 4:2:0: a
full-size luma plane and two chroma planes of half the width and height — half the bytes of the RGB frame. A
reader can ship that (:meth:`~tvau_lightning.data.video.pyav.PyAVVideo.read_yuv420`) and let the model's device
convert it, as GPU video pipelines do with NVDEC's NV12 output.

**Layout** (I420, one uint8 tensor): a frame of ``H × W`` pixels (``H`` and ``W`` even) is ``(H * 3 // 2, W)``:
rows ``[0, H)`` the luma plane, then the ``H/2 × W/2`` U plane and the V plane, each written row after row into
the next ``H / 4`` rows (the bytes of ``to_ndarray(format="yuv420p")``). A clip is ``(T, H * 3 // 2, W)``, a
batch ``(B, T, H * 3 // 2, W)``: one dimension fewer than RGB frames ``(…, H, W, 3)``, which is how
:func:`is_yuv420` tells them apart.

**Colour** (:class:`YUVColour`): the matrix and range come from the decoded frame (FFmpeg's ``AVColorSpace`` and
``AVColorRange`` codes, ``frame.colorspace`` / ``frame.color_range``). They follow what PyAV 18's
``frame.to_ndarray(format="rgb24")`` does, since RGB frames of the default path come from there: PyAV hands the
frame's tags to swscale, which for an unspecified matrix (code 2, most files x264 writes) uses BT.601 and for an
unspecified range the limited (MPEG) one; ``bt709`` uses BT.709; the coefficients are swscale's
(``sws_getCoefficients``: FCC, SMPTE 240M and BT.2020 have their own, anything else is BT.601), and a full-range
(JPEG) source scales chroma by 224/255 as swscale does. Chroma is upsampled by repeating each sample over its
2 × 2 pixels, as swscale's unscaled YUV → RGB converter does. ``tests/data/test_yuv420.py`` measures the result
against ``to_ndarray(format="rgb24")`` on libx264 videos (untagged and bt709): within a few levels per pixel,
well under one on average (swscale works in fixed point with table look-ups; this works in float32).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

#: FFmpeg's AVColorSpace codes this module names (``frame.colorspace``)
COLORSPACE_BT709, COLORSPACE_UNSPECIFIED, COLORSPACE_FCC = 1, 2, 4
COLORSPACE_SMPTE240M, COLORSPACE_BT2020_NCL, COLORSPACE_BT2020_CL = 7, 9, 10
#: FFmpeg's AVColorRange codes (``frame.color_range``): unspecified and MPEG are limited range, JPEG full
RANGE_UNSPECIFIED, RANGE_MPEG, RANGE_JPEG = 0, 1, 2

#: swscale's YUV → RGB coefficients per matrix (``ff_yuv2rgb_coeffs``, for limited-range chroma, in units of
#: 1/65536): ``(crv, cbu, cgu, cgv)`` — R = Y + crv·V, G = Y − cgu·U − cgv·V, B = Y + cbu·U (U, V centred)
_BT601 = (104597, 132201, 25675, 53279)
_COEFFICIENTS = {
    0: (117489, 138438, 13975, 34925),  # RGB / "no sequence display extension": swscale uses BT.709
    COLORSPACE_BT709: (117489, 138438, 13975, 34925),
    COLORSPACE_FCC: (104448, 132798, 24759, 53109),
    COLORSPACE_SMPTE240M: (117579, 136230, 16907, 35559),
    COLORSPACE_BT2020_NCL: (110013, 140363, 12277, 42626),
    COLORSPACE_BT2020_CL: (110013, 140363, 12277, 42626),
}


class YUVColour(NamedTuple):
    """How a YUV frame's values map to RGB: FFmpeg's ``AVColorSpace`` and ``AVColorRange`` codes."""

    colorspace: int = COLORSPACE_UNSPECIFIED
    color_range: int = RANGE_UNSPECIFIED

    @classmethod
    def of_frame(cls, frame: object) -> YUVColour:
        """The colour tags of a decoded ``av.VideoFrame``."""
        return cls(int(getattr(frame, "colorspace", COLORSPACE_UNSPECIFIED) or 0),
                   int(getattr(frame, "color_range", RANGE_UNSPECIFIED) or 0))

    @property
    def full_range(self) -> bool:
        return self.color_range == RANGE_JPEG

    def matrix(self) -> tuple[float, float, float, float]:
        """``(crv, cbu, cgu, cgv)`` for chroma centred on 0 and luma already scaled to [0, 255]."""
        coefficients = _COEFFICIENTS.get(self.colorspace, _BT601)
        scale = (224.0 / 255.0 if self.full_range else 1.0) / 65536.0
        crv, cbu, cgu, cgv = (c * scale for c in coefficients)
        return crv, cbu, cgu, cgv


def is_yuv420(frames: torch.Tensor) -> bool:
    """Whether ``frames`` are packed I420 (``(…, H * 3 // 2, W)`` uint8) rather than RGB ``(…, H, W, 3)``:
    a clip ``(T, ·, ·)`` or a batch ``(B, T, ·, ·)`` with no trailing channel dimension of 3."""
    # RGB ends in a channel dimension of 3; packed I420 ends in the width, which is even
    return frames.dtype == torch.uint8 and frames.ndim in (3, 4) and frames.shape[-1] != 3


def yuv420_size(frames: torch.Tensor) -> tuple[int, int]:
    """``(H, W)`` of the pictures in packed I420 ``frames``."""
    rows, width = int(frames.shape[-2]), int(frames.shape[-1])
    if rows % 3 or (rows // 3) % 2 or width % 2:
        raise ValueError(f"packed YUV 4:2:0 frames have H * 3 / 2 rows and an even width (H, W even), got "
                         f"{rows} × {width}")
    return rows * 2 // 3, width


def yuv420_to_rgb(
    frames: torch.Tensor, colour: YUVColour | tuple[int, int] = (COLORSPACE_UNSPECIFIED, RANGE_UNSPECIFIED)
) -> torch.Tensor:
    """Packed I420 ``(N, H * 3 // 2, W)`` uint8 frames → ``(N, H, W, 3)`` uint8 RGB, on their device.

    ``colour`` is the frames' :class:`YUVColour` (one for all ``N``). Works in float32 (any device) and truncates
    once at the end (swscale truncates its fixed-point results: rounding instead leaves every channel about one
    level above PyAV's ``rgb24`` on average, truncating about half a level). Planar arithmetic (the chroma terms
    at chroma resolution, upsampled by ``nearest`` interpolation), one frame at a time on the CPU (the float
    planes of a frame stay in cache: ~9–14 ms per 720p frame on one core, ~35 for a whole clip at once),
    all frames at once elsewhere.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 3:
        raise ValueError(f"yuv420_to_rgb expects (N, H * 3 / 2, W) uint8 frames, got {tuple(frames.shape)} "
                         f"{frames.dtype}")
    colour = YUVColour(*colour)
    height, width = yuv420_size(frames)
    out = torch.empty((frames.shape[0], height, width, 3), dtype=torch.uint8, device=frames.device)
    step = 1 if frames.device.type == "cpu" else max(1, frames.shape[0])
    for start in range(0, frames.shape[0], step):
        out[start : start + step] = _planar_rgb(frames[start : start + step], colour, height, width).permute(0, 2, 3, 1)
    return out


def _planar_rgb(frames: torch.Tensor, colour: YUVColour, height: int, width: int) -> torch.Tensor:
    """``(n, 3, H, W)`` uint8 RGB of packed I420 ``frames``."""
    count = frames.shape[0]
    flat = frames.reshape(count, -1)
    luma_size, chroma_size = height * width, (height // 2) * (width // 2)
    y = flat[:, :luma_size].view(count, 1, height, width).float()
    u = flat[:, luma_size : luma_size + chroma_size].view(count, height // 2, width // 2).float().sub_(128.0)
    v = flat[:, luma_size + chroma_size :].view(count, height // 2, width // 2).float().sub_(128.0)
    if not colour.full_range:
        y = y.sub_(16.0).mul_(255.0 / 219.0)
    crv, cbu, cgu, cgv = colour.matrix()
    chroma = torch.stack([v * crv, u.mul(-cgu).sub_(v, alpha=cgv), u * cbu], dim=1)  # (n, 3, H/2, W/2)
    # each chroma sample covers its 2 × 2 pixels (nearest upsampling, as swscale's unscaled converter)
    rgb = F.interpolate(chroma, scale_factor=2, mode="nearest").add_(y)
    return rgb.clamp_(0, 255).to(torch.uint8)  # the cast truncates: floor, as the values are >= 0 here
