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
