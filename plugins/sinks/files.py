"""What the text-file sinks share: one file per camera in the run directory, appended to (a resumed
batch keeps what the earlier run wrote), flushed every ``flush_every`` records and at every ``eos``."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext


class PerCameraFileSink(Plugin):
    """Subclasses set ``suffix`` and write through :meth:`_open` and :meth:`_written`."""

    suffix = ".txt"

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.run_dir: Path | None = None
        self.paths: dict[str, Path] = {}
        self._files: dict[str, IO[str]] = {}
        self._pending = 0

    def start(self, ctx: StartContext = CPU) -> None:
        self.run_dir = ctx.need_run_dir(type(self).__name__)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _open(self, cam: str, **open_kw) -> tuple[IO[str], bool]:
        """The camera's file, opened for appending on first use; and whether it was empty then."""
        f = self._files.get(cam)
        if f is not None:
            return f, False
        path = self.paths[cam] = self.run_dir / f"{cam}{self.suffix}"
        fresh = not path.exists() or path.stat().st_size == 0
        f = self._files[cam] = open(path, "a", encoding="utf-8", **open_kw)
        return f, fresh

    def _written(self, records: int, message: dict) -> None:
        self._pending += records
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
