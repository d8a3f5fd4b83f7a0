"""The metrics records of the expression recipes (single-label: paper 003; multi-label: paper 004), and
:func:`metrics_from_dict`, which turns any record's ``to_dict()`` back into its object (AU ones too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ExprMetrics:
    """Single-label expression scores (paper 003 Sec. 4.1): accuracy of the argmax, per-class F1 of
    the one-hot argmax predictions, their mean, and on Aff-Wild2 the ABAW 2020 metric
    M = 0.67·F1 + 0.33·Acc (Eq. 10). Fractions in [0, 1]."""

    labels: tuple[str, ...]
    accuracy: float
    f1: tuple[float, ...]
    macro_f1: float
    samples: int
    challenge: float | None = None  # Aff-Wild2's M
    kind: str = "single_label"

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d["per_class"] = {c: {"f1": f} for c, f in zip(self.labels, self.f1)}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExprMetrics:
        return cls(tuple(d["labels"]), d["accuracy"], tuple(d["f1"]), d["macro_f1"], d["samples"], d.get("challenge"))

    def summary(self) -> str:
        s = f"accuracy {100 * self.accuracy:.1f}, macro F1 {100 * self.macro_f1:.1f}"
        return s if self.challenge is None else s + f", Aff-Wild2 M = 0.67·F1 + 0.33·Acc {self.challenge:.4f}"


@dataclass(frozen=True)
class MultiLabelMetrics:
    """The nine multi-label metrics of paper 004 (Table 1, :func:`auflow.models.expr_metrics.multilabel_metrics`)
    in its column order, and the per-class F1 at ``threshold``."""

    labels: tuple[str, ...]
    values: dict[str, float]
    f1: tuple[float, ...]
    threshold: float
    samples: int
    kind: str = "multi_label"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "labels": list(self.labels), "values": dict(self.values), "f1": list(self.f1),
                "threshold": self.threshold, "samples": self.samples, **self.values,
                "per_class": {c: {"f1": f} for c, f in zip(self.labels, self.f1)}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiLabelMetrics:
        return cls(tuple(d["labels"]), dict(d["values"]), tuple(d["f1"]), d["threshold"], d["samples"])

    @property
    def macro_f1(self) -> float:
        return self.values["macro_f1"]

    def summary(self) -> str:
        v = self.values
        return (f"macro-F1 {v['macro_f1']:.4f}, micro-F1 {v['micro_f1']:.4f}, AP {v['average_precision']:.4f}, "
                f"HL {v['hamming_loss']:.4f}, one-error {v['one_error']:.4f}")


def metrics_from_dict(d: dict[str, Any]):
    """The metrics object a record's ``to_dict()`` came from (AU, single-label or multi-label)."""
    from auflow.models.metrics import AUMetrics

    kind = d.get("kind")
    if kind == "single_label":
        return ExprMetrics.from_dict(d)
    if kind == "multi_label":
        return MultiLabelMetrics.from_dict(d)
    keep = ("au_names", "f1", "accuracy", "precision", "recall", "support", "threshold", "samples")
    return AUMetrics(**{k: tuple(d[k]) if isinstance(d[k], list) else d[k] for k in keep})


__all__ = ["ExprMetrics", "MultiLabelMetrics", "metrics_from_dict"]
