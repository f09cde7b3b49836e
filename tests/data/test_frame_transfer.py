"""Frames from the decoder to the model's device: readers decode into one preallocated array (same frames as a
plain per-frame decode), ``resize_on: device`` gives the model the same bytes as resizing in the dataset (on
the CPU), batches that mix source sizes are resized in the collate, the feature-cache fill resizes like the
Trainer, and the DataModule loader defaults (workers = usable cores, pinning on CUDA, resize_on auto)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tvau_lightning.data.clips import (
    VideoClipDataModule,
    collate_mixed_sizes,
    default_num_workers,
    resolve_resize_on,
)
from tvau_lightning.data.feature_cache import data_fingerprint
from tvau_lightning.data.shanghaitech import ShanghaiTechDataModule
from tvau_lightning.data.transforms import _interpolate_float, resize_frames
from tvau_lightning.data.types import ClipSample, collate_clips
from tvau_lightning.data.ubnormal import UBnormalDataModule
from tvau_lightning.data.video import FrameFolderVideo, PyAVVideo
from tvau_lightning.data.video.base import frame_buffer, gather_frames
from tvau_lightning.modules.feature_extraction import fill_feature_cache

FRAME_SIZE = (32, 48)


def _write_mp4(path, frames: np.ndarray, gop: int = 6) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": str(gop), "bf": "2", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _plain_decode(path) -> np.ndarray:
    """Every frame, decoded front to back and converted one by one (the reader's old per-frame path)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (20, 12, 16, 3), dtype=np.uint8), 4, axis=1).repeat(4, axis=2)
    path = tmp_path_factory.mktemp("prealloc") / "v.mp4"
    _write_mp4(path, frames)
    return path


@pytest.mark.parametrize("indices", [list(range(20)), [3, 4, 5, 6], [17, 2, 9, 2, 0, 19, 9], [11]])
def test_pyav_reads_into_one_buffer_the_frames_of_a_plain_decode(video, indices):
    expected = _plain_decode(video)
    frames = PyAVVideo(video, num_threads=1).read(indices)
    assert frames.dtype == torch.uint8 and frames.is_contiguous() and frames.shape == (len(indices), 48, 64, 3)
    np.testing.assert_array_equal(frames.numpy(), expected[indices])


def test_frame_folder_reads_into_one_buffer(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 10, 14, 3), dtype=np.uint8)
    for k, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{k:03d}.png")
    order = [4, 0, 0, 3]
    np.testing.assert_array_equal(FrameFolderVideo(tmp_path).read(order).numpy(), images[order])


def test_gather_frames_of_a_buffer():
    buffer = torch.arange(4 * 2 * 2 * 3, dtype=torch.uint8).view(4, 2, 2, 3)
    wanted = np.array([3, 1, 1, 0])
    unique, inverse = np.unique(wanted, return_inverse=True)
    assert torch.equal(gather_frames(buffer[unique], unique, wanted, inverse), buffer[wanted])
    in_order = np.arange(4)
    assert gather_frames(buffer, in_order, in_order, in_order) is buffer  # no copy


class _BufferIsShared(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[bool, bool]:
        return frame_buffer(2, 3, 4, shared=True).is_shared(), frame_buffer(2, 3, 4).is_shared()


def test_frame_buffer_is_shared_memory_inside_a_worker_when_asked():
    assert not frame_buffer(2, 3, 4, shared=True).is_shared()  # the main process: plain memory
    assert next(iter(DataLoader(_BufferIsShared(), num_workers=1, batch_size=None))) == [True, False]


def _sample(height: int, width: int, seed: int) -> ClipSample:
    frames = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (4, height, width, 3), dtype=np.uint8))
    return ClipSample(frames=frames, masks=torch.zeros((4, *FRAME_SIZE), dtype=torch.bool),
                      frame_labels=torch.zeros(4, dtype=torch.int64), frame_index=torch.arange(4),
                      valid=torch.ones(4, dtype=torch.bool), video_id=f"v{seed}", fps=25.0,
                      original_size=(height, width))


def test_collate_resizes_a_batch_that_mixes_source_sizes():
    a, b = _sample(60, 80, 0), _sample(44, 90, 1)
    batch = collate_mixed_sizes([a, b], collate_clips, FRAME_SIZE, "bilinear")
    assert batch.frames.shape == (2, 4, *FRAME_SIZE, 3)
    assert torch.equal(batch.frames[0], resize_frames(a.frames, FRAME_SIZE))
    assert torch.equal(batch.frames[1], resize_frames(b.frames, FRAME_SIZE))
    same = collate_mixed_sizes([a, _sample(60, 80, 2)], collate_clips, FRAME_SIZE, "bilinear")
    assert same.frames.shape == (2, 4, 60, 80, 3)  # one size: left for the device
    one = collate_clips([a])
    assert one.frames.data_ptr() == a.frames.data_ptr()  # a batch of one clip is a view, not a copy


def test_float_resize_of_other_devices_is_within_one_level_when_down_scaling():
    frames = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (3, 90, 160, 3), dtype=np.uint8))
    for mode in ("bilinear", "bicubic"):
        for size in ((56, 84), (45, 160), (90, 100), (30, 40)):
            exact = resize_frames(frames, size, mode)
            other = _interpolate_float(frames.permute(0, 3, 1, 2), size, mode, True).permute(0, 2, 3, 1)
            assert (exact.int() - other.int()).abs().max() <= 1, (mode, size)


def _data(dataset, **kwargs) -> UBnormalDataModule:
    return UBnormalDataModule(str(dataset.root), str(dataset.split_dir), clip_len=8, frame_size=FRAME_SIZE,
                              num_workers=0, **kwargs)


@pytest.mark.parametrize("split", ["train", "test"])
def test_device_resize_gives_the_batches_of_dataset_resize(synthetic_ubnormal, split):
    on_data, on_device = _data(synthetic_ubnormal, resize_on="data"), _data(synthetic_ubnormal, resize_on="device")
    source = tuple(on_device.dataset(split).original_size(on_device.dataset(split).video_ids[0]))
    assert on_device.dataset(split)[0].frames.shape[1:3] == source != FRAME_SIZE  # the workers do not resize
    assert on_device.dataset(split)[0].masks.shape[1:] == FRAME_SIZE  # targets are resized either way
    torch.manual_seed(0)
    data_batches = list(on_data.train_dataloader() if split == "train" else on_data.test_dataloader())
    torch.manual_seed(0)
    device_batches = list(on_device.train_dataloader() if split == "train" else on_device.test_dataloader())
    assert len(data_batches) == len(device_batches) > 0
    for expected, batch in zip(data_batches, device_batches):
        assert batch.frames.shape[2:4] == source
        batch = on_device.on_after_batch_transfer(batch, 0)
        assert torch.equal(batch.frames, expected.frames)
        assert torch.equal(batch.masks, expected.masks) and torch.equal(batch.frame_index, expected.frame_index)
    assert on_data.on_after_batch_transfer(data_batches[0], 0).frames is data_batches[0].frames


def test_a_cached_placeholder_is_resized_without_memory(synthetic_ubnormal):
    dm = _data(synthetic_ubnormal, resize_on="device")
    placeholder = torch.zeros((), dtype=torch.uint8).expand(2, 8, 60, 80, 3)
    out = dm.frames_to_size(placeholder)
    assert out.shape == (2, 8, *FRAME_SIZE, 3) and out.stride() == (0, 0, 0, 0, 0)


class _RecordingModel:
    """The surface ``fill_feature_cache`` uses; records the frames it is given."""

    def __init__(self) -> None:
        self.backbone = SimpleNamespace(dtype=torch.float32)
        self.layers = [0]
        self.device = torch.device("cpu")
        self.seen: list[torch.Tensor] = []

    def feature_identity(self, datamodule):  # noqa: ANN001, ANN201
        return {"backbone": "recording", "layers": self.layers, "data": data_fingerprint(datamodule)}

    def encode(self, frames):  # noqa: ANN001, ANN201
        self.seen.append(frames.clone())
        return None, SimpleNamespace(layer_features={0: frames.float().mean(dim=(2, 3))[:, :, None, None, :]})

    def layer_features(self, vision):  # noqa: ANN001, ANN201
        return [vision.layer_features[0]]


def test_feature_cache_fill_resizes_like_the_trainer(synthetic_ubnormal, tmp_path):
    seen = {}
    for resize_on in ("data", "device"):
        model = _RecordingModel()
        fill_feature_cache(model, _data(synthetic_ubnormal, resize_on=resize_on), tmp_path / resize_on,
                           splits=("test",), batch_size=2, num_workers=0)
        seen[resize_on] = model.seen
    assert len(seen["data"]) == len(seen["device"]) > 0
    for expected, frames in zip(seen["data"], seen["device"]):
        assert frames.shape[2:4] == FRAME_SIZE and torch.equal(frames, expected)


def test_feature_cache_fill_converts_yuv_like_the_trainer(synthetic_ubnormal, tmp_path):
    dm = _data(synthetic_ubnormal, resize_on="device_yuv420", video_backend="pyav")
    model = _RecordingModel()
    fill_feature_cache(model, dm, tmp_path / "yuv", splits=("test",), batch_size=2, num_workers=0)
    dataset = dm.dataset("test")
    assert len(model.seen) == (len(dataset) + 1) // 2 > 0
    for k, frames in enumerate(model.seen):
        samples = [dataset[i] for i in range(2 * k, min(2 * k + 2, len(dataset)))]
        expected = dm.on_after_batch_transfer(dm.clip_collate()(samples), 0).frames
        assert frames.shape[2:] == (*FRAME_SIZE, 3) and torch.equal(frames, expected)


def test_loader_defaults():
    for module in (VideoClipDataModule, UBnormalDataModule, ShanghaiTechDataModule):
        parameters = inspect.signature(module.__init__).parameters
        assert parameters["num_workers"].default is None, module
        assert parameters["pin_memory"].default is None, module
    for module in (VideoClipDataModule, UBnormalDataModule, ShanghaiTechDataModule):
        assert inspect.signature(module.__init__).parameters["resize_on"].default == "data"
    assert default_num_workers() >= 1
    assert resolve_resize_on("auto") == ("device" if torch.cuda.is_available() else "data")
    assert resolve_resize_on("device") == "device"
    with pytest.raises(ValueError, match="resize_on must be one of auto, data, device, device_yuv420, got 'gpu'"):
        resolve_resize_on("gpu")


def test_default_datamodule_uses_the_cores_and_pins_on_cuda(synthetic_ubnormal):
    dm = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir))
    assert dm.num_workers == default_num_workers()
    assert dm.pin_memory is torch.cuda.is_available()
    assert dm.resize_on == "data" == dm.dataset("test").resize_on
    auto = UBnormalDataModule(str(synthetic_ubnormal.root), str(synthetic_ubnormal.split_dir), resize_on="auto")
    assert auto.resize_on == resolve_resize_on("auto") == auto.dataset("test").resize_on


def test_a_clip_batch_pins_its_tensors(monkeypatch):
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self) or self.clone())
    batch = collate_clips([_sample(60, 80, 0), _sample(60, 80, 1)])
    batch.gt_boxes = [torch.zeros((1, 6), dtype=torch.int64)] * 2
    batch.extras["feature"] = torch.ones(2, 3)
    placeholder = torch.zeros((), dtype=torch.uint8).expand(2, 4, 60, 80, 3)
    result = batch.pin_memory()
    assert torch.equal(result.frames, batch.frames) and result.frames is not batch.frames
    assert result.extras["feature"] is not batch.extras["feature"] and result.gt_boxes[0] is not batch.gt_boxes[0]
    assert result.video_id == batch.video_id
    assert len(pinned) == 10  # frames, masks, labels, index, valid, fps, original_size, 2 boxes, 1 extra
    batch.frames = placeholder
    assert batch.pin_memory().frames is placeholder
