"""The result publisher, the pipeline's calling thread: number results per (cam, sid), fuse windows,
send every message on ZeroMQ and to the sinks, emit the ``status`` heartbeats and each session's
``eos``, start the next files of a batch; a sink that cannot write ends the run cleanly.

A mixin of :class:`~auflow.engine.pipeline.core.Pipeline`: it shares the pipeline's queues and stream
statistics, which :mod:`.core` creates.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time

from ..plugin import Plugin
from ..redaction import redact_text
from ..types import EndOfStream
from ..wire import format as wire
from .batching import FINISH
from .stats import StreamStats

log = logging.getLogger("auflow.engine.pipeline.core")  # the run's log lines keep their logger name


class ResultPublishing:
    def _emit(self, msg: dict) -> None:
        if self.publisher is not None:
            self.publisher.send(msg)
        for s in self.sinks:
            if id(s) not in self._failed_sinks:
                try:
                    s.write(msg)
                except OSError as e:
                    self._sink_failed(s, e)

    def _flush_sinks(self) -> None:
        for s in self.sinks:
            if hasattr(s, "flush") and id(s) not in self._failed_sinks:
                try:
                    s.flush()
                except OSError as e:
                    self._sink_failed(s, e)

    def _sink_failed(self, sink: Plugin, e: OSError) -> None:
        """A sink that cannot write (disk full, file too large, folder gone) ends the run cleanly: every stream
        stops, what is in flight is still published, and every session's eos carries this error."""
        self._failed_sinks.add(id(sink))
        if self._run_error is None:
            self._run_error = (f"sink {type(sink).__name__} cannot write in {self.run_dir}: "
                               f"{e.strerror or e}; free space there and run again")
            log.error("%s; ending every stream", self._run_error)
        self.stop()

    def _status(self, st: StreamStats, sid: str | None = None, counters=None) -> None:
        fps_in, fps_out = st.rates(time.perf_counter())
        sid = sid or st.sid
        c = counters if counters is not None else st.session
        queues = {"frames": c.queue, "crops": self._crops.qsize(), "results": self._results.qsize()}
        last_seq = self._seqs.get((st.cam, sid), 0) - 1
        # `dropped` counts every deliberately skipped frame (docs/protocol.md); `decimated`: those analyze_fps skipped
        self._emit(wire.status_message(st.cam, sid, st.state, round(fps_in, 2), round(fps_out, 2), c.dropped + c.decimated,
                                       c.decode_errors, queues, last_seq, decimated=c.decimated, frames=c.frames))

    def _publish_loop(self) -> None:
        interval = self.cfg.publish.status_interval_s
        seqs = self._seqs
        next_status = time.perf_counter()
        self._schedule()
        while self._active or self._pending:
            if self._stop.is_set() and not self._stop_forwarded:
                self._stop_forwarded = True
                for h in list(self.handles.values()):
                    h.request_stop()
                self._schedule()  # drops files not yet started
            now = time.perf_counter()
            if now >= next_status:
                for cam in self._active:
                    st = self.stats[cam]
                    if st.sid:  # no session yet: nothing to report under
                        self._status(st)
                next_status = now + interval
            try:
                item = self._results.get(timeout=max(0.0, next_status - time.perf_counter()))
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, EndOfStream):
                self._end_session(item)
                continue
            meta = item.meta
            key = (meta.cam, meta.sid)
            seq = seqs.get(key, 0)
            seqs[key] = seq + 1
            st = self.stats[meta.cam]
            st.last_seq, st.frames_out = seq, st.frames_out + 1
            n = len(item.faces)
            st.faces += n
            st.frames_with_face += n > 0
            for tid in item.faces.track.tolist():
                if tid >= 0:
                    st.tracks[tid] = st.tracks.get(tid, 0) + 1
            item.latency_ms["total"] = (time.time_ns() - meta.t_capture_ns) / 1e6
            windows: list[dict] = []
            if self.temporal is not None:  # takes the per-frame features out of the result
                item, windows = self.temporal.push(item, seq, st.live)
            self._emit(wire.result_message(item, seq))
            for w in windows:
                self._emit(w)
            if self.on_result is not None:
                self.on_result(st)
        self._inbox.put(FINISH)

    def _end_session(self, item: EndOfStream) -> None:
        st = self.stats[item.cam]
        # stopped because the analyzer or a sink failed; after a sink failed, a stream that reached its end did
        # not end cleanly either (its later results are not in that sink)
        if self._run_error is not None and (item.reason == "interrupted" or (item.reason == "end" and self._failed_sinks)):
            item = dataclasses.replace(item, reason="error", error=self._run_error)
        if item.error:  # FFmpeg's words may repeat the URL: no password goes on the wire, in a sink or the summary
            item = dataclasses.replace(item, error=redact_text(item.error))
        if item.final:
            if item.reason == "error":  # a live stream that recovered from an error has none to report
                st.error = item.error
            st.state, st.reason, st.t_end = "ended", item.reason, time.perf_counter()
            self._active.discard(item.cam)
        if item.sid:
            last_seq = self._seqs.get((item.cam, item.sid), 0) - 1
            c = item.counters
            extra = {"decode_errors": c.decode_errors, "dropped": c.dropped + c.decimated, "decimated": c.decimated,
                     "frames": c.frames}
            if item.error:
                extra["error"] = item.error
            if item.final:
                self._status(st, item.sid, c)
            if self.temporal is not None:  # the session's tracks: final windows flushed before its eos
                for w in self.temporal.end_session(item.cam, item.sid):
                    self._emit(w)
            self._emit(wire.eos_message(item.cam, item.sid, item.reason, last_seq, **extra))
            self._flush_sinks()
        if item.final:
            if self.on_stream_end is not None:
                self.on_stream_end(st)
            self._schedule()


__all__ = ["ResultPublishing"]
