"""Metrics of the expression papers: the nine multi-label metrics of SVML-RGCN (paper 004, Sec. 4.1)
and the single-label scores of ARPGNet (paper 003, Sec. 4.1).

Inputs are numpy arrays: ``y_true`` (N, C) of 0/1 and ``scores`` (N, C) of confidences (sigmoid
probabilities); a label is predicted present when its score is greater than ``threshold`` (0.5 in
paper 004). Lower is better for Hamming loss, Coverage, One-Error and Ranking Loss; higher for the
rest. Where scikit-learn has the metric, the value here equals scikit-learn's (the tests check it);
conventions for degenerate samples and classes follow scikit-learn and are stated per function.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "MULTILABEL_METRICS",
    "accuracy",
    "affwild2_score",
    "average_precision",
    "coverage",
    "f1_scores",
    "hamming_loss",
    "macro_auc",
    "macro_f1",
    "micro_auc",
    "micro_f1",
    "multilabel_metrics",
    "one_error",
    "ranking_loss",
]


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must both be (N, C); got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    return y.astype(bool), s


def _predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    return scores > threshold  # paper 004: "predicted as true if the confidence scores are greater than 0.5"


def hamming_loss(y_true, scores, threshold: float = 0.5) -> float:
    """Eq. (8): the fraction of the N·C label decisions that are wrong."""
    y, s = _check(y_true, scores)
    return float(np.mean(y != _predict(s, threshold)))


def coverage(y_true, scores) -> float:
    """Eq. (9): mean over samples of max_{c true} |{k : s_k ≥ s_c}| (ranks count ties, from 1).

    A sample without true labels contributes 0 (scikit-learn's ``coverage_error``).
    """
    y, s = _check(y_true, scores)
    # the rank of a label counts every label scoring at least as high: ties share the worst rank
    ranks = (s[:, None, :] >= s[:, :, None]).sum(axis=2)  # [n, c] = |{k : s_k >= s_c}|
    return float(np.where(y, ranks, 0).max(axis=1).mean())


def one_error(y_true, scores) -> float:
    """Eq. (10): the fraction of samples whose top-scored label is not a true label.

    Ties for the top score are broken towards the lowest label index (``argmax``).
    """
    y, s = _check(y_true, scores)
    top = s.argmax(axis=1)
    return float(np.mean(~y[np.arange(len(y)), top]))


def ranking_loss(y_true, scores) -> float:
    """Eq. (11): mean over samples of |{(c, k) : s_c < s_k, c true, k false}| / (|Y|·(C − |Y|)).

    Strict ``<`` as in the paper: a tied pair is not counted (scikit-learn's
    ``label_ranking_loss`` counts ties as mis-ordered; the two agree when no true and false label
    tie). Samples with no true or no false label contribute 0 and still count in N (scikit-learn).
    """
    y, s = _check(y_true, scores)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    wrong = (s[:, :, None] < s[:, None, :]) & y[:, :, None] & ~y[:, None, :]  # [n, c true, k false]
    denom = n_pos * n_neg
    per = np.where(denom > 0, wrong.sum(axis=(1, 2)) / np.maximum(denom, 1), 0.0)
    return float(per.mean())


def average_precision(y_true, scores) -> float:
    """Eq. (12): mean over samples of (1/|Y|) Σ_{c true} |{k true : s_k ≥ s_c}| / |{k : s_k ≥ s_c}|.

    (The paper's Eq. 12 writes ``y_{c,n} = 1`` in the numerator; it means ``y_{k,n} = 1``.)
    Samples with no true or no false label score 1 (scikit-learn's
    ``label_ranking_average_precision_score``).
    """
    y, s = _check(y_true, scores)
    above = s[:, None, :] >= s[:, :, None]  # [n, c, k] = s_k >= s_c
    prec = (above & y[:, None, :]).sum(axis=2) / above.sum(axis=2)
    n_pos = y.sum(axis=1)
    per = np.where(y, prec, 0.0).sum(axis=1) / np.maximum(n_pos, 1)
    per = np.where((n_pos == 0) | (n_pos == y.shape[1]), 1.0, per)
    return float(per.mean())


def f1_scores(y_true, scores, threshold: float = 0.5, zero_division: float = 0.0) -> np.ndarray:
    """Per-class F1 (C,): 2·TP / (2·TP + FP + FN); ``zero_division`` where a class has no
    positives and no predictions (scikit-learn's ``f1_score(..., zero_division=0.0)``)."""
    y, s = _check(y_true, scores)
    p = _predict(s, threshold)
    tp, fp, fn = (y & p).sum(0), (~y & p).sum(0), (y & ~p).sum(0)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), zero_division).astype(np.float64)


def macro_f1(y_true, scores, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """Macro-F1: the F1 of each class, then their mean."""
    return float(f1_scores(y_true, scores, threshold, zero_division).mean())


def micro_f1(y_true, scores, threshold: float = 0.5, zero_division: float = 0.0) -> float:
    """Micro-F1: F1 of TP, FP, FN summed over every class."""
    y, s = _check(y_true, scores)
    p = _predict(s, threshold)
    tp, fp, fn = (y & p).sum(), (~y & p).sum(), (y & ~p).sum()
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom > 0 else float(zero_division)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of one binary problem as the Mann–Whitney statistic (ties count 1/2): the area
    under the trapezoidal ROC curve, exactly."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)  # average ranks: a tied positive/negative pair counts 1/2
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def micro_auc(y_true, scores) -> float:
    """Micro-AUC: one ROC curve over all N·C (label, score) pairs. NaN if all labels are equal."""
    y, s = _check(y_true, scores)
    return _auc(y.ravel(), s.ravel())


def macro_auc(y_true, scores) -> float:
    """Macro-AUC: the mean of the per-class AUCs.

    A class whose column holds only one value has no ROC curve (scikit-learn raises); it is left
    out of the mean here, so a small evaluation split can still be scored. NaN if no class has one.
    """
    y, s = _check(y_true, scores)
    per = np.array([_auc(y[:, c], s[:, c]) for c in range(y.shape[1])])
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


#: the nine metrics of paper 004 Table 1, in its column order: name → (function, lower is better)
MULTILABEL_METRICS = {
    "hamming_loss": (hamming_loss, True),
    "coverage": (coverage, True),
    "one_error": (one_error, True),
    "ranking_loss": (ranking_loss, True),
    "average_precision": (average_precision, False),
    "micro_f1": (micro_f1, False),
    "macro_f1": (macro_f1, False),
    "micro_auc": (micro_auc, False),
    "macro_auc": (macro_auc, False),
}


def multilabel_metrics(y_true, scores, threshold: float = 0.5) -> dict[str, float]:
    """All nine metrics of paper 004 (Table 1) as a dict, in the paper's column order."""
    thresholded = {"hamming_loss", "micro_f1", "macro_f1"}
    return {
        name: fn(y_true, scores, threshold) if name in thresholded else fn(y_true, scores)
        for name, (fn, _) in MULTILABEL_METRICS.items()
    }


# -- single-label expression scores (paper 003) -------------------------------------------------
def accuracy(y_true, probs) -> float:
    """Fraction of samples whose argmax class is the label. ``y_true`` (N,) class indices."""
    y = np.asarray(y_true)
    p = np.asarray(probs)
    if p.ndim != 2 or y.shape != (len(p),):
        raise ValueError(f"y_true must be (N,) and probs (N, C); got {y.shape} and {p.shape}")
    return float(np.mean(p.argmax(axis=1) == y))


def affwild2_score(y_true, probs) -> float:
    """Eq. (10) of paper 003 (the ABAW expression metric): M = 0.33·Acc + 0.67·F1, F1 the macro
    F1 over the classes of the one-hot argmax predictions."""
    y = np.asarray(y_true)
    p = np.asarray(probs)
    acc = accuracy(y, p)
    onehot_true = np.eye(p.shape[1], dtype=int)[y]
    onehot_pred = np.eye(p.shape[1])[p.argmax(axis=1)]
    return 0.33 * acc + 0.67 * macro_f1(onehot_true, onehot_pred, threshold=0.5)
