"""Datasets and DataModules for UBnormal, ShanghaiTech Campus and the dialogue data (SPEC §5)."""

from tvau_lightning.data.types import ClipBatch, ClipSample, collate_clips

__all__ = ["ClipBatch", "ClipSample", "collate_clips"]
