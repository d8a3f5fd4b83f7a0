"""JSON Lines: every wire message of a camera, one JSON object per line, in ``<run>/<cam>.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from auflow.engine.plugin import Plugin, PluginConfig
from auflow.engine.registry import SINKS


@SINKS.register("jsonl")
class JsonlSink(Plugin):
    class Config(PluginConfig):
        types: list[str] = ["result", "window", "status", "eos"]  # message types to keep
        flush_every: int = 50  # lines between flushes (eos and stop always flush)

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.run_dir: Path | None = None
        self._files: dict[str, IO[str]] = {}
        self._pending = 0
        self.paths: dict[str, Path] = {}

    def start(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write(self, message: dict) -> None:
        if message.get("type") not in self.config.types:
            return
        cam = str(message.get("cam", "unknown"))
        f = self._files.get(cam)
        if f is None:
            path = self.run_dir / f"{cam}.jsonl"
            self.paths[cam] = path
            f = self._files[cam] = open(path, "a", encoding="utf-8")
        f.write(json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n")
        self._pending += 1
        if self._pending >= self.config.flush_every or message.get("type") == "eos":
            self.flush()

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()
        self._pending = 0

    def stop(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
