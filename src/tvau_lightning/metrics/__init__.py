"""Evaluation metrics as torchmetrics (SPEC §6), plus their functional forms in :mod:`.functional` (one module
per metric, mirroring the class modules).

* :class:`MicroAUROC`, :class:`MacroAUROC` — frame ROC-AUC (macro padded the UBnormal way by default).
* :class:`RegionTrackDetection` (and :class:`RBDC`, :class:`TBDC`) — region/track-based detection criteria
  from heatmaps; :mod:`.regions` turns heatmaps and masks into boxes and tracks.
* :class:`FrameAveragePrecision` — frame AP (XD-Violence); :class:`TemporalMAP` — fine-grained mAP@tIoU
  (UCF-Crime/XD-Violence categories; protocol in ``docs/datasets_weak.md``).
* :class:`BLEU4`, :class:`YesNoAccuracy` — dialogue text metrics.
* :mod:`.boxes` — box IoU for inclusive pixel boxes and for continuous boxes, each defined once.

Every metric syncs under DDP and counts a repeated frame/sample once; conventions: ``docs/metrics.md``.
"""

from tvau_lightning.metrics import boxes, functional, regions
from tvau_lightning.metrics.frame_ap import FrameAveragePrecision
from tvau_lightning.metrics.frame_auc import MacroAUROC, MicroAUROC
from tvau_lightning.metrics.rbdc_tbdc import RBDC, TBDC, RegionTrackDetection
from tvau_lightning.metrics.state import video_hash
from tvau_lightning.metrics.temporal_map import TemporalMAP
from tvau_lightning.metrics.text import BLEU4, YesNoAccuracy

__all__ = [
    "BLEU4",
    "FrameAveragePrecision",
    "RBDC",
    "TBDC",
    "MacroAUROC",
    "MicroAUROC",
    "RegionTrackDetection",
    "TemporalMAP",
    "YesNoAccuracy",
    "boxes",
    "functional",
    "regions",
    "video_hash",
]
