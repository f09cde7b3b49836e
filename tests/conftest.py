"""Shared fixtures, built once per test run. Each block below is self-contained; add yours beside them."""

from __future__ import annotations

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
