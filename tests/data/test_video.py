"""Frame readers: video files (every installed backend) and numbered frame folders behind one interface.

Cross-backend equality over codecs and containers is in test_video_backends.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tvau_lightning.data.synthetic import _write_video
from tvau_lightning.data.video import (
    DecordVideo,
    FrameFolderVideo,
    PyAVVideo,
    VideoReader,
    VideoReadError,
    available_backends,
    list_frame_images,
    open_video,
)

LEVELS = np.arange(0, 240, 8)  # frame t is a flat grey of LEVELS[t]: identifiable after lossy compression


def _grey_frames(height: int = 48, width: int = 64) -> list[np.ndarray]:
    return [np.full((height, width, 3), level, dtype=np.uint8) for level in LEVELS]


@pytest.fixture(scope="module", params=["mp4", "avi"])
def grey_video(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / f"grey.{request.param}"
    _write_video(path, _grey_frames(), fps=25.0, codec="libx264" if request.param == "mp4" else "mpeg4")
    return path


@pytest.fixture(params=available_backends())
def backend(request):
    return request.param


def test_video_file_metadata(grey_video, backend):
    video = open_video(grey_video, backend)
    assert isinstance(video, {"decord": DecordVideo, "pyav": PyAVVideo}[backend]) and isinstance(video, VideoReader)
    assert video.num_frames == len(LEVELS)
    assert video.fps == pytest.approx(25.0)
    assert video.size == (48, 64)


def test_video_file_reads_the_requested_frames_in_order(grey_video, backend):
    video = open_video(grey_video, backend)
    indices = [17, 3, 3, 29, 0, 12]  # unsorted, with a repeat: get_batch must still be frame-accurate
    frames = video.read(indices)
    assert frames.shape == (len(indices), 48, 64, 3) and frames.dtype == torch.uint8
    means = frames.float().mean(dim=(1, 2, 3)).numpy()
    decoded = [int(np.argmin(np.abs(LEVELS - m))) for m in means]
    assert decoded == indices
    assert torch.equal(frames[1], frames[2])
    # the same frames read one by one agree with the batch read
    single = torch.cat([video.read([i]) for i in indices])
    assert torch.equal(single, frames)


def test_video_file_out_of_range_index_names_the_file(grey_video, backend):
    with pytest.raises(IndexError, match=str(grey_video.name)):
        open_video(grey_video, backend).read([0, len(LEVELS)])


def test_corrupt_video_error_names_the_path(tmp_path, backend):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(VideoReadError, match="broken.mp4"):
        open_video(bad, backend)


def test_truncated_video_error_names_the_path(grey_video, tmp_path, backend):
    truncated = tmp_path / f"cut{grey_video.suffix}"
    truncated.write_bytes(grey_video.read_bytes()[:600])
    with pytest.raises(VideoReadError, match=f"cut{grey_video.suffix}"):
        video = open_video(truncated, backend)
        video.read(list(range(video.num_frames)))


def test_missing_video(tmp_path, backend):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        open_video(tmp_path / "nothing.mp4", backend)


def _frame_folder(tmp_path, names, size=(10, 14)):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, name in enumerate(names):
        Image.fromarray(np.full((*size, 3), k * 20, dtype=np.uint8)).save(folder / name, quality=100)
    return folder


def test_frame_folder_orders_by_number_not_by_name(tmp_path):
    # unpadded names sort lexicographically as 0, 1, 10, 11, 2 …; frame k must be the k-th number
    names = [f"{k}.jpg" for k in range(12)]
    folder = _frame_folder(tmp_path, names)
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in list_frame_images(folder)] == names
    video = open_video(folder, fps=12.5)
    assert isinstance(video, FrameFolderVideo)
    assert (video.num_frames, video.fps, video.size) == (12, 12.5, (10, 14))
    frames = video.read(np.array([11, 2, 10]))
    assert frames.shape == (3, 10, 14, 3)
    assert frames.float().mean(dim=(1, 2, 3)).round().tolist() == [220, 40, 200]


def test_frame_folder_zero_padded_names(tmp_path):
    folder = _frame_folder(tmp_path, [f"{k:03d}.jpg" for k in range(5)])
    assert open_video(folder).read([4]).float().mean().round() == 80


def test_frame_folder_errors_name_the_file(tmp_path):
    folder = _frame_folder(tmp_path, ["000.jpg", "001.jpg"])
    (folder / "001.jpg").write_bytes(b"garbage")
    video = open_video(folder)
    with pytest.raises(VideoReadError, match="001.jpg"):
        video.read([1])
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / "cover.jpg")
    with pytest.raises(VideoReadError, match="cover.jpg"):
        open_video(folder)


def test_frame_folder_of_different_sizes_is_an_error(tmp_path):
    folder = _frame_folder(tmp_path, ["000.jpg"])
    Image.fromarray(np.zeros((12, 14, 3), dtype=np.uint8)).save(folder / "001.jpg")
    with pytest.raises(VideoReadError, match="001.jpg"):
        open_video(folder).read([1])
