"""``auflow subscribe``: the live stream as a table or JSON lines, with gap reports."""

from __future__ import annotations

import json

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _table(latest: dict[str, dict], gaps: dict[str, int], status: dict[str, dict]) -> Table:
    t = Table(title="auflow live", title_justify="left")
    for c in ("camera", "seq", "frame", "faces", "expression", "top AUs", "state", "fps out", "gaps"):
        t.add_column(c)
    for cam in sorted(set(latest) | set(status)):
        m, s = latest.get(cam, {}), status.get(cam, {})
        faces = m.get("faces", [])
        expr = au = ""
        if faces:
            f = faces[0]
            if f.get("expr"):
                k = max(f["expr"], key=f["expr"].get)
                expr = f"{k} {f['expr'][k]:.2f}"
            if f.get("au"):
                top = sorted(f["au"].items(), key=lambda kv: -kv[1])[:3]
                au = " ".join(f"{k}:{v:.2f}" for k, v in top)
        t.add_row(cam, str(m.get("seq", "")), str(m.get("frame", "")), str(len(faces)), expr, au,
                  s.get("state", ""), str(s.get("fps_out", "")), str(gaps.get(cam, 0)))
    return t


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
                    console.print(f"[yellow]gap: {msg.gap} result(s) lost before {msg.header.get('cam')} seq {msg.header.get('seq')}[/]")
                print(json.dumps(msg.header, separators=(",", ":")), flush=True)
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
