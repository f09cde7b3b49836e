"""Inference at training precision: analyze with a bf16 backbone runs tower and AHD under bf16 autocast, hands
the bf16 features to the AHD's projections without an fp32 copy, keeps cosine/softmax/scores in fp32, and gives
heatmaps within a stated tolerance of the fp32 run (tiny random Qwen2.5-VL, CPU).

Tolerance: per-frame grid heatmaps (p(abnormal) in [0, 1]) within 0.1 of fp32 at any cell and 0.01 on average,
frame scores within 0.05. bf16 rounds every block's activations to 2⁻⁸ relative and the heatmap is a softmax
of 100 × cosine, whose slope at 0.5 is 25 per unit of cosine: a cosine that moves by 0.003 near the decision
boundary moves the heatmap by ~0.07 (observed on the tiny model: max 0.065 on one cell near 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tvau_lightning.backbones.registry import load_backbone
from tvau_lightning.inference.analyze import analyze_video
from tvau_lightning.inference.models import HeatmapPredictor
from tvau_lightning.modules.anomaly_model import AnomalyHeatmapModel

HEATMAP_TOL = 0.1
HEATMAP_MEAN_TOL = 0.01
SCORE_TOL = 0.05


class _MemoryVideo:
    """A :class:`~tvau_lightning.data.video.VideoReader` over frames held in memory."""

    def __init__(self, frames: torch.Tensor, fps: float = 10.0) -> None:
        self.frames, self.path, self._fps = frames, Path("memory.mp4"), fps

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def read(self, indices) -> torch.Tensor:  # noqa: ANN001 - the reader protocol
        return self.frames[torch.as_tensor(np.asarray(indices), dtype=torch.long)]


def _models(qwen_dir: Path) -> tuple[AnomalyHeatmapModel, AnomalyHeatmapModel]:
    fp32 = load_backbone(str(qwen_dir), dtype="float32", vision_only=True, vision_path="fast")
    bf16 = load_backbone(str(qwen_dir), dtype="bfloat16", vision_only=True, vision_path="fast")
    torch.manual_seed(0)
    model = AnomalyHeatmapModel.build(fp32)
    model.ahd.set_prototypes(torch.randn(2, fp32.text_hidden_size))
    return model.eval(), AnomalyHeatmapModel(bf16, model.ahd, model.layers).eval()


@pytest.fixture(scope="module")
def video() -> _MemoryVideo:
    g = torch.Generator().manual_seed(7)
    frames = torch.randint(0, 256, (20, 64, 96, 3), dtype=torch.uint8, generator=g)
    frames[:, 16:40, 24:60] = 255 - frames[:, 16:40, 24:60]  # some structure beyond noise
    return _MemoryVideo(frames)


def test_bf16_analyze_heatmaps_within_tolerance_of_fp32(tiny_backbone_dir, video):
    fp32_model, bf16_model = _models(tiny_backbone_dir("qwen2_5_vl"))
    runs = {}
    for name, model in (("fp32", fp32_model), ("bf16", bf16_model)):
        runs[name] = analyze_video(HeatmapPredictor(model), video, frame_size=(64, 96), clip_len=8, batch_size=2)
    a, b = runs["fp32"], runs["bf16"]
    assert a.grid_heatmaps.shape == b.grid_heatmaps.shape == (20, 16, 24)
    assert float(a.grid_heatmaps.std()) > 0.05  # heatmaps that vary, not a constant
    diff = (a.grid_heatmaps - b.grid_heatmaps).abs()
    assert float(diff.max()) <= HEATMAP_TOL and float(diff.mean()) <= HEATMAP_MEAN_TOL
    assert float(np.abs(a.scores - b.scores).max()) <= SCORE_TOL
    assert not np.array_equal(a.scores, b.scores)  # the bf16 run really computed in bf16


def test_bf16_features_reach_the_projections_without_an_fp32_copy(tiny_backbone_dir, video):
    _, bf16_model = _models(tiny_backbone_dir("qwen2_5_vl"))
    seen = []
    hooks = [proj[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
             for proj in bf16_model.ahd.projections]
    try:
        heat, scores = HeatmapPredictor(bf16_model).predict(video.frames[:8][None])
    finally:
        for h in hooks:
            h.remove()
    assert seen == [torch.bfloat16] * len(bf16_model.layers)
    # the AHD's weights stay fp32 (as trained); cosine, softmax and scores are computed in fp32
    assert bf16_model.ahd.projections[0][0].weight.dtype == torch.float32
    assert heat.dtype == scores.dtype == torch.float32
    assert torch.allclose(torch.sigmoid(scores), heat, atol=1e-5)
