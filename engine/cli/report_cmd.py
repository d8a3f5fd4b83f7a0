"""``auflow report RUN_DIR``: one self-contained HTML page that shows a run at a glance.

Per camera: what ran (models, and whether they are trained), counts, faces per frame, fps in/out
(from ``status``), per-stage latency (from ``result``), and per track the AU time series and the
expression timeline. Plots are matplotlib PNGs embedded as base64, so the page is one file that
opens anywhere offline. Every string from the run is HTML-escaped.

The page reads ``<cam>.jsonl`` (every message); a run that only kept CSV or Parquet gets the
per-track plots from :func:`auflow.engine.results.read_results` and no fps/latency plots.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AuflowError
from ..results import iter_jsonl, read_results, timestamp_s

#: canonical expression order and the colour each gets in every plot
EXPR_COLOURS = {
    "neutral": "#9e9e9e", "happiness": "#f5b700", "sadness": "#3b6fd1", "surprise": "#19b5a5",
    "fear": "#8e44ad", "disgust": "#5b8c2a", "anger": "#d63a2f", "contempt": "#a0522d",
}
MAX_TRACKS = 8  # per camera; the longest tracks are plotted, the rest listed
MIN_TRACK_FRAMES = 3


class ReportError(AuflowError):
    """A run directory the report cannot read."""


@dataclass
class CamData:
    cam: str
    results: list[dict] = field(default_factory=list)
    status: list[dict] = field(default_factory=list)
    eos: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _t(msg: dict, t0_ns: int) -> float:
    """Seconds into the video (pts) when known, else wall-clock seconds since the first capture."""
    ts = timestamp_s(msg.get("pts"), msg.get("time_base"))
    return ts if ts is not None else (msg.get("t_capture_ns", t0_ns) - t0_ns) / 1e9


def load_run(run_dir: Path) -> tuple[dict, dict[str, CamData]]:
    """summary.json (or {}) and every camera's messages from its JSONL."""
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    cams: dict[str, CamData] = {}
    for path in sorted(run_dir.glob("*.jsonl")):
        for msg in iter_jsonl(path):
            cam = str(msg.get("cam", path.stem))
            data = cams.setdefault(cam, CamData(cam))
            {"result": data.results, "status": data.status, "eos": data.eos, "window": data.windows}.get(
                msg.get("type"), []).append(msg)
    return summary, cams


# -- plots ----------------------------------------------------------------------------------------


def plot_faces_per_frame(results: list[dict]) -> str:
    import matplotlib.pyplot as plt

    t0 = results[0]["t_capture_ns"]
    t = [_t(m, t0) for m in results]
    n = [len(m["faces"]) for m in results]
    fig, ax = plt.subplots(figsize=(10, 2.2))
    ax.step(t, n, where="post", color="#333")
    ax.fill_between(t, n, step="post", alpha=0.2, color="#333")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("faces")
    ax.set_ylim(0, max(n + [1]) + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Faces per frame")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_fps_latency(data: CamData) -> str | None:
    import matplotlib.pyplot as plt

    if not data.results and not data.status:
        return None
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11, 2.8), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    if data.status:
        t0 = data.status[0]["t_publish_ns"]
        live = [s for s in data.status if s.get("state") == "live"] or data.status
        ts = [(s["t_publish_ns"] - t0) / 1e9 for s in live]
        for key, colour in (("fps_in", "#3b6fd1"), ("fps_out", "#d63a2f")):
            ax1.plot(ts, [np.nan if s.get(key) is None else s[key] for s in live], label=key, color=colour)
        ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title("Frames per second (status)")
    ax1.set_xlabel("run time (s)")
    ax1.grid(alpha=0.3)
    if data.results:
        t0 = data.results[0]["t_publish_ns"]
        tr = [(m["t_publish_ns"] - t0) / 1e9 for m in data.results]
        stages = list(dict.fromkeys(k for m in data.results for k in (m.get("latency_ms") or {})))
        values = {s: np.array([np.nan if (v := (m.get("latency_ms") or {}).get(s)) is None else v
                               for m in data.results], dtype=float) for s in stages}
        if "total" in values:
            ax2.plot(tr, values["total"], color="#333", lw=1, label="total (capture to publish)")
            ax2.legend(loc="upper left", fontsize=7)
        ax2.set_ylabel("ms")
        ax2.set_title("End-to-end latency (ms, result)")
        ax2.set_xlabel("run time (s)")
        ax2.grid(alpha=0.3)
        per_stage = [s for s in stages if s != "total" and np.isfinite(values[s]).any()]
        if per_stage:
            p50 = [np.nanpercentile(values[s], 50) for s in per_stage]
            p95 = [np.nanpercentile(values[s], 95) for s in per_stage]
            y = np.arange(len(per_stage))
            ax3.barh(y + 0.2, p95, height=0.4, color="#f0b45b", label="p95")
            ax3.barh(y - 0.2, p50, height=0.4, color="#3b6fd1", label="p50")
            ax3.set_yticks(y, per_stage, fontsize=8)
            ax3.invert_yaxis()
            ax3.set_xlabel("ms")
            ax3.legend(loc="lower right", fontsize=7)
        ax3.set_title("Latency per stage")
        ax3.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def fused_points(data: "CamData | None", track: int) -> tuple[np.ndarray, list[str]]:
    """The track's ``window`` messages as (times in video, dominant fused label), each at the result it describes."""
    if data is None or not data.windows:
        return np.zeros(0), []
    when = {(r.get("sid"), r.get("seq")): timestamp_s(r.get("pts"), r.get("time_base")) for r in data.results}
    pts = []
    for w in data.windows:
        t = when.get((w.get("sid"), w.get("at_seq")))
        if w.get("track") == track and t is not None and w.get("expr"):
            pts.append((t, max(w["expr"], key=w["expr"].get)))
    pts.sort()
    return np.array([t for t, _ in pts]), [lb for _, lb in pts]


def plot_track(df, track: int, fused: tuple[np.ndarray, list[str]] | None = None) -> str:
    """AU probabilities over time (top) and the expression timeline (stacked probabilities + dominant, per frame;
    with ``fused`` — window messages' times and dominant labels — a second strip, the fused expression)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    d = df[df["face_id"] == track]
    t = d["timestamp"].to_numpy(dtype=float)
    if np.isnan(t).all():
        t = (d["t_capture_ns"].to_numpy(dtype=float) - d["t_capture_ns"].min()) / 1e9
    au_all = [c for c in d.columns if c.startswith("AU") and c.endswith("_r")]
    au_cols = [c for c in au_all if d[c].notna().any()]  # an AU the model cannot measure is null: no line
    unmeasured = [c[:-2] for c in au_all if c not in au_cols]
    expr_cols = [c for c in d.columns if c.startswith("expr_")]
    has_fused = fused is not None and len(fused[0]) > 0 and bool(expr_cols)
    rows = (1 if au_cols else 0) + (2 if expr_cols else 0) + (1 if has_fused else 0)
    heights = ([3] if au_cols else []) + ([2, 0.35] if expr_cols else []) + ([0.35] if has_fused else [])
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.1 * sum(heights) + 0.8), sharex=True,
                             gridspec_kw={"height_ratios": heights})
    axes = list(np.atleast_1d(axes))
    if au_cols:
        ax = axes.pop(0)
        cmap = plt.get_cmap("tab20")
        for i, c in enumerate(au_cols):
            ax.plot(t, d[c].to_numpy(dtype=float), lw=1, color=cmap(i % 20), label=c[:-2])
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("AU probability")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=1 if len(au_cols) <= 14 else 2)
        ax.grid(alpha=0.3)
        ax.set_title(f"Track {track}: action units" + (f" ({', '.join(unmeasured)} not measured)" if unmeasured else ""))
    if expr_cols:
        ax, strip = axes[0], axes[1]
        labels = [c[5:] for c in expr_cols]
        probs = np.nan_to_num(d[expr_cols].to_numpy(dtype=float))
        colours = [EXPR_COLOURS.get(lb, "#777") for lb in labels]
        ax.stackplot(t, probs.T, colors=colours, labels=labels, alpha=0.9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("expression")
        ax.set_title(f"Track {track}: expression probabilities (stacked) and dominant expression")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
        dom = probs.argmax(axis=1)
        # one coloured span per frame, to the next frame's time
        edges = np.append(t, t[-1] + (np.median(np.diff(t)) if len(t) > 1 else 0.04))
        for i, k in enumerate(dom):
            strip.axvspan(edges[i], edges[i + 1], color=colours[k], lw=0)
        strip.set_yticks([])
        strip.set_ylabel("dominant", rotation=0, ha="right", va="center", fontsize=8)
        present = sorted(set(dom.tolist()))
        strip.legend(handles=[Patch(color=colours[k], label=labels[k]) for k in present], loc="upper left",
                     bbox_to_anchor=(1.0, 1.6), fontsize=7, frameon=False)
        if has_fused:  # the fused expression of each window, to the next window's time
            fstrip = axes[2]
            ft, fl = fused
            fedges = np.append(ft, ft[-1] + (np.median(np.diff(ft)) if len(ft) > 1 else 0.04))
            for i, lb in enumerate(fl):
                fstrip.axvspan(fedges[i], fedges[i + 1], color=EXPR_COLOURS.get(lb, "#777"), lw=0)
            fstrip.set_yticks([])
            fstrip.set_ylabel("fused", rotation=0, ha="right", va="center", fontsize=8)
    axes_all = fig.get_axes()
    if len(t) > 1:
        axes_all[0].set_xlim(np.nanmin(t), np.nanmax(edges) if expr_cols else np.nanmax(t))
    axes_all[-1].set_xlabel("time in video (s)")
    fig.tight_layout()
    return _png(fig)


# -- the page -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px} table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f5f5f5}
.muted{color:#666;font-size:13px} .warn{background:#fff4e5;border:1px solid #f0b45b;padding:6px 10px;font-size:13px}
img{max-width:100%;display:block;margin:6px 0}
"""


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _segments(df, track: int) -> str:
    """Dominant expression over the whole track (argmax of the mean probability, DESIGN.md)."""
    cols = [c for c in df.columns if c.startswith("expr_")]
    if not cols:
        return ""
    mean = df.loc[df["face_id"] == track, cols].mean()
    if mean.isna().all():
        return ""
    return f"dominant over the track: <b>{html.escape(str(mean.idxmax())[5:])}</b> ({mean.max():.2f})"


def _cam_section(cam: str, data: CamData | None, df, info: dict) -> str:
    parts = [f"<h2>Camera {html.escape(cam)}</h2>"]
    results = data.results if data else []
    rows: list[tuple[str, Any]] = []
    if info:
        rows += [("source", info.get("uri", "")), ("frames analysed", info.get("frames", "")),
                 ("frames with a face", info.get("frames_with_face", "")), ("fps (whole run)", info.get("fps", "")),
                 ("dropped", info.get("dropped", "")), ("decode errors", info.get("decode_errors", "")),
                 ("end", info.get("end", ""))]
        if info.get("error"):
            rows.append(("error", info["error"]))
    if results:
        first, last = results[0], results[-1]
        rows.append(("duration in video (s)", f"{_t(last, first['t_capture_ns']):.2f}"))
        models = first.get("models") or {}
        rows += [(f"model for {k}", f"{v.get('name')} ({v.get('kind')})"
                  + (f"; not measured (null): {', '.join(v['unsupported'])}" if v.get("unsupported") else ""))
                 for k, v in models.items()]
        if data is not None and data.windows:
            wm = data.windows[0].get("models") or {}
            rows += [(f"fused {k} (windows)", f"{v.get('name')} ({v.get('kind')}), {len(data.windows)} windows")
                     for k, v in wm.items()]
        untrained = [f"{k} ({v.get('name')})" for k, v in models.items() if v.get("kind") == "untrained"]
        if data is not None and data.windows:
            untrained += [f"fused {k} ({v.get('name')})" for k, v in (data.windows[0].get("models") or {}).items()
                          if v.get("kind") == "untrained"]
        lost = [e for e in (data.eos if data else [])]
        if lost:
            rows.append(("sessions ended", ", ".join(f"{e.get('sid')}: {e.get('reason')}" for e in lost)))
    parts.append(_table(rows))
    if results and untrained:
        parts.append(f'<p class="warn">Untrained output(s): {html.escape(", ".join(untrained))}. Their values are '
                     "random until the model is given a checkpoint (<code>auflow train</code> / distill); do not "
                     "read them as findings.</p>")
    if results:
        parts.append("<h3>Faces per frame</h3>" + _img(plot_faces_per_frame(results), f"faces per frame, {cam}"))
    if data is not None:
        b64 = plot_fps_latency(data)
        if b64:
            parts.append("<h3>Throughput and latency</h3>" + _img(b64, f"fps and latency, {cam}"))
    if df is not None and len(df):
        counts = df.loc[df["face_id"] >= 0, "face_id"].value_counts()
        tracks = [int(t) for t, n in counts.items() if n >= MIN_TRACK_FRAMES]
        shown = tracks[:MAX_TRACKS]
        parts.append(f"<h3>Tracks</h3><p class='muted'>{len(counts)} track(s); "
                     f"{len(shown)} shown (the longest, at least {MIN_TRACK_FRAMES} frames).</p>")
        track_rows = [(f"track {t}", f"{int(counts[t])} frames, {float(df.loc[df['face_id'] == t, 'timestamp'].min()):.2f}"
                       f"–{float(df.loc[df['face_id'] == t, 'timestamp'].max()):.2f} s") for t in counts.index[:50]]
        parts.append(_table(track_rows))
        for t in sorted(shown):
            parts.append(f"<h3>Track {t}</h3><p class='muted'>{_segments(df, t)}</p>")
            parts.append(_img(plot_track(df, t, fused_points(data, t)), f"track {t}, {cam}"))
    elif not results:
        parts.append("<p class='muted'>No results for this camera.</p>")
    return "\n".join(parts)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` (default ``<run_dir>/report.html``) and return its path."""
    try:
        import matplotlib
        import pandas  # noqa: F401 - read_results needs it
    except ImportError as exc:
        raise ReportError(f"auflow report needs matplotlib and pandas ({exc.name} is missing): "
                          "pip install matplotlib pandas") from None
    matplotlib.use("Agg")  # no display; must precede pyplot's import
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a run directory (auflow run --out DIR writes one)")
    summary, cams = load_run(run_dir)
    try:
        df_all = read_results(run_dir)
    except AuflowError as exc:
        if not cams:
            raise ReportError(f"no results in {run_dir}: {exc}") from None
        df_all = None
    names = sorted(set(cams) | set(summary.get("streams", {})) | (set(df_all["cam"]) if df_all is not None else set()))
    if not names:
        raise ReportError(f"no results in {run_dir} (expected <cam>.jsonl, .csv or .parquet)")
    sections = []
    for cam in names:
        df = df_all[df_all["cam"] == cam] if df_all is not None else None
        sections.append(_cam_section(cam, cams.get(cam), df, summary.get("streams", {}).get(cam, {})))
    head = _table([("run directory", run_dir.resolve()), ("cameras", len(names)),
                   ("wall time (s)", summary.get("wall_s", "?"))])
    failed = summary.get("failed") or {}
    if failed:
        head += "<p class='warn'>Sources that never ran: " + html.escape("; ".join(f"{k}: {v}" for k, v in failed.items())) + "</p>"
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>auflow report: "
            f"{html.escape(run_dir.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>auflow report: {html.escape(run_dir.name)}</h1>{head}{''.join(sections)}"
            "<p class='muted'>Written by <code>auflow report</code>. AU values are probabilities (0–1); "
            "expression labels are auflow's canonical ones.</p></body></html>")
    out = Path(out) if out is not None else run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def run_report(out_console, run_dir: Path, out: Path | None) -> Path:
    path = build_report(run_dir, out)
    out_console.print(f"report: {path}", highlight=False)
    return path
