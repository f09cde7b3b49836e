"""The frame ROC curve against scikit-learn and the project's AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from tvau_lightning.evaluation import roc_curve
from tvau_lightning.metrics.functional import micro_auroc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn_with_ties_and_unbounded_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(400) < 0.3
    # rounded (many ties) logit-like scores far outside [0, 1]: a sigmoid would merge the large ones
    scores = np.round(rng.normal(0, 20, 400) + 15 * labels, 0)
    curve = roc_curve(scores, labels)
    fpr, tpr, thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds[1:], thresholds[1:])
    assert curve.thresholds[0] == np.inf
    assert curve.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert curve.auc == pytest.approx(micro_auroc(scores, labels), abs=1e-12)


def test_roc_curve_rejects_single_class_and_bad_scores():
    with pytest.raises(ValueError, match="undefined"):
        roc_curve([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        roc_curve([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        roc_curve([0.1, 0.2], [0, 1, 1])
