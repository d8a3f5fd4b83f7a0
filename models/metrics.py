"""AU detection metrics: per-AU F1 and accuracy, their averages, and decision thresholds.

The papers' protocol (ME-GraphAU Sec. 3, Topo-AU Sec. 4.2, AU-GCN Sec. 4.1): threshold each AU's
probability (0.5), count true/false positives and negatives per AU over every frame of the test
fold, F1 = 2·P·R / (P + R) per AU ("frame-based F1"), and report the mean over AUs. Accuracy is the
fraction of frames whose AU state is right, per AU, and its mean.

An AU with no positive frames and no positive predictions has an undefined F1; ``zero_division``
says what to report (0.0 as scikit-learn's default and the authors' code; 1.0 to call it perfect).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["AUMetrics", "accuracy_per_au", "au_metrics", "binarize", "confusion_counts", "f1_per_au", "tune_thresholds"]

DEFAULT_THRESHOLD = 0.5


def _as_2d(name: str, a: np.ndarray | Sequence) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (samples, AUs), got shape {a.shape}")
    return a


def binarize(probs: np.ndarray, threshold: float | Sequence[float] | np.ndarray = DEFAULT_THRESHOLD) -> np.ndarray:
    """``probs >= threshold`` as 0/1 int; ``threshold`` is one number or one per AU (column)."""
    p = _as_2d("probs", probs)
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 1 and t.shape[0] != p.shape[1]:
        raise ValueError(f"{t.shape[0]} thresholds for {p.shape[1]} AUs: give one, or one per AU")
    if t.ndim > 1:
        raise ValueError(f"threshold must be a number or a 1-D sequence, got shape {t.shape}")
    return (p >= t).astype(np.int64)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-AU ``tp``, ``fp``, ``fn``, ``tn`` (each (AUs,) int64) of 0/1 arrays (samples, AUs)."""
    t, p = _as_2d("y_true", y_true), _as_2d("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    t, p = t.astype(bool), p.astype(bool)
    return {"tp": (t & p).sum(0), "fp": (~t & p).sum(0), "fn": (t & ~p).sum(0), "tn": (~t & ~p).sum(0)}


def f1_per_au(y_true: np.ndarray, y_pred: np.ndarray, zero_division: float = 0.0) -> np.ndarray:
    """Per-AU F1 = 2·TP / (2·TP + FP + FN) (equal to 2PR/(P+R)); ``zero_division`` where TP+FP+FN = 0."""
    c = confusion_counts(y_true, y_pred)
    denom = 2 * c["tp"] + c["fp"] + c["fn"]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * c["tp"] / np.maximum(denom, 1), float(zero_division))
    return f1.astype(np.float64)


def accuracy_per_au(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    c = confusion_counts(y_true, y_pred)
    n = c["tp"] + c["fp"] + c["fn"] + c["tn"]
    if np.any(n == 0):
        raise ValueError("accuracy of an empty set of samples is undefined")
    return ((c["tp"] + c["tn"]) / n).astype(np.float64)


@dataclass(frozen=True)
class AUMetrics:
    """Per-AU and mean F1 / accuracy (fractions in [0, 1]) at the given thresholds."""

    au_names: tuple[str, ...]
    f1: tuple[float, ...]
    accuracy: tuple[float, ...]
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    support: tuple[int, ...]  # positive frames per AU
    threshold: tuple[float, ...]
    samples: int

    @property
    def mean_f1(self) -> float:
        return float(np.mean(self.f1))

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.accuracy))

    def f1_of(self, aus: Sequence[str]) -> float:
        """Mean F1 over a subset of AUs (e.g. the generated data's hidden ones)."""
        missing = [a for a in aus if a not in self.au_names]
        if missing:
            raise KeyError(f"AUs {missing} are not among {self.au_names}")
        return float(np.mean([self.f1[self.au_names.index(a)] for a in aus]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean_f1"], d["mean_accuracy"] = self.mean_f1, self.mean_accuracy
        d["per_au"] = {a: {"f1": f, "accuracy": acc} for a, f, acc in zip(self.au_names, self.f1, self.accuracy)}
        return d


def au_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    au_names: Sequence[str],
    threshold: float | Sequence[float] | Mapping[str, float] = DEFAULT_THRESHOLD,
    zero_division: float = 0.0,
) -> AUMetrics:
    """Everything the protocol reports, from 0/1 labels and probabilities (samples, AUs)."""
    t, p = _as_2d("y_true", y_true), _as_2d("probs", probs)
    names = tuple(au_names)
    if t.shape != p.shape or t.shape[1] != len(names):
        raise ValueError(f"y_true {t.shape}, probs {p.shape} and {len(names)} AU names must agree")
    if isinstance(threshold, Mapping):
        missing = [a for a in names if a not in threshold]
        if missing:
            raise ValueError(f"no threshold for {missing}")
        threshold = [float(threshold[a]) for a in names]
    thr = np.broadcast_to(np.asarray(threshold, np.float64), (len(names),))
    pred = binarize(p, thr)
    c = confusion_counts(t, pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(c["tp"] + c["fp"] > 0, c["tp"] / np.maximum(c["tp"] + c["fp"], 1), float(zero_division))
        recall = np.where(c["tp"] + c["fn"] > 0, c["tp"] / np.maximum(c["tp"] + c["fn"], 1), float(zero_division))
    return AUMetrics(
        au_names=names,
        f1=tuple(float(v) for v in f1_per_au(t, pred, zero_division)),
        accuracy=tuple(float(v) for v in accuracy_per_au(t, pred)),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        support=tuple(int(v) for v in t.astype(bool).sum(0)),
        threshold=tuple(float(v) for v in thr),
        samples=int(t.shape[0]),
    )


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, grid: Sequence[float] | None = None) -> np.ndarray:
    """Per-AU threshold maximising F1 on these samples (ties: the one closest to 0.5).

    Tune on a validation split, never on the test fold you report: thresholds picked on the test
    labels inflate its F1. The papers report F1 at the fixed 0.5.
    """
    t, p = _as_2d("y_true", y_true), _as_2d("probs", probs)
    grid = np.asarray(grid if grid is not None else np.linspace(0.05, 0.95, 19), np.float64)
    best = np.full(t.shape[1], DEFAULT_THRESHOLD)
    best_f1 = np.full(t.shape[1], -1.0)
    for g in sorted(grid, key=lambda v: abs(v - DEFAULT_THRESHOLD)):  # closest to 0.5 first wins ties
        f1 = f1_per_au(t, binarize(p, g))
        better = f1 > best_f1
        best[better], best_f1[better] = g, f1[better]
    return best
