"""Shared fixtures of the backbone tests: tiny random backbones, saved once per test session.

``FAMILIES`` lists the families the generic tests run over: every test that takes a ``family`` argument and
does not parametrize it itself runs once per family. Add a family here together with the frame size its tiny
model takes in ``TINY_FRAME_SIZE``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from tvau_lightning.backbones.base import BackboneAdapter
from tvau_lightning.backbones.registry import load_backbone

#: families covered by the generic adapter tests
FAMILIES: list[str] = ["qwen2_5_vl", "internvl", "llava", "llava_next"]

#: (H, W) of the frames the generic tests feed each family's tiny model
TINY_FRAME_SIZE: dict[str, tuple[int, int]] = {
    "qwen2_5_vl": (64, 96),
    # per-frame towers resize every frame to their square input; tiny ones take 32×32 (so no resize here)
    "internvl": (32, 32),
    "llava": (32, 32),
    "llava_next": (32, 32),
}


@pytest.fixture
def load_tiny(tiny_backbone_dir) -> Callable[..., BackboneAdapter]:
    """``load_tiny(family, vision_only=False, **config_overrides)`` → a freshly loaded fp32 adapter."""

    def load(family: str, *, vision_only: bool = False, **overrides) -> BackboneAdapter:
        return load_backbone(str(tiny_backbone_dir(family)), vision_only=vision_only, dtype="float32", **overrides)

    return load


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test with a ``family`` argument over :data:`FAMILIES` (unless it parametrizes it itself)."""
    if "family" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "family" in names:
            return
    metafunc.parametrize("family", FAMILIES)


@pytest.fixture
def frame_size(family: str) -> tuple[int, int]:
    """(H, W) of frames the family's tiny model takes."""
    return TINY_FRAME_SIZE[family]


@pytest.fixture
def make_clips() -> Callable[..., torch.Tensor]:
    """``make_clips(batch, frames, size, seed=0)`` → uint8 noise clips ``(B, T, H, W, 3)``."""
    return random_clips


def random_clips(batch: int, frames: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """uint8 clips ``(B, T, H, W, 3)`` of uniform noise."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, *size, 3), dtype=torch.uint8, generator=g)
