"""Operator metrics: a Prometheus ``/metrics`` endpoint fed from the message stream.

Everything an operator needs is already in the wire messages the pipeline emits (``status``:
fps, drops, decode errors, queue depths, state; ``result``: per-stage latency, faces; ``eos``:
how a session ended), so the pipeline feeds :meth:`EngineMetrics.observe` with each message it
publishes, and nothing else has to know about Prometheus::

    metrics = EngineMetrics()
    metrics.serve(9464)               # http://127.0.0.1:9464/metrics
    for msg in messages:
        metrics.observe(msg)          # result | status | eos | window (ignored)

Each :class:`EngineMetrics` has its own ``CollectorRegistry`` (no process-global state, so two
pipelines or tests never share counters). prometheus-client is an optional dependency:
``pip install prometheus-client``; building an ``EngineMetrics`` without it is a ConfigError.

Metric names (labels: ``cam``, plus ``stage``/``queue``/``reason``/``state`` where shown):

==========================================  =========  ===============================================
``auflow_fps_in{cam}``                      gauge      frames/s decoded (last status)
``auflow_fps_out{cam}``                     gauge      results/s published (last status)
``auflow_frames_dropped_total{cam}``        counter    frames deliberately dropped (live backpressure, decimation)
``auflow_decode_errors_total{cam}``         counter    undecodable packets/frames
``auflow_queue_depth{cam,queue}``           gauge      current depth of each internal queue
``auflow_stream_state{cam,state}``          gauge      1 for the camera's current state, else 0
``auflow_results_total{cam}``               counter    result messages (analysed frames)
``auflow_faces_total{cam}``                 counter    faces in those results
``auflow_last_seq{cam}``                    gauge      seq of the last result of the current session
``auflow_stage_latency_seconds{cam,stage}`` histogram  per-stage latency of each result (``total``: capture to publish)
``auflow_sessions_ended_total{cam,reason}`` counter    sessions ended, by eos reason
==========================================  =========  ===============================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .wire.format import STATES

log = logging.getLogger(__name__)

#: latency buckets in seconds: 1 ms … 30 s (CPU analysis and queueing can take seconds)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EngineMetrics:
    """Prometheus metrics of one engine, updated from wire messages by :meth:`observe`."""

    def __init__(self, registry: Any = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise ConfigError("metrics need prometheus-client: pip install prometheus-client") from None
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.fps_in = Gauge("auflow_fps_in", "Frames per second decoded (last status)", ["cam"], registry=r)
        self.fps_out = Gauge("auflow_fps_out", "Results per second published (last status)", ["cam"], registry=r)
        self.dropped = Counter("auflow_frames_dropped", "Frames deliberately dropped (live backpressure, analyze_fps)",
                               ["cam"], registry=r)
        self.decode_errors = Counter("auflow_decode_errors", "Undecodable packets or frames", ["cam"], registry=r)
        self.queue = Gauge("auflow_queue_depth", "Current depth of an internal queue", ["cam", "queue"], registry=r)
        self.state = Gauge("auflow_stream_state", "1 for the camera's current state", ["cam", "state"], registry=r)
        self.results = Counter("auflow_results", "Result messages (analysed frames)", ["cam"], registry=r)
        self.faces = Counter("auflow_faces", "Faces in result messages", ["cam"], registry=r)
        self.last_seq = Gauge("auflow_last_seq", "seq of the last result of the current session", ["cam"], registry=r)
        self.latency = Histogram("auflow_stage_latency_seconds", "Latency of a pipeline stage per result",
                                 ["cam", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.sessions_ended = Counter("auflow_sessions_ended", "Stream sessions ended, by eos reason",
                                      ["cam", "reason"], registry=r)
        # status carries session totals; counters need the increase since the last status of the session
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None

    # -- feeding ----------------------------------------------------------------------------------

    def observe(self, message: Mapping[str, Any]) -> None:
        """Update the metrics from one wire message (``result``, ``status`` or ``eos``; others ignored).

        Cheap (a few dict lookups per message) and never raises on a malformed message: metrics
        must not take the pipeline down.
        """
        try:
            mtype = message.get("type")
            if mtype == "result":
                self._on_result(message)
            elif mtype == "status":
                self._on_status(message)
            elif mtype == "eos":
                self._on_eos(message)
        except Exception:  # noqa: BLE001 - see docstring
            log.debug("metrics: could not read a %r message", message.get("type"), exc_info=True)

    def _on_result(self, m: Mapping[str, Any]) -> None:
        cam, seq = str(m["cam"]), int(m["seq"])  # read first: a malformed message changes nothing
        self.results.labels(cam).inc()
        self.faces.labels(cam).inc(len(m.get("faces") or ()))
        self.last_seq.labels(cam).set(seq)
        for stage, ms in (m.get("latency_ms") or {}).items():
            if ms is not None:
                self.latency.labels(cam, str(stage)).observe(ms / 1000.0)

    def _on_status(self, m: Mapping[str, Any]) -> None:
        cam, sid = str(m["cam"]), str(m["sid"])
        for gauge, key in ((self.fps_in, "fps_in"), (self.fps_out, "fps_out")):
            if m.get(key) is not None:
                gauge.labels(cam).set(m[key])
        for name, depth in (m.get("queue") or {}).items():
            self.queue.labels(cam, str(name)).set(depth)
        self._set_state(cam, str(m.get("state")))
        self._count_totals(cam, sid, int(m.get("dropped") or 0), int(m.get("decode_errors") or 0))

    def _on_eos(self, m: Mapping[str, Any]) -> None:
        cam, sid = str(m["cam"]), str(m["sid"])
        self.sessions_ended.labels(cam, str(m.get("reason"))).inc()
        if "dropped" in m or "decode_errors" in m:  # the pipeline adds the session's final counts
            self._count_totals(cam, sid, int(m.get("dropped") or 0), int(m.get("decode_errors") or 0))
        with self._lock:
            self._totals.pop((cam, sid), None)

    def _count_totals(self, cam: str, sid: str, dropped: int, decode_errors: int) -> None:
        with self._lock:
            prev_d, prev_e = self._totals.get((cam, sid), (0, 0))
            self._totals[(cam, sid)] = (max(dropped, prev_d), max(decode_errors, prev_e))
        if dropped > prev_d:
            self.dropped.labels(cam).inc(dropped - prev_d)
        if decode_errors > prev_e:
            self.decode_errors.labels(cam).inc(decode_errors - prev_e)

    def _set_state(self, cam: str, state: str) -> None:
        for s in STATES:
            self.state.labels(cam, s).set(1 if s == state else 0)

    # -- serving --------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in Prometheus' text format (what ``/metrics`` returns)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, port: int = 9464, addr: str = "127.0.0.1") -> int:
        """Serve ``http://addr:port/metrics`` from a daemon thread; returns the port (``port=0``: any free one).

        Binds loopback by default, like the publisher: a scraper on another machine needs
        ``addr="0.0.0.0"`` (or a reverse proxy)."""
        from prometheus_client import start_http_server

        if self._server is not None:
            return self.port
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}; choose another port") from None
        log.info("Prometheus metrics on http://%s:%d/metrics", addr, self.port)
        return self.port

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else 0

    def stop(self) -> None:
        """Stop serving (safe to call twice)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            if self._thread is not None:
                self._thread.join(timeout=5.0)
                self._thread = None


__all__ = ["LATENCY_BUCKETS", "EngineMetrics"]
