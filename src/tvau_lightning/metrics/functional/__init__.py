"""Functional forms of the evaluation metrics (SPEC §6), one module per metric as in torchmetrics.

* :mod:`.frame_auc` — :func:`micro_auroc`, :func:`macro_auroc`;
* :mod:`.frame_ap` — :func:`frame_average_precision`; :mod:`.temporal_map` — :func:`temporal_map` (mAP@tIoU);
* :mod:`.rbdc_tbdc` — :func:`rbdc_tbdc`, :func:`rbdc_tbdc_curves` and the sweep behind both;
* :mod:`.text` — :func:`tokenize`, :func:`bleu4`, :func:`sentence_bleu4`, :func:`normalize_yes_no`,
  :func:`yes_no_accuracy`.

numpy/torch/lists in, Python floats out. The torchmetrics classes of :mod:`tvau_lightning.metrics`
accumulate state and call these. As in torchmetrics, a function may share its module's name:
``functional.rbdc_tbdc`` is the function (import from the module with ``from … import``). Conventions are
summarised in ``docs/metrics.md``; each function's docstring states its own.
"""

from tvau_lightning.metrics.functional.frame_ap import frame_average_precision
from tvau_lightning.metrics.functional.frame_auc import macro_auroc, micro_auroc
from tvau_lightning.metrics.functional.rbdc_tbdc import (
    RegionTrackCurves,
    rbdc_tbdc,
    rbdc_tbdc_curves,
    region_track_sweep,
)
from tvau_lightning.metrics.functional.temporal_map import TemporalMAPResult, temporal_map
from tvau_lightning.metrics.functional.text import (
    BleuLevel,
    ReferenceMode,
    bleu4,
    bleu4_from_tokens,
    normalize_yes_no,
    sentence_bleu4,
    tokenize,
    yes_no_accuracy,
)

__all__ = [
    "BleuLevel",
    "ReferenceMode",
    "RegionTrackCurves",
    "TemporalMAPResult",
    "bleu4",
    "bleu4_from_tokens",
    "frame_average_precision",
    "macro_auroc",
    "micro_auroc",
    "normalize_yes_no",
    "rbdc_tbdc",
    "rbdc_tbdc_curves",
    "region_track_sweep",
    "sentence_bleu4",
    "temporal_map",
    "tokenize",
    "yes_no_accuracy",
]
