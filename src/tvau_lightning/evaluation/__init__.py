"""What ``tvau validate`` / ``tvau test`` write beside the logs, for the stage-1 AHD task.

* :class:`EvaluationArtifacts` — the Lightning callback (a default of the ``tvau`` CLI, ``--eval_artifacts.*``)
  that writes ``<log_dir>/eval/``: ``metrics.json`` with 95 % bootstrap intervals over videos,
  ``per_video.csv``, ``frame_scores.csv``, ``detections.csv``, ``gt_regions.csv``, the ROC and RBDR/TBDR
  curves as CSV and PNG, per-video score timelines; formats in :mod:`.artifacts`.
* :func:`records_from_metrics` → :func:`summarize` → :func:`write_artifacts` — the same without Lightning.
* :mod:`.bootstrap` — the interval method; :mod:`.curves` — the frame ROC curve; :mod:`.plots` — the
  matplotlib figures (imported on use: matplotlib is not loaded with this package).
"""

from tvau_lightning.evaluation.artifacts import evaluation_figures, write_artifacts
from tvau_lightning.evaluation.bootstrap import METRIC_NAMES, Estimate, VideoResampler, bootstrap_metrics
from tvau_lightning.evaluation.callback import EvaluationArtifacts
from tvau_lightning.evaluation.curves import ROCCurve, roc_curve
from tvau_lightning.evaluation.records import EvaluationRecords, records_from_metrics
from tvau_lightning.evaluation.summary import PER_VIDEO_COLUMNS, EvaluationSummary, summarize

__all__ = [
    "METRIC_NAMES",
    "PER_VIDEO_COLUMNS",
    "Estimate",
    "EvaluationArtifacts",
    "EvaluationRecords",
    "EvaluationSummary",
    "ROCCurve",
    "VideoResampler",
    "bootstrap_metrics",
    "evaluation_figures",
    "records_from_metrics",
    "roc_curve",
    "summarize",
    "write_artifacts",
]
