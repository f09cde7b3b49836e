"""Evaluation metrics as torchmetrics (SPEC §6), plus their functional forms in :mod:`.functional`.

* :class:`MicroAUROC`, :class:`MacroAUROC` — frame ROC-AUC (macro padded the UBnormal way by default).
* :class:`RegionTrackDetection` (and :class:`RBDC`, :class:`TBDC`) — region/track-based detection criteria
  from heatmaps; :mod:`.regions` turns heatmaps and masks into boxes and tracks.
* :class:`BLEU4`, :class:`YesNoAccuracy` — dialogue text metrics.

Every metric syncs under DDP and counts a repeated frame/sample once; conventions: ``docs/metrics.md``.
"""

from tvau_lightning.metrics import functional, regions
from tvau_lightning.metrics.frame_auc import MacroAUROC, MicroAUROC
from tvau_lightning.metrics.rbdc_tbdc import RBDC, TBDC, RegionTrackDetection
from tvau_lightning.metrics.state import video_hash
from tvau_lightning.metrics.text import BLEU4, YesNoAccuracy

__all__ = [
    "BLEU4",
    "RBDC",
    "TBDC",
    "MacroAUROC",
    "MicroAUROC",
    "RegionTrackDetection",
    "YesNoAccuracy",
    "functional",
    "regions",
    "video_hash",
]
