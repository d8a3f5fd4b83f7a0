"""Summaries of a result stream: dominant expression per segment.

"Dominant expression over a segment" is the argmax of the mean probability over it (DESIGN.md),
the mean taken over every face of every frame in the segment.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def result_time(msg: dict) -> float | None:
    pts, tb = msg.get("pts"), msg.get("time_base")
    if pts is None or not tb:
        return None
    return pts * tb[0] / tb[1]


def dominant(expr_rows: list[dict[str, float]]) -> tuple[str | None, float]:
    """(label, mean probability) of the argmax of the mean over ``expr_rows``."""
    if not expr_rows:
        return None, 0.0
    labels = list(expr_rows[0])
    mean = np.mean([[row.get(k, 0.0) for k in labels] for row in expr_rows], axis=0)
    i = int(np.argmax(mean))
    return labels[i], float(mean[i])


def dominant_over_frames(results: Iterable[dict], first: int, last: int, output: str = "expr") -> tuple[str | None, float]:
    """Dominant label of ``output`` over result messages with ``first <= frame <= last``."""
    rows = [f[output] for m in results if first <= m["frame"] <= last for f in m.get("faces", []) if output in f]
    return dominant(rows)


def expression_timeline(results: list[dict], segment_s: float = 2.0, output: str = "expr") -> list[dict]:
    """One row per ``segment_s`` of video time: start, end, frames, faces, dominant label, its mean p."""
    buckets: dict[int, list] = {}
    frames: dict[int, int] = {}
    for m in results:
        t = result_time(m)
        if t is None:
            continue
        b = int(t // segment_s)
        frames[b] = frames.get(b, 0) + 1
        buckets.setdefault(b, []).extend(f[output] for f in m.get("faces", []) if output in f)
    rows = []
    for b in sorted(frames):
        label, p = dominant(buckets.get(b, []))
        rows.append({"start_s": b * segment_s, "end_s": (b + 1) * segment_s, "frames": frames[b],
                     "faces": len(buckets.get(b, [])), "dominant": label, "p": round(p, 3)})
    return rows


#: an AU counts as active in a segment when its mean over the segment's faces is at least this
ACTIVE_AU = 0.3


def au_activity(results: list[dict], segment_s: float = 2.0, output: str = "au", threshold: float = ACTIVE_AU,
                top: int = 4) -> dict[int, str]:
    """Per ``segment_s`` bucket (its index): the AUs whose mean over the segment's faces is ≥ ``threshold``, strongest
    first, at most ``top`` (e.g. ``"AU12 0.71, AU25 0.55"``; ``"-"`` when none). Null values (AUs the model cannot
    measure) are left out; sides (``AU12_L``) are not listed beside their AU."""
    sums: dict[int, dict[str, list[float]]] = {}
    for m in results:
        t = result_time(m)
        if t is None:
            continue
        b = int(t // segment_s)
        for f in m.get("faces", []):
            for au, v in (f.get(output) or {}).items():
                if v is not None and "_" not in au:
                    sums.setdefault(b, {}).setdefault(au, []).append(float(v))
    out = {}
    for b, per in sums.items():
        means = sorted(((sum(v) / len(v), au) for au, v in per.items()), reverse=True)
        active = [f"{au} {m:.2f}" for m, au in means if m >= threshold][:top]
        out[b] = ", ".join(active) or "-"
    return out


def fused_timeline(windows: list[dict], results: list[dict], segment_s: float = 2.0) -> dict[int, tuple[str | None, float]]:
    """Per ``segment_s`` bucket: the dominant fused expression of the ``window`` messages whose described result
    (``at_seq``) falls in it, by (cam, sid, seq) → that result's time."""
    when = {(m["cam"], m["sid"], m["seq"]): result_time(m) for m in results}
    buckets: dict[int, list] = {}
    for w in windows:
        t = when.get((w.get("cam"), w.get("sid"), w.get("at_seq")))
        if t is not None and w.get("expr"):
            buckets.setdefault(int(t // segment_s), []).append(w["expr"])
    return {b: dominant(rows) for b, rows in buckets.items()}

