"""Running a Pipeline in a thread while a test watches every message it publishes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from auflow.engine.config import load_config
from auflow.engine.pipeline.core import Pipeline
from auflow.engine.sources import make_source

FAST = ["publish.endpoint=null", "analyzer.models=[]", "sinks=[]"]


def config(*overrides: str):
    return load_config(None, [*FAST, *overrides])


class WatchedRun:
    """``Pipeline.run()`` in a thread; ``messages`` are the wire dicts it emitted, in order."""

    def __init__(self, cfg, uris: list[str], run_dir: Path) -> None:
        self.sources = [make_source(u, cfg.source) for u in uris]
        for s in self.sources:
            if not s.live:
                s.open()
                s.close()
        self.pipe = Pipeline(cfg, self.sources, run_dir)
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        emit = self.pipe._emit

        def record(msg: dict) -> None:
            with self._lock:
                self.messages.append(msg)
            emit(msg)

        self.pipe._emit = record
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="watched-run", daemon=True)

    def _run(self) -> None:
        try:
            self.pipe.run()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            self.error = e

    def __enter__(self) -> WatchedRun:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> None:
        self.pipe.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the pipeline did not stop"

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float = 30.0, what: str = "") -> dict:
        """The first message (from the start) for which ``pred`` holds; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            msgs = self.snapshot()
            for m in msgs[seen:]:
                if pred(m):
                    return m
            seen = len(msgs)
            if not self.thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what or pred}; error={self.error!r}; last: {self.snapshot()[-5:]}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def child_pids() -> set[int]:
    me = os.getpid()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            pids.add(int(entry))
    return pids
