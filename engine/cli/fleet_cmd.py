"""``auflow fleet up|status|down|proxy FLEET.yaml``: cameras as detached Ray actors (docs/scale-out.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

fleet_app = typer.Typer(no_args_is_help=True, help="Camera fleets on a Ray cluster: one detached actor per camera "
                        "(needs auflow\\[ray]; docs/scale-out.md).")
FleetArg = typer.Argument(..., help="fleet file: name, address, cameras (uri, publish, num_cpus, num_gpus, resources)")


def _consoles():
    from .common import console, out

    return out, console


@fleet_app.command("up")
def fleet_up(fleet: Path = FleetArg,
             timeout: float = typer.Option(120.0, "--timeout", help="seconds to wait for every camera's actor to start")) -> None:
    """Start the fleet's cameras (those already up are kept) and say where each runs."""
    from ..distributed import fleet as fl
    from .common import guarded

    out, _ = _consoles()

    @guarded
    def go() -> None:
        spec = fl.load_fleet(fleet)
        placed = fl.up(spec, timeout)
        for cam, where in placed.items():
            out.print(f"{cam}: up on {where['host']} node {where['node'][:8]} (pid {where['pid']})", highlight=False)

    go()


@fleet_app.command("status")
def fleet_status(fleet: Path = FleetArg,
                 json_out: bool = typer.Option(False, "--json", help="print the registry's records as JSON")) -> None:
    """One line per camera: node, state, fps, drops, restarts, session, endpoint."""
    from ..distributed import fleet as fl
    from .common import guarded

    out, _ = _consoles()

    @guarded
    def go() -> None:
        table = fl.status(fl.load_fleet(fleet))
        if json_out:
            out.print(json.dumps(table, indent=2), highlight=False, markup=False, soft_wrap=True)
            return
        t = Table(title=f"fleet {fleet}", title_justify="left")
        for col in ("camera", "node", "state", "fps", "drops", "restarts", "sid", "last seq", "endpoint"):
            t.add_column(col, justify="right" if col in ("fps", "drops", "restarts", "last seq") else "left")
        for cam, r in table.items():
            state = r["state"] + (f" ({r['error']})" if r.get("error") else "")
            t.add_row(cam, f"{r['host']} {r['node'][:8]}", state, f"{r['fps']:.1f}", str(r["dropped"]),
                      str(r["restarts"]), r["sid"], str(r["last_seq"]), r.get("endpoint") or "-")
        out.print(t)

    go()


@fleet_app.command("down")
def fleet_down(fleet: Path = FleetArg) -> None:
    """Stop every camera cleanly (eos published), then remove its actor and the fleet's registry."""
    from ..distributed import fleet as fl
    from .common import guarded

    out, _ = _consoles()

    @guarded
    def go() -> None:
        removed = fl.down(fl.load_fleet(fleet))
        out.print(f"removed {len(removed)} actor(s): {', '.join(removed) or 'none'}", highlight=False)

    go()


@fleet_app.command("proxy")
def fleet_proxy(fleet: Path = FleetArg,
                publish: Optional[str] = typer.Option(None, "--publish", "-p", help="XPUB endpoint for subscribers "
                                                      "(default: the fleet file's proxy.publish)")) -> None:
    """One endpoint for every camera of the fleet (ZeroMQ XSUB/XPUB), following cameras that move to another node."""
    import signal

    from ..distributed import fleet as fl
    from ..distributed.proxy import FleetProxy
    from .common import guarded, setup_logging

    out, _ = _consoles()
    setup_logging(False)

    @guarded
    def go() -> None:
        proxy = FleetProxy(fl.load_fleet(fleet), publish)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: proxy.stop())
        proxy.run(on_ready=lambda ep: out.print(f"fleet proxy: subscribe to {ep}  (Ctrl-C to stop)", highlight=False))

    go()
