"""auflow's runtime: sources, pipeline, analyzer, wire format, CLI.

``auflow.engine.subscribe`` (the wire-format v1 subscriber) is imported lazily, so importing the
engine costs nothing until it is used.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "subscribe":
        from .wire.subscriber import subscribe

        return subscribe
    raise AttributeError(f"module 'auflow.engine' has no attribute {name!r}")
