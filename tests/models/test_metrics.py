"""AU metrics against scikit-learn, to 1e-9, and the threshold handling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from auflow.models.metrics import accuracy_per_au, au_metrics, binarize, f1_per_au, tune_thresholds

NAMES = tuple(f"AU{i:02d}" for i in (1, 2, 4, 6, 12, 25))


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    y = (rng.random((500, 6)) < np.array([0.1, 0.3, 0.5, 0.7, 0.05, 0.9])).astype(int)
    probs = np.clip(0.6 * y + rng.normal(0.2, 0.25, y.shape), 0, 1)
    return y, probs


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
def test_per_au_f1_and_accuracy_match_sklearn(data, zero_division):
    y, probs = data
    pred = (probs >= 0.5).astype(int)
    pred[:, 4] = 0  # an AU never predicted: precision undefined
    y = y.copy()
    y[:, 5], pred[:, 5] = 0, 0  # an AU never present nor predicted: F1 undefined
    ours = f1_per_au(y, pred, zero_division)
    ref = f1_score(y, pred, average=None, zero_division=zero_division)
    np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=0)
    acc = accuracy_per_au(y, pred)
    np.testing.assert_allclose(acc, [accuracy_score(y[:, i], pred[:, i]) for i in range(6)], atol=1e-9, rtol=0)
    assert ours[5] == zero_division


def test_au_metrics_means_precision_recall_match_sklearn(data):
    y, probs = data
    m = au_metrics(y, probs, NAMES, threshold=0.5)
    pred = (probs >= 0.5).astype(int)
    assert abs(m.mean_f1 - f1_score(y, pred, average="macro", zero_division=0)) < 1e-9
    assert abs(m.mean_accuracy - np.mean([accuracy_score(y[:, i], pred[:, i]) for i in range(6)])) < 1e-9
    np.testing.assert_allclose(m.precision, precision_score(y, pred, average=None, zero_division=0), atol=1e-9)
    np.testing.assert_allclose(m.recall, recall_score(y, pred, average=None, zero_division=0), atol=1e-9)
    assert m.support == tuple(int(v) for v in y.sum(0))
    assert m.samples == 500 and m.threshold == (0.5,) * 6
    d = m.to_dict()
    assert d["per_au"]["AU04"]["f1"] == m.f1[2] and d["mean_f1"] == m.mean_f1
    assert m.f1_of(["AU01", "AU04"]) == pytest.approx((m.f1[0] + m.f1[2]) / 2)


def test_per_au_thresholds_as_list_and_mapping(data):
    y, probs = data
    thr = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    a = au_metrics(y, probs, NAMES, threshold=thr)
    b = au_metrics(y, probs, NAMES, threshold=dict(zip(NAMES, thr)))
    assert a == b
    pred = (probs >= np.array(thr)).astype(int)
    np.testing.assert_allclose(a.f1, f1_score(y, pred, average=None, zero_division=0), atol=1e-9)
    assert a.f1 != au_metrics(y, probs, NAMES).f1  # the thresholds mattered


def test_threshold_is_inclusive_and_validated():
    p = np.array([[0.5, 0.49]])
    np.testing.assert_array_equal(binarize(p, 0.5), [[1, 0]])
    with pytest.raises(ValueError, match="3 thresholds for 2 AUs"):
        binarize(p, [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="must agree"):
        au_metrics(np.zeros((1, 2)), p, ("AU01",))


def test_tune_thresholds_finds_the_separating_threshold():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (400, 2))
    probs = np.where(y == 1, rng.uniform(0.72, 1.0, y.shape), rng.uniform(0.0, 0.68, y.shape))
    t = tune_thresholds(y, probs)
    assert au_metrics(y, probs, ("AU01", "AU02"), t).mean_f1 == 1.0
    assert au_metrics(y, probs, ("AU01", "AU02"), 0.5).mean_f1 < 1.0
    assert np.all((t > 0.68) & (t <= 0.72))
