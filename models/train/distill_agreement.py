"""How far a student agrees with its teacher on held-out faces: per-AU Pearson r, |Δ| and F1
(:func:`agreement`), and for expression students top-1 and KL over windows (:func:`expr_agreement`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    sa, sb = a.std(), b.std()
    if sa < 1e-8 or sb < 1e-8:
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def agreement(student: np.ndarray, teacher: np.ndarray, names: tuple[str, ...], teacher_std: np.ndarray,
              vary_std: float, threshold: float) -> dict[str, Any]:
    """Per-AU agreement of a student with its teacher on the same faces (see the module docstring).

    Pearson is None where either side is constant; F1 is None where neither side has a positive.
    """
    per: dict[str, Any] = {}
    for j, a in enumerate(names):
        s, t = student[:, j].astype(np.float64), teacher[:, j].astype(np.float64)
        ps, pt = s >= threshold, t >= threshold
        tp, fp, fn = int(np.sum(ps & pt)), int(np.sum(ps & ~pt)), int(np.sum(~ps & pt))
        per[a] = {"pearson": _pearson(s, t), "mae": float(np.mean(np.abs(s - t))) if len(s) else None,
                  "f1": (2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else None,
                  "teacher_positives": int(pt.sum()), "teacher_std": float(teacher_std[j]),
                  "heldout_teacher_std": float(t.std()) if len(t) else None,
                  "varies": bool(teacher_std[j] >= vary_std)}
    varying = [a for a in names if per[a]["varies"]]
    rs = [per[a]["pearson"] for a in varying]
    f1s = [per[a]["f1"] for a in varying if per[a]["f1"] is not None]
    return {"per_au": per, "varying": varying, "vary_std": vary_std, "threshold": threshold, "frames": len(student),
            "mean_pearson_varying": float(np.mean([r if r is not None else 0.0 for r in rs])) if rs else None,
            "min_pearson_varying": float(min(r if r is not None else 0.0 for r in rs)) if rs else None,
            "mean_f1_varying": float(np.mean(f1s)) if f1s else None,
            "mean_mae": float(np.mean([per[a]["mae"] for a in names])) if len(student) else None}


def expr_agreement(student: np.ndarray, teacher: np.ndarray, labels: tuple[str, ...],
                   teacher_centre: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement of a student's expression probabilities with the teacher's on the same windows.

    ``top1``: share of windows whose most probable expression is the teacher's; ``kl``: mean
    KL(teacher ‖ student) in nats; ``mae``: mean |student − teacher| over windows and classes;
    ``majority_top1``: the top-1 agreement of always answering the teacher's most frequent
    expression (what a student that learned nothing but the prior would score);
    ``top1_centre``: top-1 agreement with the teacher on the window's centre frame alone.
    """
    s = np.asarray(student, np.float64)
    t = np.asarray(teacher, np.float64)
    n = len(s)
    ts, tt = s.argmax(1) if n else np.zeros(0, int), t.argmax(1) if n else np.zeros(0, int)
    eps = 1e-7
    kl = np.sum(t * (np.log(np.clip(t, eps, 1.0)) - np.log(np.clip(s, eps, 1.0))), axis=1) if n else np.zeros(0)
    counts = np.bincount(tt, minlength=len(labels)) if n else np.zeros(len(labels), int)
    per = {}
    for j, name in enumerate(labels):
        sel = tt == j
        per[name] = {"teacher_top1": int(sel.sum()), "student_top1": int((ts == j).sum()),
                     "agreement": float(np.mean(ts[sel] == j)) if sel.any() else None,
                     "teacher_mean": float(t[:, j].mean()) if n else None, "student_mean": float(s[:, j].mean()) if n else None}
    res = {"per_class": per, "windows": n,
           "top1": float(np.mean(ts == tt)) if n else None,
           "kl": float(kl.mean()) if n else None,
           "mae": float(np.abs(s - t).mean()) if n else None,
           "majority_top1": float(counts.max() / n) if n else None,
           "top1_centre": None}
    if teacher_centre is not None and n:
        res["top1_centre"] = float(np.mean(ts == np.asarray(teacher_centre).argmax(1)))
    return res


#: the held-out figures kept in each epoch's record
AU_SUMMARY = ("mean_pearson_varying", "min_pearson_varying", "mean_f1_varying", "mean_mae")
EXPR_SUMMARY = ("top1", "kl", "mae", "majority_top1")


__all__ = ["AU_SUMMARY", "EXPR_SUMMARY", "agreement", "expr_agreement"]
