"""Text metrics of the anomaly dialogue as torchmetrics (SPEC §6): BLEU-4 per field, yes/no accuracy.

Strings cannot be synced across processes, so each update scores its samples at once and stores numbers:
one BLEU-4 per sample, or one (prediction, target) code pair per sample. Samples may carry ids
(``sample_ids``); at compute a repeated id (``DistributedSampler`` padding) counts once, its first
occurrence. Samples without ids are never merged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from tvau_lightning.metrics.functional import (
    sentence_bleu4,
    yes_no_codes,
    yes_no_scores,
    yes_no_target_codes,
)
from tvau_lightning.metrics.state import RowStateMetric, first_occurrence_mask, video_hash


class _SampleMetric(RowStateMetric):
    """Per-sample rows with an optional sample id (``-1`` = none) and the occurrence id of the row."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_row_state("sample", torch.int64)
        self.add_row_state("occurrence", torch.int64)

    def _sample_rows(self, count: int, sample_ids: Sequence[str] | None) -> dict[str, np.ndarray]:
        if sample_ids is None:
            ids = np.full(count, -1, dtype=np.int64)
        else:
            if isinstance(sample_ids, str) or len(sample_ids) != count:
                raise ValueError(f"sample_ids must hold one id per sample ({count}), got {sample_ids!r}")
            ids = np.array([video_hash(s) for s in sample_ids], dtype=np.int64)
        return {"sample": ids, "occurrence": self.take_occurrences(count)}

    def _kept(self) -> np.ndarray:
        """Bool mask of the rows to count: all rows without an id, the first occurrence of each id."""
        sample, occurrence = self.rows("sample"), self.rows("occurrence")
        keep = sample < 0
        with_id = ~keep
        keep[with_id] = first_occurrence_mask(sample[with_id], occurrence[with_id])
        return keep


class BLEU4(_SampleMetric):
    """Sentence-level BLEU-4 with brevity penalty, best reference per sample, macro-averaged over samples.

    nltk's ``sentence_bleu`` with uniform 4-gram weights and ``SmoothingFunction().method1`` (add-ε on
    n-gram orders without a match, so short partly right answers do not collapse to 0); tokens are the
    lowercased word/punctuation split of :func:`~tvau_lightning.metrics.functional.tokenize`. See
    :func:`~tvau_lightning.metrics.functional.sentence_bleu4`.

    Args:
        field: the dialogue field scored (``target``, ``trajectory`` …); only names the metric
            (:attr:`log_name` ``bleu4_<field>``).

    ``compute()`` returns a float32 scalar tensor (NaN with a warning when no sample was seen).
    """

    def __init__(self, field: str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.field = field
        self.add_row_state("score", torch.float64)

    @property
    def log_name(self) -> str:
        return "bleu4" if self.field is None else f"bleu4_{self.field}"

    def update(
        self,
        hypotheses: Sequence[str],
        references: Sequence[Sequence[str] | str],
        sample_ids: Sequence[str] | None = None,
    ) -> None:
        """Score a batch: ``hypotheses[i]`` against its references ``references[i]`` (a list or one string)."""
        if isinstance(hypotheses, str):
            raise TypeError("hypotheses must be a sequence of strings (one per sample), got one string")
        if len(hypotheses) != len(references):
            raise ValueError(f"BLEU-4: {len(hypotheses)} hypotheses but {len(references)} reference lists")
        scores = np.array([sentence_bleu4(h, r) for h, r in zip(hypotheses, references)], dtype=np.float64)
        self.append_rows(score=scores, **self._sample_rows(len(scores), sample_ids))

    def compute(self) -> torch.Tensor:
        scores = self.rows("score")[self._kept()]
        if scores.size == 0:
            warnings.warn(f"{self.log_name}: no sample was seen; returning NaN", RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        return torch.tensor(float(scores.mean()), dtype=torch.float32)


class YesNoAccuracy(_SampleMetric):
    """Accuracy and balanced accuracy of yes/no judgments; ``compute()`` → ``{"accuracy", "balanced_accuracy"}``.

    Predictions and targets are normalised by :func:`~tvau_lightning.metrics.functional.normalize_yes_no`
    (leading yes/no word, then anomaly phrases, else unknown); an unknown prediction counts as wrong, a
    target that is not yes/no raises ValueError. Balanced accuracy = (TPR + TNR) / 2 with yes = positive
    (the recall of the only class present when the targets have one class). Float32 tensors; NaN with a
    warning when no sample was seen.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_row_state("pred", torch.int64)
        self.add_row_state("target", torch.int64)

    def update(
        self,
        preds: Sequence[str | bool | int],
        targets: Sequence[str | bool | int],
        sample_ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch of free-form answers and their yes/no ground truth."""
        if isinstance(preds, str) or isinstance(targets, str):
            raise TypeError("preds and targets must be sequences of answers (one per sample), got one string")
        if len(preds) != len(targets):
            raise ValueError(f"yes/no accuracy: {len(preds)} predictions but {len(targets)} targets")
        self.append_rows(pred=yes_no_codes(preds), target=yes_no_target_codes(targets),
                         **self._sample_rows(len(preds), sample_ids))

    def compute(self) -> dict[str, torch.Tensor]:
        keep = self._kept()
        pred, target = self.rows("pred")[keep], self.rows("target")[keep]
        if target.size == 0:
            warnings.warn("yes/no accuracy: no sample was seen; returning NaN", RuntimeWarning, stacklevel=2)
            return {"accuracy": torch.tensor(float("nan")), "balanced_accuracy": torch.tensor(float("nan"))}
        scores = yes_no_scores(pred, target)
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in scores.items()}
