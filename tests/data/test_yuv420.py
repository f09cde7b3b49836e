"""YUV 4:2:0 frames converted on the model's device (``resize_on: device_yuv420``): the reader copies exactly the
planes PyAV decodes, the plain-torch conversion matches PyAV's own ``rgb24`` (untagged, bt709-tagged and
full-range libx264 videos), and the DataModule's batches — with or without workers, and in the feature-cache
fill — are RGB at ``frame_size`` after ``on_after_batch_transfer``, within a few levels of ``resize_on: data``."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from tvau_lightning.data.clips import collate_mixed_sizes, frames_as_rgb, frames_format_of, resolve_resize_on
from tvau_lightning.data.feature_cache import data_fingerprint
from tvau_lightning.data.types import ClipSample, collate_clips
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.data.video import PyAVVideo
from tvau_lightning.data.video.yuv import YUVColour, is_yuv420, yuv420_size, yuv420_to_rgb

FRAME_SIZE = (32, 48)
#: measured on these videos (random 4×4 colour blocks, the worst case for chroma): mean |diff| 0.65, max 2
MEAN_TOLERANCE, MAX_TOLERANCE = 1.0, 2

#: libx264 settings of each tagging: (pixel format, codec options)
TAGGINGS = {
    "untagged": ("yuv420p", {}),
    "bt709": ("yuv420p", {"x264-params": "colorprim=bt709:transfer=bt709:colormatrix=bt709"}),
    "full_range": ("yuvj420p", {"x264-params": "fullrange=on"}),
    "yuv444": ("yuv444p", {}),
}


def _moving_texture(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 4 + 1, (width + frames) // 4 + 1, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8))
    return np.stack([texture[:height, t : t + width] for t in range(frames)])


def _write(path, tagging: str, frames: int = 8, height: int = 48, width: int = 80) -> None:
    pix_fmt, options = TAGGINGS[tagging]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "4", "bf": "2", **options})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in _moving_texture(frames, height, width):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("yuv420")
    paths = {}
    for tagging in TAGGINGS:
        paths[tagging] = root / f"{tagging}.mp4"
        _write(paths[tagging], tagging)
    return paths


def _decoded(path) -> list:
    with av.open(str(path)) as container:
        return [(f.to_ndarray(format="yuv420p") if f.format.name in ("yuv420p", "yuvj420p") else None,
                 f.to_ndarray(format="rgb24"), YUVColour.of_frame(f), f.format.name) for f in container.decode(video=0)]


@pytest.mark.parametrize("tagging", ["untagged", "bt709", "full_range"])
def test_reader_copies_the_planes_pyav_decodes(videos, tagging):
    decoded = _decoded(videos[tagging])
    order = [5, 0, 0, 7, 3]
    frames, colour = PyAVVideo(videos[tagging], num_threads=1).read_yuv420(order)
    assert frames.dtype == torch.uint8 and frames.shape == (len(order), 48 * 3 // 2, 80) and is_yuv420(frames)
    for row, index in enumerate(order):
        np.testing.assert_array_equal(frames[row].numpy(), decoded[index][0])
    expected = {"untagged": (2, 0), "bt709": (1, 1), "full_range": (2, 2)}[tagging]
    assert tuple(colour) == expected  # yuvj420p untagged by x264's range: full range, as swscale reads it
    assert yuv420_size(frames) == (48, 80)


@pytest.mark.parametrize("tagging", ["untagged", "bt709", "full_range"])
def test_conversion_matches_pyav_rgb24(videos, tagging):
    decoded = _decoded(videos[tagging])
    frames, colour = PyAVVideo(videos[tagging], num_threads=1).read_yuv420(list(range(len(decoded))))
    rgb = yuv420_to_rgb(frames, colour).numpy().astype(np.int64)
    reference = np.stack([d[1] for d in decoded]).astype(np.int64)
    diff = np.abs(rgb - reference)
    assert diff.mean() < MEAN_TOLERANCE and diff.max() <= MAX_TOLERANCE, (tagging, diff.mean(), diff.max())
    # the tags matter: converting with another matrix or range is far off (the test can tell them apart)
    for other in ((1, 1), (2, 0), (2, 2)):
        if other != tuple(colour):
            assert np.abs(yuv420_to_rgb(frames, other).numpy().astype(np.int64) - reference).mean() > 3, other


def test_a_source_that_is_not_4_2_0_is_read_as_rgb(videos):
    reader = PyAVVideo(videos["yuv444"], num_threads=1)
    assert reader.read_yuv420([0, 1]) is None
    np.testing.assert_array_equal(reader.read([1]).numpy()[0], _decoded(videos["yuv444"])[1][1])


def test_conversion_checks_its_input():
    with pytest.raises(ValueError, match="H \\* 3 / 2 rows and an even width"):
        yuv420_to_rgb(torch.zeros((1, 10, 8), dtype=torch.uint8))
    with pytest.raises(ValueError, match="carry no colour"):
        frames_as_rgb(torch.zeros((1, 2, 6, 4), dtype=torch.uint8), None)
    rgb = torch.zeros((1, 2, 4, 4, 3), dtype=torch.uint8)
    assert frames_as_rgb(rgb, None) is rgb


def _sample(frames: torch.Tensor, colour, seed: int) -> ClipSample:
    steps = frames.shape[0]
    return ClipSample(frames=frames, masks=torch.zeros((steps, *FRAME_SIZE), dtype=torch.bool),
                      frame_labels=torch.zeros(steps, dtype=torch.int64), frame_index=torch.arange(steps),
                      valid=torch.ones(steps, dtype=torch.bool), video_id=f"v{seed}", fps=25.0, original_size=(48, 80),
                      frames_colour=colour)


def test_collate_keeps_one_colour_of_yuv_and_converts_a_mixed_batch(videos):
    yuv, colour = PyAVVideo(videos["untagged"], num_threads=1).read_yuv420([0, 1, 2, 3])
    tagged, colour709 = PyAVVideo(videos["bt709"], num_threads=1).read_yuv420([0, 1, 2, 3])
    batch = collate_mixed_sizes([_sample(yuv, tuple(colour), 0), _sample(yuv.clone(), tuple(colour), 1)],
                                collate_clips, FRAME_SIZE)
    assert batch.frames.shape == (2, 4, 72, 80) and batch.frames_colour == tuple(colour)
    mixed = collate_mixed_sizes([_sample(yuv, tuple(colour), 0), _sample(tagged, tuple(colour709), 1)],
                                collate_clips, FRAME_SIZE)
    assert mixed.frames.shape == (2, 4, 48, 80, 3) and mixed.frames_colour is None
    assert torch.equal(mixed.frames[0], yuv420_to_rgb(yuv, colour))
    assert torch.equal(mixed.frames[1], yuv420_to_rgb(tagged, colour709))
    rgb = torch.zeros((4, 30, 40, 3), dtype=torch.uint8)
    with_rgb = collate_mixed_sizes([_sample(yuv, tuple(colour), 0), _sample(rgb, None, 1)], collate_clips, FRAME_SIZE)
    assert with_rgb.frames.shape == (2, 4, *FRAME_SIZE, 3) and with_rgb.frames_colour is None


def _data(dataset, resize_on: str, **kwargs) -> UBnormalDataModule:
    return UBnormalDataModule(str(dataset.root), str(dataset.split_dir), clip_len=8, frame_size=FRAME_SIZE,
                              video_backend="pyav", resize_on=resize_on, **kwargs)


def test_resize_on_device_yuv420_is_device_resizing_of_yuv_frames(synthetic_ubnormal):
    assert resolve_resize_on("device_yuv420") == "device" and frames_format_of("device_yuv420") == "yuv420"
    assert frames_format_of("device") == frames_format_of("data") == "rgb"
    dm = _data(synthetic_ubnormal, "device_yuv420", num_workers=0)
    assert dm.resize_on == "device" and dm.frames_format == "yuv420" == dm.dataset("test").frames_format
    item = dm.dataset("test")[0]
    height, width = dm.dataset("test").original_size(item.video_id)
    assert is_yuv420(item.frames) and item.frames.shape[1:] == (height * 3 // 2, width) and item.frames_colour
    assert item.masks.shape[1:] == FRAME_SIZE
    # a feature cache of YUV-path features is not mixed with one of the RGB path (they differ by a level or two)
    assert data_fingerprint(dm)["frames_format"] == "yuv420"
    assert "frames_format" not in data_fingerprint(_data(synthetic_ubnormal, "device", num_workers=0))


@pytest.mark.parametrize("split", ["train", "test"])
def test_yuv_batches_are_the_same_with_and_without_workers_and_near_dataset_resize(synthetic_ubnormal, split):
    def batches(resize_on: str, workers: int) -> list:
        dm = _data(synthetic_ubnormal, resize_on, num_workers=workers)
        torch.manual_seed(0)
        loader = dm.train_dataloader() if split == "train" else dm.test_dataloader()
        return [dm.on_after_batch_transfer(batch, 0) for batch in loader]

    main, workers, on_data = batches("device_yuv420", 0), batches("device_yuv420", 2), batches("data", 0)
    assert len(main) == len(on_data) > 0
    by_clip = {(b.video_id[0], tuple(b.frame_index[0].tolist())): b for b in workers}  # workers interleave videos
    assert len(by_clip) == len(main)
    for batch, expected in zip(main, on_data):
        assert batch.frames.shape == expected.frames.shape == (1, 8, *FRAME_SIZE, 3)
        assert batch.frames.dtype == torch.uint8 and batch.frames_colour is None
        assert torch.equal(batch.masks, expected.masks) and torch.equal(batch.frame_index, expected.frame_index)
        assert torch.equal(by_clip[(batch.video_id[0], tuple(batch.frame_index[0].tolist()))].frames, batch.frames)
        diff = (batch.frames.int() - expected.frames.int()).abs()
        assert diff.float().mean() < MEAN_TOLERANCE and diff.max() <= MAX_TOLERANCE
