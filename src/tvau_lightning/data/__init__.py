"""Datasets and DataModules for UBnormal, ShanghaiTech Campus and the dialogue data (SPEC §5).

The clip types are imported eagerly; the DataModules, readers and writers load on first access (PEP 562),
so importing a light module of this package (``data.types``, ``data.dialogue_schema``) never pulls in
Lightning, decord or scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

from tvau_lightning.data.types import ClipBatch, ClipSample, collate_clips

_LAZY = {
    "UBnormalDataModule": "tvau_lightning.data.ubnormal",
    "UBnormalDataset": "tvau_lightning.data.ubnormal",
    "ShanghaiTechDataModule": "tvau_lightning.data.shanghaitech",
    "ShanghaiTechDataset": "tvau_lightning.data.shanghaitech",
    "UCFCrimeDataModule": "tvau_lightning.data.ucf_crime",
    "XDViolenceDataModule": "tvau_lightning.data.xd_violence",
    "VideoClipDataModule": "tvau_lightning.data.clips",
    "VideoClipDataset": "tvau_lightning.data.clips",
    "DatasetFormatError": "tvau_lightning.data.clips",
    "evaluation_clips": "tvau_lightning.data.clips",
    "training_clips": "tvau_lightning.data.clips",
    "open_video": "tvau_lightning.data.video",
    "VideoReadError": "tvau_lightning.data.video",
    "resize_frames": "tvau_lightning.data.transforms",
    "resize_masks": "tvau_lightning.data.transforms",
    "write_synthetic_ubnormal": "tvau_lightning.data.synthetic",
    "write_synthetic_shanghaitech": "tvau_lightning.data.synthetic",
}

__all__ = ["ClipBatch", "ClipSample", "collate_clips", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
