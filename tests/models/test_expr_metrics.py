"""The nine multi-label metrics of paper 004 against scikit-learn, and hand cases for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from auflow.models.expr_metrics import (
    MULTILABEL_METRICS,
    accuracy,
    affwild2_score,
    average_precision,
    coverage,
    f1_scores,
    hamming_loss,
    macro_auc,
    macro_f1,
    micro_auc,
    micro_f1,
    multilabel_metrics,
    one_error,
    ranking_loss,
)

skm = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module", params=[0, 1, 2])
def data(request):
    """Random labels with correlated continuous scores (no ties); every class has both values."""
    rng = np.random.default_rng(request.param)
    y = (rng.random((200, 6)) < rng.uniform(0.15, 0.5, 6)).astype(int)
    y[0], y[1] = 1, 0  # a sample with every label and one with none: the degenerate conventions
    y[2:8] = np.eye(6, dtype=int)  # every class positive somewhere …
    scores = np.clip(0.35 * y + rng.normal(0.35, 0.25, y.shape), 0.0, 1.0)
    scores += rng.uniform(0, 1e-7, y.shape)  # … and no ties even after clipping
    return y, scores


def test_hamming_loss_matches_sklearn(data):
    y, s = data
    assert hamming_loss(y, s) == pytest.approx(skm.hamming_loss(y, s > 0.5), abs=1e-6)


def test_coverage_matches_sklearn(data):
    y, s = data
    assert coverage(y, s) == pytest.approx(skm.coverage_error(y, s), abs=1e-6)


def test_ranking_loss_matches_sklearn_without_ties(data):
    y, s = data
    assert ranking_loss(y, s) == pytest.approx(skm.label_ranking_loss(y, s), abs=1e-6)


def test_average_precision_matches_sklearn(data):
    y, s = data
    assert average_precision(y, s) == pytest.approx(skm.label_ranking_average_precision_score(y, s), abs=1e-6)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_f1_matches_sklearn(data, average):
    y, s = data
    fn = micro_f1 if average == "micro" else macro_f1
    assert fn(y, s) == pytest.approx(skm.f1_score(y, s > 0.5, average=average, zero_division=0.0), abs=1e-6)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_auc_matches_sklearn(data, average):
    y, s = data
    fn = micro_auc if average == "micro" else macro_auc
    assert fn(y, s) == pytest.approx(skm.roc_auc_score(y, s, average=average), abs=1e-6)


def test_auc_counts_ties_as_half_like_sklearn():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.5, 0.5], [0.5, 0.2], [0.9, 0.2], [0.1, 0.2]])
    for fn, avg in ((micro_auc, "micro"), (macro_auc, "macro")):
        assert fn(y, s) == pytest.approx(skm.roc_auc_score(y, s, average=avg), abs=1e-6)


def test_one_error_hand_cases():
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]])
    s = np.array(
        [
            [0.9, 0.1, 0.2],  # top label 0 is true → 0
            [0.8, 0.7, 0.1],  # top label 0 is false → 1
            [0.3, 0.3, 0.3],  # a three-way tie goes to label 0 (argmax), false → 1
            [0.1, 0.6, 0.2],  # top label 1 is true → 0
        ]
    )
    assert one_error(y, s) == pytest.approx(0.5)


def test_ranking_loss_hand_case_with_ties_uses_the_papers_strict_order():
    y = np.array([[1, 0, 0, 1]])
    s = np.array([[0.4, 0.4, 0.9, 0.1]])
    # true {0, 3}, false {1, 2}; pairs with s_true < s_false: (0,2), (3,1), (3,2) = 3 of 4;
    # (0,1) is a tie: not counted by Eq. (11) (scikit-learn would count it: 4/4)
    assert ranking_loss(y, s) == pytest.approx(3 / 4)
    assert skm.label_ranking_loss(y, s) == pytest.approx(1.0)


def test_coverage_and_average_precision_hand_case():
    y = np.array([[0, 1, 0, 1], [1, 0, 0, 0]])
    s = np.array([[0.9, 0.8, 0.2, 0.5], [0.1, 0.6, 0.3, 0.2]])
    # sample 0: ranks 1:2, 3:3 → coverage 3; AP = (1/2 + 2/3) / 2
    # sample 1: label 0 ranked 4th → coverage 4; AP = 1/4
    assert coverage(y, s) == pytest.approx((3 + 4) / 2)
    assert average_precision(y, s) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 4) / 2)


def test_hamming_and_f1_hand_case_threshold_is_strictly_greater():
    y = np.array([[1, 0], [1, 1], [0, 0]])
    s = np.array([[0.5, 0.2], [0.9, 0.7], [0.6, 0.1]])  # 0.5 is not > 0.5: predicted absent
    # predictions [[0,0],[1,1],[1,0]]: wrong (0,0) and (2,0) → 2/6
    assert hamming_loss(y, s) == pytest.approx(2 / 6)
    # class 0: tp 1, fp 1, fn 1 → 2/4; class 1: tp 1 → 1
    np.testing.assert_allclose(f1_scores(y, s), [0.5, 1.0])
    assert micro_f1(y, s) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_degenerate_classes():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.9, 0.1], [0.2, 0.3], [0.7, 0.2]])
    # class 1 has no positives and no predictions: F1 = zero_division; AUC undefined → left out
    np.testing.assert_allclose(f1_scores(y, s), [1.0, 0.0])
    assert f1_scores(y, s, zero_division=1.0)[1] == 1.0
    assert macro_auc(y, s) == pytest.approx(1.0)
    assert np.isnan(macro_auc(np.zeros((3, 2), int), s))


def test_multilabel_metrics_has_all_nine_in_the_papers_order(data):
    y, s = data
    out = multilabel_metrics(y, s)
    assert list(out) == ["hamming_loss", "coverage", "one_error", "ranking_loss", "average_precision",
                         "micro_f1", "macro_f1", "micro_auc", "macro_auc"]
    assert out["coverage"] == coverage(y, s) and out["macro_f1"] == macro_f1(y, s)
    assert [lower for _, lower in MULTILABEL_METRICS.values()] == [True] * 4 + [False] * 5
    perfect = multilabel_metrics(y, y * 0.8 + 0.1)
    assert perfect["hamming_loss"] == 0 and perfect["ranking_loss"] == 0 and perfect["average_precision"] == 1
    assert perfect["macro_f1"] == 1 and perfect["micro_auc"] == 1


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="must both be"):
        hamming_loss(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        coverage(np.full((2, 2), 2), np.zeros((2, 2)))


def test_accuracy_and_affwild2_score():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    assert accuracy(y, p) == pytest.approx(0.75)
    f1 = skm.f1_score(y, p.argmax(1), average="macro")
    assert affwild2_score(y, p) == pytest.approx(0.33 * 0.75 + 0.67 * f1, abs=1e-6)  # Eq. (10) of paper 003
