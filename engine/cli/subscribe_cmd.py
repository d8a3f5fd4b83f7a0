"""``auflow subscribe``: the live stream as a table or JSON lines, with gap reports."""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text


def _probs(values) -> dict[str, float]:
    """The numeric entries of an ``au``/``expr`` map: unsupported outputs are null on the wire, and a
    hostile publisher may send anything else; neither may break the table."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _cell(value, limit: int = 40) -> Text:
    """A wire value as plain text (never rich markup), cut to ``limit`` characters."""
    text = "" if value is None else str(value)
    return Text(text if len(text) <= limit else text[:limit - 1] + "…")


def _table(latest: dict[str, dict], gaps: dict[str, int], status: dict[str, dict]) -> Table:
    t = Table(title="auflow live", title_justify="left")
    for c in ("camera", "seq", "frame", "faces", "expression", "top AUs", "state", "fps out", "gaps"):
        t.add_column(c)
    for cam in sorted(set(latest) | set(status)):
        m, s = latest.get(cam, {}), status.get(cam, {})
        faces = m.get("faces") if isinstance(m.get("faces"), list) else []
        expr = au = ""
        f = faces[0] if faces and isinstance(faces[0], dict) else {}
        if probs := _probs(f.get("expr")):
            k = max(probs, key=probs.get)
            expr = f"{k} {probs[k]:.2f}"
        if probs := _probs(f.get("au")):
            top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
            au = " ".join(f"{k}:{v:.2f}" for k, v in top)
        t.add_row(_cell(cam), _cell(m.get("seq")), _cell(m.get("frame")), str(len(faces)), _cell(expr), _cell(au),
                  _cell(s.get("state")), _cell(s.get("fps_out")), str(gaps.get(cam, 0)))
    return t


def _jsonable(obj):
    """What ``json.dumps`` cannot write, made writable: bytes as hex, non-finite floats as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    if isinstance(obj, dict):
        return {k if isinstance(k, (str, int, float, bool)) or k is None else str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def json_line(header: dict) -> str:
    """One message as one line of strict JSON, whatever a publisher put in it."""
    try:
        return json.dumps(header, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(header), separators=(",", ":"), allow_nan=False, default=str)


def run_subscribe(out: Console, console: Console, endpoints: list[str], topics: list[str] | None,
                  json_lines: bool, timeout: float | None, count: int | None, *,
                  curve_server_key: str | None = None, curve_client_key_file: str | None = None) -> None:
    from ..wire.subscriber import Subscriber

    sub = Subscriber(endpoints, topics=topics, curve_server_key=curve_server_key, curve_client_key_file=curve_client_key_file)
    n = 0
    latest: dict[str, dict] = {}
    status: dict[str, dict] = {}
    gaps: dict[str, int] = {}
    try:
        if json_lines:
            for msg in sub.messages(timeout_s=timeout):
                if msg.gap:
                    console.print(Text(f"gap: {msg.gap} result(s) lost before {msg.header.get('cam')} seq "
                                       f"{msg.header.get('seq')}", style="yellow"))
                print(json_line(msg.header), flush=True)
                n += 1
                if count and n >= count:
                    break
        else:
            with Live(_table(latest, gaps, status), console=out, refresh_per_second=4) as live:
                for msg in sub.messages(timeout_s=timeout):
                    h = msg.header
                    cam = str(h.get("cam"))
                    gaps[cam] = gaps.get(cam, 0) + msg.gap
                    if h.get("type") == "result":
                        latest[cam] = h
                    elif h.get("type") in ("status", "eos"):
                        status[cam] = {**status.get(cam, {}), **h, **({"state": "ended"} if h["type"] == "eos" else {})}
                    live.update(_table(latest, gaps, status))
                    n += 1
                    if count and n >= count:
                        break
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    if sub.garbage:
        console.print(f"[yellow]{sub.garbage} malformed message(s) skipped[/]")
