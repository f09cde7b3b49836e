"""Text metrics of the anomaly dialogue as torchmetrics (SPEC §6): BLEU-4 per field, yes/no accuracy.

Strings cannot be synced across processes, so each update stores numbers: each sample's tokens as int63
hashes for BLEU-4 (scored at compute, so corpus BLEU sees all samples), one (prediction, target) code pair
per sample for yes/no. Samples may carry ids (``sample_ids``); at compute a repeated id
(``DistributedSampler`` padding) counts once, its first occurrence. Samples without ids are never merged.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from tvau_lightning.metrics.functional.text import (
    BleuLevel,
    ReferenceMode,
    bleu4_from_tokens,
    check_bleu_options,
    reference_tokens,
    tokenize,
    yes_no_codes,
    yes_no_scores,
    yes_no_target_codes,
)
from tvau_lightning.metrics.state import RowStateMetric, first_occurrence_mask, video_hash

#: token → int63 id for the token state (blake2b, like video ids; cached: answers reuse a small vocabulary)
_token_hash = functools.lru_cache(maxsize=1 << 16)(video_hash)


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
    """BLEU-4 of one dialogue field (nltk, uniform 4-gram weights, brevity penalty, ``method1`` smoothing).

    **Default: the paper's definition** (``reference_mode="best"``, ``level="sentence"``; paper §4
    "Evaluation Metrics for RAE", SPEC §6): each sample's sentence BLEU-4 against each of its references
    alone, the best kept, averaged over samples. ``reference_mode="multi"`` is BLEU's standard
    multi-reference form (nltk ``sentence_bleu`` given all references at once); ``level="corpus"`` (with
    ``"multi"``) is nltk's ``corpus_bleu`` over all samples, as machine translation reports BLEU. The two
    reference modes agree on samples with one reference. Tokens are the lowercased word/punctuation split of
    :func:`~tvau_lightning.metrics.functional.text.tokenize`; see
    :func:`~tvau_lightning.metrics.functional.text.bleu4`.

    Args:
        field: the dialogue field scored (``target``, ``trajectory`` …); only names the metric.
        reference_mode: ``"best"`` (best single reference) or ``"multi"`` (all references at once).
        level: ``"sentence"`` (macro average of sentence scores) or ``"corpus"`` (needs ``"multi"``).

    :attr:`log_name` is ``bleu4_<field>``, with ``_multi`` and ``_corpus`` appended for non-default options.
    The state is each sample's tokens as int63 hashes (strings cannot sync across processes); ``compute()``
    scores the kept samples at once and returns a float32 scalar tensor (NaN with a warning when no sample
    was seen).
    """

    def __init__(
        self,
        field: str | None = None,
        reference_mode: ReferenceMode = "best",
        level: BleuLevel = "sentence",
        **kwargs: object,
    ) -> None:
        check_bleu_options(reference_mode, level)
        super().__init__(**kwargs)
        self.field, self.reference_mode, self.level = field, reference_mode, level
        self.add_row_state("token", torch.int64)
        self.add_row_state("token_occurrence", torch.int64)  # the occurrence id of the token's sample
        self.add_row_state("token_sequence", torch.int64)  # -1 = the hypothesis, k >= 0 = the k-th reference

    @property
    def log_name(self) -> str:
        name = "bleu4" if self.field is None else f"bleu4_{self.field}"
        if self.reference_mode != "best":
            name += f"_{self.reference_mode}"
        return name if self.level == "sentence" else f"{name}_{self.level}"

    def update(
        self,
        hypotheses: Sequence[str],
        references: Sequence[Sequence[str] | str],
        sample_ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch: ``hypotheses[i]`` with its references ``references[i]`` (a list or one string)."""
        if isinstance(hypotheses, str):
            raise TypeError("hypotheses must be a sequence of strings (one per sample), got one string")
        if len(hypotheses) != len(references):
            raise ValueError(f"BLEU-4: {len(hypotheses)} hypotheses but {len(references)} reference lists")
        samples = [[tokenize(h), *reference_tokens(r)] for h, r in zip(hypotheses, references)]
        rows = self._sample_rows(len(samples), sample_ids)
        token, owner, sequence = [], [], []
        for occurrence, sequences in zip(rows["occurrence"].tolist(), samples):
            for k, tokens in enumerate(sequences, start=-1):
                token += [_token_hash(t) for t in tokens]
                owner += [occurrence] * len(tokens)
                sequence += [k] * len(tokens)
        self.append_rows(**rows)
        self.append_rows(token=np.array(token, dtype=np.int64), token_occurrence=np.array(owner, dtype=np.int64),
                         token_sequence=np.array(sequence, dtype=np.int64))

    def compute(self) -> torch.Tensor:
        occurrences = self.rows("occurrence")[self._kept()]
        if occurrences.size == 0:
            warnings.warn(f"{self.log_name}: no sample was seen; returning NaN", RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        token, owner, sequence = self.rows("token"), self.rows("token_occurrence"), self.rows("token_sequence")
        mine = np.isin(owner, occurrences)
        token, owner, sequence = token[mine], owner[mine], sequence[mine]
        # group by (sample, sequence); both sorts are stable, so each sequence keeps its token order
        order = np.argsort(sequence, kind="stable")
        order = order[np.argsort(owner[order], kind="stable")]
        token, owner, sequence = token[order], owner[order], sequence[order]
        starts = np.flatnonzero(np.r_[True, (owner[1:] != owner[:-1]) | (sequence[1:] != sequence[:-1])])
        hypotheses: dict[int, list[int]] = {}
        references: dict[int, list[list[int]]] = {}
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(token)]):
            tokens, sample = token[start:end].tolist(), int(owner[start])
            if sequence[start] < 0:
                hypotheses[sample] = tokens
            else:
                references.setdefault(sample, []).append(tokens)
        samples = occurrences.tolist()
        score = bleu4_from_tokens([hypotheses.get(o, []) for o in samples], [references[o] for o in samples],
                                  reference_mode=self.reference_mode, level=self.level)
        return torch.tensor(score, dtype=torch.float32)


class YesNoAccuracy(_SampleMetric):
    """Accuracy and balanced accuracy of yes/no judgments; ``compute()`` → ``{"accuracy", "balanced_accuracy"}``.

    Predictions and targets are normalised by :func:`~tvau_lightning.metrics.functional.text.normalize_yes_no`
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
