"""Text metrics of the anomaly dialogue (SPEC §6): tokenisation, BLEU-4, yes/no normalisation and accuracy.

The functional form of :mod:`tvau_lightning.metrics.text`: strings in, Python floats out. BLEU-4 is nltk's
(``sentence_bleu`` / ``corpus_bleu``); what "several references" and "the score of a set of samples" mean is
chosen with ``reference_mode`` and ``level`` (:data:`ReferenceMode`, :data:`BleuLevel`). ``docs/metrics.md``
summarises the conventions.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Literal, get_args

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

__all__ = [
    "BleuLevel",
    "ReferenceMode",
    "bleu4",
    "bleu4_from_tokens",
    "check_bleu_options",
    "normalize_yes_no",
    "reference_tokens",
    "sentence_bleu4",
    "tokenize",
    "yes_no_accuracy",
    "yes_no_codes",
    "yes_no_scores",
    "yes_no_target_codes",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")
#: nltk's add-epsilon smoothing (Chen & Cherry 2014, method 1): an n-gram order with no match gets
#: numerator 0.1 instead of 0, so a short, partly right answer is not scored exactly 0, and scores with
#: matches at every order are unchanged.
_SMOOTHING = SmoothingFunction().method1

#: How a sample's several references count. ``"best"``: the hypothesis is scored against each reference
#: alone and the best score is kept (the paper's "best-matching reference"; SPEC §6). ``"multi"``: all
#: references at once, BLEU's own multi-reference definition (Papineni et al. 2002, nltk): n-gram counts
#: clipped by their largest count in any one reference, brevity penalty against the reference length closest
#: to the hypothesis length.
ReferenceMode = Literal["best", "multi"]
#: How samples combine. ``"sentence"``: sentence BLEU-4 per sample, averaged over samples (macro; the
#: paper's). ``"corpus"``: one BLEU-4 from the n-gram counts and lengths summed over all samples (nltk
#: ``corpus_bleu``, "system-level" BLEU as machine translation reports it); needs ``reference_mode="multi"``.
BleuLevel = Literal["sentence", "corpus"]


def tokenize(text: str) -> list[str]:
    """Lowercase, then split into runs of word characters and single punctuation marks (no nltk data)."""
    return _TOKEN.findall(str(text).lower())


def check_bleu_options(reference_mode: str, level: str) -> None:
    """Raise ValueError for an unknown ``reference_mode`` or ``level``, or the undefined ``best`` + ``corpus``."""
    if reference_mode not in get_args(ReferenceMode):
        raise ValueError(f"BLEU-4 reference_mode must be one of {list(get_args(ReferenceMode))}, "
                         f"got {reference_mode!r}")
    if level not in get_args(BleuLevel):
        raise ValueError(f"BLEU-4 level must be one of {list(get_args(BleuLevel))}, got {level!r}")
    if reference_mode == "best" and level == "corpus":
        raise ValueError("BLEU-4 with reference_mode='best' picks each sample's reference by its sentence score, "
                         "so it has no corpus level; use level='sentence', or reference_mode='multi' with "
                         "level='corpus' for nltk's corpus_bleu")


def _non_empty(references: Sequence[Sequence[Hashable]], what: object) -> list[list[Hashable]]:
    kept = [list(r) for r in references if len(r) > 0]
    if not kept:
        raise ValueError(f"BLEU-4 needs at least one non-empty reference, got {what!r}")
    return kept


def reference_tokens(references: Sequence[str] | str) -> list[list[str]]:
    """Tokens of each non-empty reference of one sample (one string is one reference).

    Raises:
        ValueError: no non-empty reference.
    """
    refs = [references] if isinstance(references, str) else list(references)
    return _non_empty([tokenize(r) for r in refs], refs)


def _sentence_score(hypothesis: list[Hashable], references: list[list[Hashable]], reference_mode: str) -> float:
    if not hypothesis:
        return 0.0
    if reference_mode == "best":
        return max(float(sentence_bleu([r], hypothesis, smoothing_function=_SMOOTHING)) for r in references)
    return float(sentence_bleu(references, hypothesis, smoothing_function=_SMOOTHING))


def bleu4_from_tokens(
    hypotheses: Sequence[Sequence[Hashable]],
    references_list: Sequence[Sequence[Sequence[Hashable]]],
    *,
    reference_mode: ReferenceMode = "best",
    level: BleuLevel = "sentence",
) -> float:
    """BLEU-4 of tokenised samples: the core of :func:`bleu4` and of the ``BLEU4`` metric.

    Uniform 4-gram weights, brevity penalty, nltk ``method1`` smoothing; tokens may be any hashable values
    (the metric class stores them as integer hashes). An empty hypothesis scores 0 at sentence level; empty
    references are ignored.

    Args:
        hypotheses: one token sequence per sample.
        references_list: per sample, its reference token sequences.
        reference_mode: ``"best"`` or ``"multi"`` (:data:`ReferenceMode`).
        level: ``"sentence"`` or ``"corpus"`` (:data:`BleuLevel`).
    Raises:
        ValueError: no sample, mismatched lengths, a sample without a non-empty reference, bad options.
    """
    check_bleu_options(reference_mode, level)
    if len(hypotheses) != len(references_list):
        raise ValueError(f"BLEU-4: {len(hypotheses)} hypotheses but {len(references_list)} reference lists")
    if not hypotheses:
        raise ValueError("BLEU-4 needs at least one sample")
    hyps = [list(h) for h in hypotheses]
    refs = [_non_empty(r, r) for r in references_list]
    if level == "corpus":
        return float(corpus_bleu(refs, hyps, smoothing_function=_SMOOTHING))
    return float(np.mean([_sentence_score(h, r, reference_mode) for h, r in zip(hyps, refs)]))


def sentence_bleu4(hypothesis: str, references: Sequence[str] | str, *, reference_mode: ReferenceMode = "best") -> float:
    """Sentence BLEU-4 of one answer (uniform weights, brevity penalty, nltk ``method1`` smoothing).

    ``reference_mode="best"`` (default, the paper's): each reference is scored on its own and the maximum is
    returned; ``"multi"``: nltk's ``sentence_bleu`` with all references at once. Empty references are ignored.

    Raises:
        ValueError: no non-empty reference, or an unknown ``reference_mode``.
    """
    check_bleu_options(reference_mode, "sentence")
    return _sentence_score(tokenize(hypothesis), reference_tokens(references), reference_mode)


def bleu4(
    hypotheses: Sequence[str],
    references_list: Sequence[Sequence[str] | str],
    *,
    reference_mode: ReferenceMode = "best",
    level: BleuLevel = "sentence",
) -> float:
    """BLEU-4 of a set of answers; one reference list (or one string) per hypothesis.

    The default (``reference_mode="best"``, ``level="sentence"``) is the paper's: the macro average over
    samples of :func:`sentence_bleu4` with the best single reference. ``reference_mode="multi"`` scores each
    hypothesis against all its references at once (nltk ``sentence_bleu``); with ``level="corpus"`` the
    result is nltk's ``corpus_bleu`` over all samples. See :data:`ReferenceMode` and :data:`BleuLevel`.
    """
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a sequence of strings, got one string")
    check_bleu_options(reference_mode, level)
    if len(hypotheses) != len(references_list):
        raise ValueError(f"BLEU-4: {len(hypotheses)} hypotheses but {len(references_list)} reference lists")
    return bleu4_from_tokens([tokenize(h) for h in hypotheses], [reference_tokens(r) for r in references_list],
                             reference_mode=reference_mode, level=level)


YesNo = Literal["yes", "no", "unknown"]

_YES_WORDS = {"yes", "yeah", "yep", "yup", "affirmative"}
_NO_WORDS = {"no", "nope", "negative"}
_PREFIX = re.compile(r"^\s*(?:answer|a)\s*:\s*")
_ANOMALY = r"(?:anomal\w*|abnormal\w*|unusual\w*|suspicious\w*|irregular\w*)"
_NEGATIVE_PHRASES = [
    re.compile(rf"\bno\s+(?:\w+\s+){{0,2}}?{_ANOMALY}"),  # no anomaly, no clear abnormal event
    re.compile(rf"\bnothing\s+(?:\w+\s+){{0,1}}?{_ANOMALY}"),  # nothing abnormal, nothing really unusual
    re.compile(rf"(?:\bnot\b|n't\b|\bnever\b)(?:\s+\w+){{0,4}}?\s+{_ANOMALY}"),  # is not anomalous, doesn't contain any anomaly
    re.compile(rf"\bwithout\s+(?:\w+\s+){{0,1}}?{_ANOMALY}"),
    re.compile(r"\b(?:is|are|looks|look|appears|appear|seems|seem)\s+(?:\w+\s+){0,1}?normal\b"),  # everything is normal
    re.compile(r"^\W*normal\b"),  # "Normal."
]
_HEDGES = re.compile(r"\b(?:unclear|unsure|uncertain|not sure|cannot (?:tell|determine|say)|can't (?:tell|determine|say)"
                     r"|hard to (?:tell|say)|impossible to (?:tell|say)|maybe|perhaps|possibly)\b")
_POSITIVE = re.compile(rf"\b{_ANOMALY}")


def normalize_yes_no(answer: str | bool | int) -> YesNo:
    """Map a free-form answer to ``yes`` / ``no`` / ``unknown``.

    Rules, first match wins (text lowercased, curly apostrophes straightened, a leading ``answer:`` dropped):

    1. the first word is yes/yeah/yep/yup/affirmative → yes; no/nope/negative → no
       ("Yes, there is…", "No.", "No anomaly is present");
    2. a hedge → unknown ("unclear", "not sure", "cannot tell", "hard to say", "maybe", "possibly");
    3. a negated anomaly phrase or a plain "normal" → no ("there is no anomaly", "nothing abnormal happens",
       "is not anomalous", "without any anomaly", "everything looks normal", "Normal.");
    4. any remaining mention of an anomaly (anomal*/abnormal*/unusual*/suspicious*/irregular*) → yes
       ("There is an anomaly", "A person behaves abnormally");
    5. otherwise unknown. Booleans map to yes/no; the integers 1/0 too.
    """
    if isinstance(answer, (bool, np.bool_)):
        return "yes" if answer else "no"
    if isinstance(answer, (int, np.integer)):
        if answer in (0, 1):
            return "yes" if answer == 1 else "no"
        return "unknown"
    text = _PREFIX.sub("", str(answer).lower().replace("\u2019", "'").replace("\u2018", "'"))
    words = re.findall(r"[a-z']+", text)
    if words:
        if words[0] in _YES_WORDS:
            return "yes"
        if words[0] in _NO_WORDS:
            return "no"
    if _HEDGES.search(text):
        return "unknown"
    if any(p.search(text) for p in _NEGATIVE_PHRASES):
        return "no"
    if _POSITIVE.search(text):
        return "yes"
    return "unknown"


_CODE = {"yes": 1, "no": 0, "unknown": -1}


def yes_no_codes(answers: Sequence[str | bool | int]) -> np.ndarray:
    """``(n,)`` int64 codes of :func:`normalize_yes_no`: 1 yes, 0 no, -1 unknown."""
    return np.array([_CODE[normalize_yes_no(a)] for a in answers], dtype=np.int64)


def yes_no_target_codes(targets: Sequence[str | bool | int]) -> np.ndarray:
    """Codes of ground-truth answers, which must normalise to yes or no (ValueError names the bad one)."""
    codes = yes_no_codes(targets)
    bad = np.nonzero(codes < 0)[0]
    if len(bad):
        raise ValueError(f"yes/no target {targets[int(bad[0])]!r} (sample {int(bad[0])}) is neither yes nor no; "
                         "ground-truth answers must start with yes/no or state whether there is an anomaly")
    return codes


def yes_no_scores(pred_codes: np.ndarray, target_codes: np.ndarray) -> dict[str, float]:
    """Accuracy and balanced accuracy of code arrays (unknown predictions are wrong).

    Balanced accuracy = mean recall over the classes present in the targets, i.e. (TPR + TNR) / 2 with
    yes = positive when both occur (scikit-learn's convention when one class is absent).
    """
    if len(target_codes) == 0:
        raise ValueError("yes/no accuracy needs at least one sample")
    correct = pred_codes == target_codes
    recalls = [float(correct[target_codes == c].mean()) for c in (1, 0) if (target_codes == c).any()]
    return {"accuracy": float(correct.mean()), "balanced_accuracy": float(np.mean(recalls))}


def yes_no_accuracy(preds: Sequence[str | bool | int], targets: Sequence[str | bool | int]) -> dict[str, float]:
    """``{"accuracy", "balanced_accuracy"}`` of free-form predictions against yes/no targets.

    Both are normalised with :func:`normalize_yes_no`; an ``unknown`` prediction counts as wrong, a target
    that is not yes/no raises ValueError.
    """
    if isinstance(preds, str) or isinstance(targets, str):
        raise TypeError("preds and targets must be sequences of answers, got a single string")
    if len(preds) != len(targets):
        raise ValueError(f"yes/no accuracy: {len(preds)} predictions but {len(targets)} targets")
    return yes_no_scores(yes_no_codes(preds), yes_no_target_codes(targets))
