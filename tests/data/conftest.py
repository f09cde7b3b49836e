"""Fixtures of the data tests, built once per test run."""

from __future__ import annotations

import pytest

# --------------------------------------------------------------------------------------------- weakly labelled data
# Small synthetic UCF-Crime and XD-Violence in their native layouts (tvau_lightning.data.synthetic_weak), written
# once per session; each fixture returns a SyntheticWeakDataset (DataModule paths, exact ground truth per video,
# side-file pixel masks). Tests that modify files must copy the folder first.


@pytest.fixture(scope="session")
def synthetic_ucf_crime(tmp_path_factory):
    from tvau_lightning.data.synthetic_weak import write_synthetic_ucf_crime

    return write_synthetic_ucf_crime(tmp_path_factory.mktemp("weak") / "ucf_crime", categories=("Abuse", "Arson", "Explosion"),
                                     train_per_category=1, test_per_category=2, normal_train=2, normal_test=1,
                                     num_frames=24, height=48, width=64, seed=1)


@pytest.fixture(scope="session")
def synthetic_xd_violence(tmp_path_factory):
    from tvau_lightning.data.synthetic_weak import write_synthetic_xd_violence

    return write_synthetic_xd_violence(tmp_path_factory.mktemp("weak") / "xd_violence", codes=("B1", "B2", "G"),
                                       normal_train=1, normal_test=1, num_frames=24, height=48, width=64, seed=2)
