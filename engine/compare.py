"""Agreement between two runs' outputs on the same video: per AU (and expression) Pearson r, mean
absolute difference, and the frames matched — e.g. a distilled student against its teacher, or one
checkpoint against another.

Faces are matched by ``(cam, frame)`` and then either

- ``largest``: the largest face (bbox area) of each frame in each run — right for one-person
  videos and robust to track ids that differ between runs; or
- ``track``: the same ``face_id`` (tracker id) in both runs — for several people, when both runs
  tracked the same way (same detector and tracker config, so the same ids);
- ``auto`` (default): ``largest`` when no frame of either run has more than one face, else ``track``.

Columns compared: every ``AUxx…_r`` and ``expr_*`` column the two runs share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AuflowError
from .results import ResultsError, iter_jsonl, read_results

__all__ = ["Comparison", "compare_runs", "plot_comparison", "run_models"]


class CompareError(AuflowError):
    """Two runs that cannot be compared (no shared frames or outputs)."""


@dataclass
class Comparison:
    a: str
    b: str
    match: str  # how faces were matched: largest | track
    frames_a: int  # rows (faces) of each run considered
    frames_b: int
    matched: int  # matched faces (rows of ``table``)
    rows: list[dict[str, Any]]  # per output column: label, n, pearson, mad, mean_a, mean_b
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    models_a: dict[str, Any] = field(default_factory=dict)
    models_b: dict[str, Any] = field(default_factory=dict)
    table: Any = None  # the matched DataFrame: cam, frame, timestamp, <col>_a, <col>_b

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "table"}
        return d


def _value_columns(df) -> list[str]:
    return [c for c in df.columns if (c.startswith("AU") and c.endswith("_r")) or c.startswith("expr_")]


def run_models(path: str | Path) -> dict[str, Any]:
    """``models`` of the first result message of a run (which model produced each output, its kind), if JSONL is there."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else ([p] if p.suffix == ".jsonl" else [])
    for f in files:
        for msg in iter_jsonl(f):
            if msg.get("type") == "result" and msg.get("models"):
                return dict(msg["models"])
    return {}


def _pick(df, match: str):
    df = df.copy()
    if match == "largest":
        df["_area"] = (df["bbox_x2"] - df["bbox_x1"]) * (df["bbox_y2"] - df["bbox_y1"])
        df = df.sort_values("_area", ascending=False, kind="stable").drop_duplicates(["cam", "frame"])
        return df.drop(columns="_area")
    df = df[df["face_id"] >= 0]
    return df.drop_duplicates(["cam", "frame", "face_id"])


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or a.std() < 1e-8 or b.std() < 1e-8:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def compare_runs(run_a: str | Path, run_b: str | Path, match: str = "auto", cam: str | None = None) -> Comparison:
    """Per-output agreement of two runs (directories or results files) on the same video."""
    if match not in ("auto", "largest", "track"):
        raise CompareError(f"match must be auto, largest or track, got {match!r}")
    try:
        da, db = read_results(run_a, cam), read_results(run_b, cam)
    except ImportError as e:
        raise ResultsError(f"auflow compare needs pandas: pip install 'auflow[report]' ({e})") from None
    if match == "auto":
        multi = any(len(d) and d.groupby(["cam", "frame"]).size().max() > 1 for d in (da, db))
        match = "track" if multi else "largest"
    ca, cb = _value_columns(da), _value_columns(db)
    shared = [c for c in ca if c in set(cb)]
    if not shared:
        raise CompareError(f"{run_a} and {run_b} share no AU or expression output (A has {ca[:6]}…, B has {cb[:6]}…)")
    keys = ["cam", "frame"] + (["face_id"] if match == "track" else [])
    pa = _pick(da, match)[keys + ["timestamp"] + shared]
    pb = _pick(db, match)[keys + shared]
    m = pa.merge(pb, on=keys, suffixes=("_a", "_b")).sort_values(keys, kind="stable").reset_index(drop=True)
    if m.empty:
        raise CompareError(f"no face of {run_a} matches one of {run_b} by {', '.join(keys)}: are they runs of the same video"
                           + (" with the same tracker (try --match largest)?" if match == "track" else "?"))
    rows = []
    for c in shared:
        both = m[[f"{c}_a", f"{c}_b"]].dropna()
        x, y = both[f"{c}_a"].to_numpy(np.float64), both[f"{c}_b"].to_numpy(np.float64)
        label = c.removesuffix("_r")
        rows.append({"label": label, "column": c, "n": len(both), "pearson": _pearson(x, y),
                     "mad": float(np.abs(x - y).mean()) if len(x) else None,
                     "mean_a": float(x.mean()) if len(x) else None, "mean_b": float(y.mean()) if len(y) else None,
                     "std_a": float(x.std()) if len(x) else None, "std_b": float(y.std()) if len(y) else None})
    return Comparison(str(run_a), str(run_b), match, len(pa), len(pb), len(m), rows,
                      [c for c in ca if c not in shared], [c for c in cb if c not in shared],
                      run_models(run_a), run_models(run_b), m)


def plot_comparison(cmp: Comparison, path: str | Path, labels: list[str] | None = None, max_panels: int = 20) -> Path:
    """A PNG of the time series, one panel per output: run A and run B over each other.

    Default panels: the AU outputs (main AUs, not the _L/_R halves), then expressions, at most
    ``max_panels``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r["label"]: r for r in cmp.rows}
    if labels is None:
        aus = [r["label"] for r in cmp.rows if r["label"].startswith("AU") and not r["label"].endswith(("_L", "_R"))]
        labels = (aus + [r["label"] for r in cmp.rows if r["label"].startswith("expr_")])[:max_panels]
    unknown = [x for x in labels if x not in rows]
    if unknown or not labels:
        raise CompareError(f"nothing to plot for {unknown or labels}; shared outputs: {', '.join(rows)}")
    t = cmp.table["timestamp"].to_numpy(np.float64)
    xlabel = "time (s)"
    if not np.isfinite(t).all():
        t, xlabel = cmp.table["frame"].to_numpy(np.float64), "frame"
    n = len(labels)
    cols = 2 if n > 6 else 1
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(7 * cols, 1.35 * nrows + 0.9), sharex=True, squeeze=False)
    na, nb = _run_name(cmp.a, cmp.models_a), _run_name(cmp.b, cmp.models_b)
    for ax, label in zip(axes.flat, labels):
        r = rows[label]
        c = r["column"]
        ax.plot(t, cmp.table[f"{c}_a"], lw=1.0, color="tab:blue", label=f"A: {na}")
        ax.plot(t, cmp.table[f"{c}_b"], lw=1.0, color="tab:orange", label=f"B: {nb}")
        pr = "n/a" if r["pearson"] is None else f"{r['pearson']:.2f}"
        ax.set_title(f"{label}   r={pr}  |Δ|={r['mad']:.3f}", fontsize=8, loc="left")
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{cmp.matched} faces matched ({cmp.match})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _run_name(path: str, models: dict[str, Any]) -> str:
    au = models.get("au")
    name = Path(path).name
    return f"{name} ({au['name']}, {au['kind']})" if isinstance(au, dict) and "name" in au else name
