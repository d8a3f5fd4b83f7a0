"""The parent's side of a stream worker: start it (spawned process or thread), read its messages,
notice when it dies, stop it, and make sure nothing of it is left behind.

Processes are started with the ``spawn`` method, never ``fork``: a forked child would inherit the
parent's threads' locks (ZeroMQ, torch, the logging module) in whatever state they were.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_mod
import threading
import time
from collections.abc import Iterator

from ..types import WorkerMessage
from .worker import StreamWorker, WorkerSpec, worker_main

log = logging.getLogger(__name__)

#: how long a stopped worker may take to finish its in-flight frames before it is terminated
STOP_GRACE_S = 15.0


class WorkerHandle:
    """One run of one stream's worker. ``messages()`` yields the :class:`~auflow.engine.types.WorkerMessage` it
    sends, then ``WorkerMessage("crashed", exit code, None)`` if it ended without its ``done`` message."""

    def __init__(self, spec: WorkerSpec, mode: str, queue_size: int) -> None:
        self.spec = spec
        self.mode = mode
        self.queue_size = queue_size
        self._proc = None
        self._thread: threading.Thread | None = None
        self._queue = None
        self._stop = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self.mode == "process":
            ctx = multiprocessing.get_context("spawn")
            self._queue = ctx.Queue(maxsize=self.queue_size)
            self._stop = ctx.Event()
            self._proc = ctx.Process(target=worker_main, args=(self.spec, self._queue, self._stop, os.getpid()),
                                     name=f"auflow-worker-{self.spec.cam}", daemon=True)
            self._proc.start()
        else:
            self._queue = queue_mod.Queue(maxsize=self.queue_size)
            self._stop = threading.Event()
            worker = StreamWorker(self.spec, self._queue, self._stop)
            self._thread = threading.Thread(target=worker.run, name=f"auflow-worker-{self.spec.cam}", daemon=True)
            self._thread.start()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.is_alive()
        return self._thread is not None and self._thread.is_alive()

    def exitcode(self) -> int | None:
        return self._proc.exitcode if self._proc is not None else None

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def messages(self, poll_s: float = 0.25) -> Iterator[WorkerMessage]:
        while True:
            try:
                msg = self._queue.get(timeout=poll_s)
            except queue_mod.Empty:
                if self.alive():
                    continue
                # dead: what it sent before dying is still in the pipe
                while True:
                    try:
                        msg = self._queue.get(timeout=0.2)
                    except queue_mod.Empty:
                        break
                    yield msg
                    if msg.kind == "done":
                        return
                yield WorkerMessage("crashed", self.exitcode(), None)
                return
            except (EOFError, OSError):  # the pipe broke with the process
                yield WorkerMessage("crashed", self.exitcode(), None)
                return
            yield msg
            if msg.kind == "done":
                return

    def kill(self) -> None:
        """Hard stop (tests: a crashing worker; the pipeline: a worker that does not stop)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Wait for the worker to end (asking it first), terminate it if it will not; free the queue's pipe."""
        self.request_stop()
        if self._proc is not None:
            self._proc.join(grace_s)
            if self._proc.is_alive():
                log.warning("worker of %s did not stop within %.0f s: terminating it", self.spec.cam, grace_s)
                self._proc.terminate()
                self._proc.join(5.0)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join(5.0)
            self._proc.close()
            self._proc = None
            # nothing more will be read: release the pipe now (not whenever the collector runs)
            self._queue.cancel_join_thread()
            self._queue.close()
            for conn in (getattr(self._queue, "_reader", None), getattr(self._queue, "_writer", None)):
                if conn is not None:
                    conn.close()
            self._queue = self._stop = None
        elif self._thread is not None:
            self._thread.join(grace_s)
            if self._thread.is_alive():
                log.warning("worker thread of %s did not stop within %.0f s", self.spec.cam, grace_s)
            self._thread = None
