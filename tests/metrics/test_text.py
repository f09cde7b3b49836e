"""BLEU-4 (vs nltk called directly) and yes/no normalisation and accuracy, functional and metric forms."""

from __future__ import annotations

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from tvau_lightning.metrics import BLEU4, YesNoAccuracy
from tvau_lightning.metrics.functional import (
    bleu4,
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
