"""JSON Lines: every wire message of a camera, one JSON object per line, in ``<run>/<cam>.jsonl``."""

from __future__ import annotations

import json

from auflow.engine.plugin import PluginConfig
from auflow.engine.registry import SINKS

from .files import PerCameraFileSink


@SINKS.register("jsonl")
class JsonlSink(PerCameraFileSink):
    suffix = ".jsonl"

    class Config(PluginConfig):
        types: list[str] = ["result", "window", "status", "eos"]  # message types to keep
        flush_every: int = 50  # lines between flushes (eos and stop always flush)

    def write(self, message: dict) -> None:
        if message.get("type") not in self.config.types:
            return
        f, _ = self._open(str(message.get("cam", "unknown")))
        f.write(json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n")
        self._written(1, message)
