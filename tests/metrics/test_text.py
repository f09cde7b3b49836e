"""BLEU-4 (each option vs nltk called directly) and yes/no normalisation and accuracy, functional and metric forms."""

from __future__ import annotations

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from tvau_lightning.metrics import BLEU4, YesNoAccuracy
from tvau_lightning.metrics.functional import (
    bleu4,
    bleu4_from_tokens,
    normalize_yes_no,
    sentence_bleu4,
    tokenize,
    yes_no_accuracy,
)

M1 = SmoothingFunction().method1


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("A Man, in RED, runs to the left-side of 3rd Ave.") == [
        "a", "man", ",", "in", "red", ",", "runs", "to", "the", "left", "-", "side", "of", "3rd", "ave", "."]
    assert tokenize("  ") == []


def test_sentence_bleu_is_nltk_method1_against_the_best_single_reference():
    hyp = "The man in red walks to the left quickly."
    refs = ["A man in red walks to the left.", "The man in red runs quickly to the right."]
    hyp_t = ["the", "man", "in", "red", "walks", "to", "the", "left", "quickly", "."]
    ref_t = [["a", "man", "in", "red", "walks", "to", "the", "left", "."],
             ["the", "man", "in", "red", "runs", "quickly", "to", "the", "right", "."]]
    singles = [sentence_bleu([r], hyp_t, smoothing_function=M1) for r in ref_t]
    assert sentence_bleu4(hyp, refs) == pytest.approx(max(singles), abs=1e-12)
    # best single reference, not nltk's multi-reference pooling
    pooled = sentence_bleu(ref_t, hyp_t, smoothing_function=M1)
    assert max(singles) != pytest.approx(pooled)
    assert sentence_bleu4(hyp, refs[0]) == pytest.approx(singles[0], abs=1e-12)


def test_short_and_empty_hypotheses():
    # 2 tokens: no 3/4-gram matches; method1 keeps the score above 0 and below the unigram precision
    short = sentence_bleu4("man walks", ["a man walks left"])
    expected = sentence_bleu([["a", "man", "walks", "left"]], ["man", "walks"], smoothing_function=M1)
    assert short == pytest.approx(expected, abs=1e-12) and 0 < short < 1
    assert sentence_bleu4("", ["a man"]) == 0.0
    assert sentence_bleu4("a man walks left", ["", "A man walks left"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-empty reference"):
        sentence_bleu4("a man", ["", "  "])


def test_bleu4_macro_averages_samples():
    hyps = ["a person runs to the left", "a car drives away", "nothing"]
    refs = [["a person runs to the left"], ["the car drives away fast", "a car drives away"], "someone falls down"]
    expected = (1.0 + 1.0 + sentence_bleu4("nothing", "someone falls down")) / 3
    assert bleu4(hyps, refs) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu4(["a", "b"], [["a"]])


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_bleu_metric_equals_functional_and_dedupes_sample_ids():
    hyps = ["a person runs to the left", "a car drives away slowly", "a dog"]
    refs = [["a person runs left"], ["a car drives away"], ["a dog barks at a man"]]
    metric = BLEU4(field="target")
    metric.update(hyps[:2], refs[:2], sample_ids=["s0", "s1"])
    metric.update(hyps[2:], refs[2:], sample_ids=["s2"])
    metric.update(hyps[:1], refs[:1], sample_ids=["s0"])  # a padded repeat: counted once
    assert metric.compute().item() == pytest.approx(bleu4(hyps, refs), abs=1e-6)
    assert metric.log_name == "bleu4_target"
    no_ids = BLEU4()
    no_ids.update(hyps[:1], refs[:1])
    no_ids.update(hyps[:1], refs[:1])  # without ids nothing is merged
    no_ids.update(hyps[1:2], refs[1:2])
    assert no_ids.compute().item() == pytest.approx(bleu4([hyps[0], hyps[0], hyps[1]], [refs[0], refs[0], refs[1]]),
                                                    abs=1e-6)
    empty = BLEU4()
    with pytest.warns(RuntimeWarning, match="no sample"):
        assert math.isnan(empty.compute().item())


# Multi-reference samples where the definitions differ: the hypotheses mix n-grams of several references.
MULTI_HYPS = ["a man in red walks quickly to the left .", "the car stops near the gate", "a dog"]
MULTI_REFS = [
    ["A man in red runs to the left.", "Someone walks quickly to the left."],
    ["The car stops at the gate.", "A car stops near the entrance.", "a white car parks"],
    ["a dog barks at a man"],
]


def _nltk_tokens(text: str) -> list[str]:
    """The tokenisation written out by hand for the texts above (lowercase, punctuation split off)."""
    return text.lower().replace(".", " .").split()


def test_multi_reference_sentence_bleu_is_nltk_with_all_references_at_once():
    for hyp, refs in zip(MULTI_HYPS, MULTI_REFS):
        hyp_t, refs_t = _nltk_tokens(hyp), [_nltk_tokens(r) for r in refs]
        pooled = sentence_bleu(refs_t, hyp_t, smoothing_function=M1)
        best = max(sentence_bleu([r], hyp_t, smoothing_function=M1) for r in refs_t)
        assert sentence_bleu4(hyp, refs, reference_mode="multi") == pytest.approx(pooled, abs=1e-12)
        assert sentence_bleu4(hyp, refs, reference_mode="best") == pytest.approx(best, abs=1e-12)
        if len(refs) == 1:
            assert pooled == pytest.approx(best, abs=1e-12)  # one reference: the two modes agree
    # the first sample takes "a man in red" from one reference and "walks quickly" from the other
    first = [_nltk_tokens(r) for r in MULTI_REFS[0]]
    hyp0 = _nltk_tokens(MULTI_HYPS[0])
    assert sentence_bleu4(MULTI_HYPS[0], MULTI_REFS[0], reference_mode="multi") > max(
        sentence_bleu([r], hyp0, smoothing_function=M1) for r in first) + 0.05


def test_bleu4_levels_against_nltk():
    hyps_t = [_nltk_tokens(h) for h in MULTI_HYPS]
    refs_t = [[_nltk_tokens(r) for r in refs] for refs in MULTI_REFS]
    corpus = corpus_bleu(refs_t, hyps_t, smoothing_function=M1)
    sentence_multi = sum(sentence_bleu(r, h, smoothing_function=M1) for h, r in zip(hyps_t, refs_t)) / 3
    sentence_best = sum(max(sentence_bleu([x], h, smoothing_function=M1) for x in r)
                        for h, r in zip(hyps_t, refs_t)) / 3
    assert bleu4(MULTI_HYPS, MULTI_REFS, reference_mode="multi", level="corpus") == pytest.approx(corpus, abs=1e-12)
    assert bleu4(MULTI_HYPS, MULTI_REFS, reference_mode="multi") == pytest.approx(sentence_multi, abs=1e-12)
    assert bleu4(MULTI_HYPS, MULTI_REFS) == pytest.approx(sentence_best, abs=1e-12)  # the default
    # three different numbers: the option matters on these samples
    assert len({round(corpus, 6), round(sentence_multi, 6), round(sentence_best, 6)}) == 3
    assert bleu4_from_tokens(hyps_t, refs_t, reference_mode="multi", level="corpus") == pytest.approx(corpus, abs=1e-12)


def test_bleu_options_are_checked():
    with pytest.raises(ValueError, match="reference_mode='best' .* has no corpus level"):
        bleu4(["a"], [["a"]], reference_mode="best", level="corpus")
    with pytest.raises(ValueError, match="reference_mode must be one of \\['best', 'multi'\\], got 'max'"):
        sentence_bleu4("a", ["a"], reference_mode="max")
    with pytest.raises(ValueError, match="level must be one of \\['sentence', 'corpus'\\], got 'system'"):
        BLEU4(reference_mode="multi", level="system")
    with pytest.raises(ValueError, match="has no corpus level"):
        BLEU4(level="corpus")
    with pytest.raises(ValueError, match="non-empty reference"):
        bleu4_from_tokens([["a"]], [[[]]])


@pytest.mark.parametrize(("reference_mode", "level"), [("best", "sentence"), ("multi", "sentence"), ("multi", "corpus")])
def test_bleu_metric_options_equal_functional_and_nltk(reference_mode, level):
    metric = BLEU4(field="target", reference_mode=reference_mode, level=level)
    metric.update(MULTI_HYPS[:2], MULTI_REFS[:2], sample_ids=["s0", "s1"])
    metric.update(MULTI_HYPS[:1], MULTI_REFS[:1], sample_ids=["s0"])  # a padded repeat: counted once
    metric.update([MULTI_HYPS[2], ""], [MULTI_REFS[2], "a cat"], sample_ids=["s2", "s3"])  # an empty answer too
    hyps, refs = [*MULTI_HYPS, ""], [*MULTI_REFS, ["a cat"]]
    expected = bleu4(hyps, refs, reference_mode=reference_mode, level=level)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)
    if level == "corpus":  # nltk's corpus_bleu on the same samples, written out here
        hyps_t = [_nltk_tokens(h) for h in hyps]
        refs_t = [[_nltk_tokens(r) for r in sample] for sample in refs]
        assert metric.compute().item() == pytest.approx(corpus_bleu(refs_t, hyps_t, smoothing_function=M1), abs=1e-6)
    suffix = {"best": "", "multi": "_multi"}[reference_mode] + {"sentence": "", "corpus": "_corpus"}[level]
    assert metric.log_name == f"bleu4_target{suffix}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes, there is a person fighting.", "yes"),
        ("Yes.", "yes"),
        ("YES", "yes"),
        ("yeah, someone falls", "yes"),
        ("Answer: yes", "yes"),
        ("No.", "no"),
        ("no", "no"),
        ("No anomaly is present", "no"),
        ("No, there is an anomaly", "no"),  # the leading word wins
        ("There is an anomaly: a man jumps the fence.", "yes"),
        ("An abnormal event occurs in the middle.", "yes"),
        ("The person behaves abnormally.", "yes"),
        ("Something unusual happens", "yes"),
        ("There is no anomaly in this video.", "no"),
        ("There are no abnormal events.", "no"),
        ("Nothing abnormal happens.", "no"),
        ("The clip does not contain any anomaly.", "no"),
        ("The video doesn\u2019t show anything anomalous", "no"),
        ("It is not anomalous", "no"),
        ("Everything looks normal.", "no"),
        ("Normal.", "no"),
        ("The scene is without any abnormality", "no"),
        ("unclear", "unknown"),
        ("I am not sure whether there is an anomaly", "unknown"),
        ("It is hard to say.", "unknown"),
        ("Maybe an anomaly", "unknown"),
        ("A man walks to the left.", "unknown"),
        ("", "unknown"),
        ("Noted, a man walks", "unknown"),  # 'noted' is not 'no'
        (True, "yes"),
        (0, "no"),
        (2, "unknown"),
    ],
)
def test_yes_no_normalisation(answer, expected):
    assert normalize_yes_no(answer) == expected


def test_yes_no_accuracy_by_hand():
    preds = ["Yes.", "no", "unclear", "There is an anomaly", "No anomaly", "Yes"]
    targets = ["yes", "yes", "no", "no", "no", "yes"]
    # yes-targets: 0 ok, 1 wrong, 5 ok -> TPR 2/3; no-targets: 2 unknown (wrong), 3 wrong, 4 ok -> TNR 1/3
    out = yes_no_accuracy(preds, targets)
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # one class only: the recall of that class (scikit-learn's convention)
    assert yes_no_accuracy(["yes", "no"], [True, True]) == {"accuracy": 0.5, "balanced_accuracy": 0.5}
    with pytest.raises(ValueError, match="'maybe' .* is neither yes nor no"):
        yes_no_accuracy(["yes"], ["maybe"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        yes_no_accuracy(["yes", "no"], ["yes"])


def test_yes_no_metric_equals_functional():
    preds = ["Yes.", "no", "unclear", "There is an anomaly", "No anomaly", "Yes"]
    targets = ["yes", "yes", "no", "no", "no", "yes"]
    metric = YesNoAccuracy()
    metric.update(preds[:4], targets[:4], sample_ids=[f"s{i}" for i in range(4)])
    metric.update(preds[4:], targets[4:], sample_ids=["s4", "s5"])
    metric.update(preds[:1], targets[:1], sample_ids=["s0"])  # repeat counted once
    out = metric.compute()
    expected = yes_no_accuracy(preds, targets)
    assert {k: pytest.approx(v.item(), abs=1e-6) for k, v in out.items()} == expected
    with pytest.raises(ValueError, match="one id per sample"):
        metric.update(["yes"], ["yes"], sample_ids=["a", "b"])
