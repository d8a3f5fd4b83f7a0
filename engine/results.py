"""Run outputs as tables: one row per face per frame, the same columns from JSONL, CSV or Parquet.

Column conventions follow OpenFace where they overlap, so existing analysis scripts work:

=================  ===========================================================================
``cam``, ``sid``   camera and stream session (``sid`` changes when a live source reconnects)
``seq``            index of the ``result`` message in its session
``frame``          index of the decoded frame in its session (OpenFace: ``frame``)
``timestamp``      seconds from ``pts * time_base`` (NaN when the container has no pts)
``t_capture_ns``   wall clock when the frame left the decoder
``face``           index of the face within its frame
``face_id``        tracker id (``track`` on the wire; -1 until the tracker confirms the face)
``confidence``     detector score, 0-1
``success``        1 when the face is tracked (``face_id >= 0``), else 0
``bbox_x1`` …      box in frame pixels: ``bbox_x1, bbox_y1, bbox_x2, bbox_y2``
``x_0`` … ``y_4``  5 landmarks in frame pixels (OpenFace's ``x_i``/``y_i`` naming): left eye,
                   right eye, nose, left and right mouth corner
``AU01_r``         AU probability (OpenFace: intensity; here the model's probability, 0-1)
``AU01_c``         AU occurrence: 1 when ``AU01_r >= 0.5`` (0 when the probability is missing)
``expr_<label>``   expression probabilities over the canonical labels (``expr_happiness`` …)
``<out>_<label>``  any other model output
=================  ===========================================================================

Frames without a face have no row (the JSONL keeps every message, ``auflow report`` reads it).
The sinks (:mod:`auflow.plugins.sinks.csv`, :mod:`auflow.plugins.sinks.parquet`) build their rows
with :func:`face_rows`, and :func:`read_results` turns any of them into the same DataFrame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AuflowError

if TYPE_CHECKING:  # pandas is an optional dependency: imported only by read_results
    import pandas as pd

#: occurrence threshold for ``AUxx_c``
OCCURRENCE_THRESHOLD = 0.5
#: per-frame columns, in order
FRAME_COLUMNS: tuple[str, ...] = ("cam", "sid", "seq", "frame", "timestamp", "t_capture_ns")
#: per-face columns before the model outputs, in order
FACE_COLUMNS: tuple[str, ...] = (
    "face", "face_id", "confidence", "success", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2",
    *(f"x_{i}" for i in range(5)), *(f"y_{i}" for i in range(5)),
)
STRING_COLUMNS = frozenset({"cam", "sid", "mode", "model_expr", "kind_expr", "model_au", "kind_au"})
INT_COLUMNS = frozenset({"seq", "frame", "t_capture_ns", "face", "face_id", "success",
                         "start_seq", "end_seq", "at_seq", "frames", "padded", "missing"})
#: the fused windows' table beside a camera's results: ``<cam>.windows.csv`` / ``<cam>.windows.parquet``
WINDOWS_STEM = ".windows"
#: its columns before the fused values, in order
WINDOW_COLUMNS = ("cam", "sid", "face_id", "start_seq", "end_seq", "at_seq", "mode", "frames", "padded", "missing")
#: extensions read_results knows, in the order it prefers them inside a run directory
SUFFIXES: tuple[str, ...] = (".parquet", ".jsonl", ".csv")


class ResultsError(AuflowError):
    """A results file or run directory that cannot be read as auflow results."""


def timestamp_s(pts: Any, time_base: Any) -> float | None:
    """Seconds of a frame: ``pts * num / den``; None without a pts or a valid time base."""
    try:
        num, den = time_base
        return None if pts is None or not den else pts * num / den
    except (TypeError, ValueError):
        return None


def _f(x: Any) -> float | None:
    """A finite float or None (the wire sends non-finite floats as None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def face_rows(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table rows (one per face) of a ``result`` message; ``[]`` for any other message type."""
    if message.get("type") != "result":
        return []
    base = {
        "cam": message["cam"],
        "sid": message["sid"],
        "seq": int(message["seq"]),
        "frame": int(message["frame"]),
        "timestamp": timestamp_s(message.get("pts"), message.get("time_base")),
        "t_capture_ns": int(message["t_capture_ns"]),
    }
    rows = []
    for i, face in enumerate(message.get("faces") or []):
        track = int(face.get("track", -1))
        row = dict(base, face=i, face_id=track, confidence=_f(face.get("score")), success=int(track >= 0))
        bbox = list(face.get("bbox") or []) + [None] * 4
        for name, v in zip(("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"), bbox):
            row[name] = _f(v)
        kps = list(face.get("kps") or []) + [[None, None]] * 5
        for j in range(5):
            row[f"x_{j}"], row[f"y_{j}"] = _f(kps[j][0]), _f(kps[j][1])
        for label, p in sorted((face.get("au") or {}).items()):
            p = _f(p)
            row[f"{label}_r"] = p
            row[f"{label}_c"] = int(p is not None and p >= OCCURRENCE_THRESHOLD)
        for label, p in (face.get("expr") or {}).items():
            row[f"expr_{label}"] = _f(p)
        for name, values in face.items():
            if name in ("track", "bbox", "score", "kps", "au", "expr") or not isinstance(values, Mapping):
                continue
            for label, p in values.items():
                row[f"{name}_{label}"] = _f(p)
        rows.append(row)
    return rows


def window_rows(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The row of a ``window`` message (one person's fused window: docs/protocol.md); ``[]`` for other types.
    ``face_id`` is the track, as in the face rows; ``model_<output>``/``kind_<output>`` say what fused it."""
    if message.get("type") != "window":
        return []
    row: dict[str, Any] = {"cam": message["cam"], "sid": message["sid"], "face_id": int(message.get("track", -1))}
    for k in WINDOW_COLUMNS[3:]:
        row[k] = message.get(k) if k == "mode" else int(message.get(k, -1))
    for out, m in (message.get("models") or {}).items():
        if isinstance(m, Mapping):
            row[f"model_{out}"], row[f"kind_{out}"] = str(m.get("name")), str(m.get("kind"))
    for label, p in (message.get("expr") or {}).items():
        row[f"expr_{label}"] = _f(p)
    for label, p in sorted((message.get("au") or {}).items()):
        row[f"{label}_r"] = _f(p)
    return [row]


def window_column_order(columns: list[str]) -> list[str]:
    fixed = [c for c in WINDOW_COLUMNS if c in columns]
    models = sorted(c for c in columns if c.startswith(("model_", "kind_")))
    expr = [c for c in columns if c.startswith("expr_")]
    return fixed + models + expr + [c for c in columns if c not in fixed and c not in models and c not in expr]


def column_order(columns: list[str]) -> list[str]:
    """Canonical order: frame columns, face columns, AU ``_r``/``_c`` pairs by AU, ``expr_*``, others."""
    fixed = [c for c in (*FRAME_COLUMNS, *FACE_COLUMNS) if c in columns]
    rest = [c for c in columns if c not in fixed]
    aus = sorted({c[:-2] for c in rest if c.startswith("AU") and c[-2:] in ("_r", "_c")})
    au_cols = [c for a in aus for c in (f"{a}_r", f"{a}_c") if c in rest]
    expr = [c for c in rest if c.startswith("expr_")]
    other = [c for c in rest if c not in au_cols and c not in expr]
    return fixed + au_cols + expr + other


def is_int_column(name: str) -> bool:
    return name in INT_COLUMNS or (name.startswith("AU") and name.endswith("_c"))


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Every message of a JSONL file written by the ``jsonl`` sink (a torn last line is skipped)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                # a run killed mid-write leaves a partial last line; anything else is a real error
                if f.readline() == "":
                    return
                raise ResultsError(f"{path}:{n}: not a JSON line ({exc})") from None


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    df = df[column_order(list(df.columns))].reset_index(drop=True)
    for c in df.columns:
        if c in STRING_COLUMNS:
            df[c] = df[c].astype(str)
        elif is_int_column(c):
            df[c] = pd.to_numeric(df[c]).fillna(0 if c.endswith("_c") else -1).astype("int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def _read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    name = path.name
    if name.endswith(".jsonl"):
        rows = [r for msg in iter_jsonl(path) for r in face_rows(msg)]
        return pd.DataFrame(rows)
    if name.endswith(".csv"):
        # cam and sid stay strings even when they look like numbers
        return pd.read_csv(path, dtype={"cam": str, "sid": str}, keep_default_na=True)
    if name.endswith(".parquet"):
        try:
            return pd.read_parquet(path)  # a file, or the sink's folder of parts
        except ImportError as exc:
            raise ResultsError(f"reading {path} needs pyarrow: pip install 'auflow[parquet]' ({exc})") from None
    raise ResultsError(f"{path}: unknown results format; expected .jsonl, .csv or .parquet (or a run directory)")


def _run_files(run_dir: Path, cam: str | None) -> list[Path]:
    """One results file per camera of a run directory, the preferred format first (SUFFIXES)."""
    by_cam: dict[str, Path] = {}
    for suffix in reversed(SUFFIXES):  # later formats overwrite: the preferred one wins
        for p in sorted(run_dir.glob(f"*{suffix}")):
            stem = p.name[: -len(suffix)]
            if stem.endswith(WINDOWS_STEM):  # a camera's fused windows, not its results
                continue
            if cam is None or stem == cam:
                by_cam[stem] = p
    return [by_cam[c] for c in sorted(by_cam)]


def read_results(path: str | Path, cam: str | None = None) -> pd.DataFrame:
    """Load a run's results into a pandas DataFrame: one row per face per frame.

    ``path`` is a ``.jsonl``, ``.csv`` or ``.parquet`` written by auflow's sinks, or a run
    directory (then every camera's file is read, Parquet preferred over JSONL over CSV, and the
    cameras are concatenated in name order; ``cam`` picks one). The columns and dtypes are the same
    whichever format is read (see the module doc); rows keep the order of the results.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path} does not exist; give a results file or a run directory (auflow run --out DIR)")
    if path.is_dir() and not path.name.endswith(".parquet"):
        files = _run_files(path, cam)
        if not files:
            what = f"for camera {cam!r} " if cam else ""
            raise ResultsError(f"no results {what}in {path} (expected <cam>.jsonl, <cam>.csv or <cam>.parquet)")
        frames = [_read_file(p) for p in files]
    else:
        frames = [_read_file(path)]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in STRING_COLUMNS else "float64")
                             for c in (*FRAME_COLUMNS, *FACE_COLUMNS)}).pipe(_normalise)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if cam is not None and "cam" in df.columns:
        df = df[df["cam"] == cam]
    return _normalise(df)


__all__ = ["ResultsError", "column_order", "face_rows", "iter_jsonl", "read_results", "timestamp_s"]
