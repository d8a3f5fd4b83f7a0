"""Stream supervision, the pipeline's side of its workers: start each stream's worker (files
``source.parallel`` at a time, live streams at once), collect its messages in order (crops or frames,
session states and ends) and restart a crashed live worker with the one
:class:`~auflow.engine.sources.session.Backoff` (``source.reconnect``).

A mixin of :class:`~auflow.engine.pipeline.core.Pipeline`: it shares the pipeline's queues and stream
statistics, which :mod:`.core` creates.
"""

from __future__ import annotations

import logging
import threading
import time

from ..sources.core import Source
from ..sources.session import Backoff
from ..types import EndOfStream
from .streams import WorkerHandle
from .worker import WorkerSpec

log = logging.getLogger("auflow.engine.pipeline.core")  # the run's log lines keep their logger name


class StreamSupervision:
    def _start_stream(self, src: Source) -> None:
        spec = WorkerSpec(src.uri, src.cam, self.cfg.source.model_dump(mode="json"), self.cfg.face.model_dump(mode="json"),
                          logging.getLogger().getEffectiveLevel(), src.start_frame)
        handle = WorkerHandle(spec, self.cfg.source.workers, self._depth)
        self.handles[src.cam] = handle
        self._active.add(src.cam)
        st = self.stats[src.cam]
        st.t_start = st._last_t = time.perf_counter()
        handle.start()
        t = threading.Thread(target=self._collect, args=(src.cam,), name=f"auflow-collect-{src.cam}", daemon=True)
        self._threads.append(t)
        t.start()
        if self.on_stream_start is not None:
            self.on_stream_start(st)

    def _schedule(self) -> None:
        """Start files while fewer than ``source.parallel`` run; after stop(), start nothing more."""
        if self._stop.is_set():
            while self._pending:
                st = self.stats[self._pending.popleft().cam]
                st.state, st.reason = "ended", "not started"
            return
        running_files = sum(1 for cam in self._active if not self.stats[cam].live)
        while self._pending and running_files < self.cfg.source.parallel:
            self._start_stream(self._pending.popleft())
            running_files += 1

    def _collect(self, cam: str) -> None:
        try:
            self._collect_stream(cam)
        except RuntimeError:
            if self._fatal is None:  # else: the run is failing and says why elsewhere
                raise

    def _collect_stream(self, cam: str) -> None:
        """Read one stream's worker: forward crops and session ends in order, follow its state,
        restart a crashed live worker."""
        st = self.stats[cam]
        policy = self.cfg.source.reconnect
        while True:
            handle = self.handles[cam]
            final, open_sid, problem, crashed = False, None, None, False
            for kind, payload, counters in handle.messages():
                if kind == "log":
                    level, name, text = payload
                    logging.getLogger(name).log(level, "%s" if text.startswith(cam) else f"{cam}: %s", text)
                    continue
                if kind in ("crops", "frame"):
                    if counters.sid == st.sid:
                        st.session = counters
                    self._put(self._inbox, payload)
                elif kind == "state":
                    if payload.sid != st.sid:
                        st.sid, st.session = payload.sid, counters
                    st.state, open_sid = payload.state, payload.sid
                    if payload.state == "live":
                        st.sessions += 1
                elif kind == "end":
                    if counters.sid == st.sid:
                        st.session = counters
                    st.close_session(counters)
                    open_sid = None
                    final = final or payload.final
                    self._put(self._inbox, EndOfStream(cam, payload.sid, payload.reason, payload.error, payload.final, counters))
                elif kind == "fatal":
                    problem = payload
                elif kind == "crashed":
                    crashed, problem = True, f"{cam}: worker process died (exit code {payload})"
            handle.close()
            if final:
                return
            restart = crashed and st.live and st.restarts < policy.max_restarts and not self._stop.is_set()
            log.error("%s%s", problem or f"{cam}: worker ended without a reason", "; restarting it" if restart else "")
            if open_sid is not None or not restart:
                self._put(self._inbox, EndOfStream(cam, open_sid or "", "error", problem, not restart, st.session))
            if not restart:
                return
            st.restarts += 1
            if self._stop.wait(Backoff(policy.initial_s, policy.max_s, policy.jitter).delay(st.restarts)):
                self._put(self._inbox, EndOfStream(cam, "", "interrupted", None, True, st.session))
                return
            self.handles[cam] = WorkerHandle(handle.spec, handle.mode, handle.queue_size)
            self.handles[cam].start()


__all__ = ["StreamSupervision"]
