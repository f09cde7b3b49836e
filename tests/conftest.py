"""Shared fixtures, built once per test run. Each block below is self-contained; add yours beside them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# --------------------------------------------------------------------------------------------- synthetic video data
# Small datasets in UBnormal's and ShanghaiTech's native layouts (tvau_lightning.data.synthetic), written once
# per session into a temporary folder; each fixture returns a SyntheticDataset (root, split_dir, exact ground
# truth per video). Tests that modify files must copy the folder first (see tests/data/test_ubnormal.py).


@pytest.fixture(scope="session")
def synthetic_ubnormal(tmp_path_factory):
    from tvau_lightning.data.synthetic import write_synthetic_ubnormal

    return write_synthetic_ubnormal(tmp_path_factory.mktemp("synthetic") / "ubnormal", seed=0)


@pytest.fixture(scope="session")
def synthetic_shanghaitech(tmp_path_factory):
    from tvau_lightning.data.synthetic import write_synthetic_shanghaitech

    return write_synthetic_shanghaitech(tmp_path_factory.mktemp("synthetic") / "shanghaitech", seed=0)


# --------------------------------------------------------------------------------------------- tiny backbones
# Tiny random backbones of every family (tvau_lightning.backbones.tiny), saved once per session so that the
# real loading path (load_backbone on a folder) is what tests exercise.


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory) -> Callable[[str], Path]:
    """``family → folder`` of a tiny random backbone saved with ``build_tiny_backbone(family, dir, seed=0)``.

    Built lazily, once per session. Tests that modify a folder must copy it first.
    """
    from tvau_lightning.backbones.tiny import build_tiny_backbone

    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            out = tmp_path_factory.mktemp(f"tiny_{family}") / "model"
            build_tiny_backbone(family, out, seed=0)
            cache[family] = out
        return cache[family]

    return get
