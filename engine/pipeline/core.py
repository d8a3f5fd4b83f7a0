"""The run: sources → face stage → analyzer → publisher and sinks, wired by bounded queues.

Threads, one role each:
- per stream, a *decode* thread (PyAV) and a *face* thread (detect, track, align);
- one *analyzer* thread shared by all streams (dynamic batches across streams);
- the calling thread *publishes*: it numbers results per (cam, sid), sends them on ZeroMQ and to
  the sinks, and emits a `status` heartbeat per camera every `status_interval_s`.

Files are lossless: every queue is bounded and a full queue makes decode wait. A stream that
fails (cannot open, breaks mid-way) ends with one error line and an `eos` with reason "error";
the other streams go on. ``stop()`` (SIGINT/SIGTERM) ends every stream at its next frame; what is
in flight is still analysed, published and written, then every stream gets its `eos`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..analyzer.core import Analyzer
from ..config import RunConfig
from ..errors import AuflowError
from ..plugin import Plugin, build
from ..registry import SINKS
from ..sources.core import Source
from ..types import FaceCrops
from ..wire import format as wire
from .face_stage import FaceStage

log = logging.getLogger(__name__)


@dataclass
class EndOfStream:
    """Travels behind a stream's last frame through every queue."""

    cam: str
    sid: str
    reason: str  # "end" | "error" | "interrupted"
    error: str | None = None


@dataclass
class StreamStats:
    cam: str
    uri: str
    sid: str = ""
    state: str = "connecting"
    total_frames: int | None = None
    frames_in: int = 0
    frames_out: int = 0
    faces: int = 0
    frames_with_face: int = 0
    dropped: int = 0
    decode_errors: int = 0
    last_seq: int = -1
    error: str | None = None
    reason: str | None = None
    t_start: float = field(default_factory=time.perf_counter)
    t_end: float | None = None
    tracks: dict[int, int] = field(default_factory=dict)  # track id → frames it appears in
    # for the fps figures of the status heartbeat
    _last_in: int = 0
    _last_out: int = 0
    _last_t: float = field(default_factory=time.perf_counter)

    @property
    def fps(self) -> float:
        end = self.t_end or time.perf_counter()
        return self.frames_out / max(end - self.t_start, 1e-9)


class Pipeline:
    def __init__(self, cfg: RunConfig, sources: list[Source], run_dir: str | Path,
                 on_result: Callable[[StreamStats], None] | None = None,
                 on_publish_ready: Callable[[str], None] | None = None) -> None:
        if not sources:
            raise AuflowError("no sources to run")
        cams = [s.cam for s in sources]
        if len(set(cams)) != len(cams):
            raise AuflowError(f"two sources share a camera id ({', '.join(cams)}): give each a distinct name")
        self.cfg = cfg
        self.sources = sources
        self.run_dir = Path(run_dir)
        self.on_result = on_result
        self.on_publish_ready = on_publish_ready
        self.stats = {s.cam: StreamStats(s.cam, s.uri) for s in sources}
        self._stop = threading.Event()
        self._stream_stop = {s.cam: threading.Event() for s in sources}  # one stream's failure
        qsize = cfg.source.queue
        self._frames = {s.cam: queue.Queue(maxsize=qsize) for s in sources}
        self._crops: queue.Queue = queue.Queue(maxsize=qsize * len(sources))
        self._results: queue.Queue = queue.Queue(maxsize=qsize * len(sources))
        self.analyzer = Analyzer(cfg.analyzer)
        self.face_stages = {s.cam: FaceStage(cfg.face) for s in sources}
        self.sinks: list[Plugin] = [build(SINKS, s.name, s.options, f"sinks.{i}") for i, s in enumerate(cfg.sinks)]
        self.publisher = None
        self._threads: list[threading.Thread] = []
        self._fatal: BaseException | None = None

    # ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every stream to end at its next frame (what is in flight is still delivered)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _put(self, q: queue.Queue, item) -> None:
        """Blocking put that still notices a fatal error elsewhere (so nothing waits forever)."""
        while True:
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._fatal is not None:
                    raise RuntimeError("pipeline failed") from self._fatal

    # -- per stream ------------------------------------------------------------------------------
    def _decode(self, src: Source) -> None:
        st = self.stats[src.cam]
        q = self._frames[src.cam]
        reason, error = "end", None
        try:
            src.open()
            st.sid, st.total_frames, st.state = src.sid, src.total_frames, "live"
            for pkt in src.frames():
                self._put(q, pkt)
                st.frames_in += 1
                if self._stream_stop[src.cam].is_set():
                    break  # the face stage failed: it reports the error
                if self._stop.is_set():
                    reason = "interrupted"
                    break
        except AuflowError as e:
            reason, error = "error", str(e)
        except Exception as e:  # noqa: BLE001 - one broken stream must not end the others
            log.exception("stream %s failed", src.cam)
            reason, error = "error", f"{src.uri}: {type(e).__name__}: {e}"
        finally:
            st.decode_errors = src.decode_errors
            src.close()
            self._put(q, EndOfStream(src.cam, st.sid, reason, error))

    def _faces(self, cam: str) -> None:
        stage = self.face_stages[cam]
        q = self._frames[cam]
        failed: str | None = None
        while True:
            item = q.get()
            if isinstance(item, EndOfStream):
                if failed and item.reason != "error":
                    item.reason, item.error = "error", failed
                stage.on_stream_end()
                self._put(self._crops, item)
                return
            if failed:
                continue  # drain the decoder so it can finish
            try:
                self._put(self._crops, stage.process(item))
            except Exception as e:  # noqa: BLE001
                log.exception("face stage of %s failed", cam)
                failed = f"{cam}: face stage failed: {type(e).__name__}: {e}"
                self._stream_stop[cam].set()

    # -- shared ----------------------------------------------------------------------------------
    def _analyze(self) -> None:
        cfg = self.cfg.analyzer
        open_streams = len(self.sources)
        pending: list[FaceCrops] = []
        n_faces = 0
        t_first = 0.0
        try:
            while open_streams:
                timeout = None
                if pending:
                    timeout = max(0.0, t_first + cfg.max_wait_ms / 1e3 - time.perf_counter())
                try:
                    item = self._crops.get(timeout=timeout) if timeout is None or timeout > 0 else self._crops.get_nowait()
                except queue.Empty:
                    item = None
                if isinstance(item, FaceCrops):
                    if not pending:
                        t_first = time.perf_counter()
                    pending.append(item)
                    n_faces += len(item.faces)
                    if n_faces < cfg.batch and not self._crops.empty():
                        continue
                    if n_faces < cfg.batch and (time.perf_counter() - t_first) * 1e3 < cfg.max_wait_ms:
                        continue
                if pending:
                    for res in self.analyzer.run(pending):
                        self._put(self._results, res)
                    pending, n_faces = [], 0
                if isinstance(item, EndOfStream):
                    open_streams -= 1
                    self._put(self._results, item)
        except BaseException as e:  # noqa: BLE001 - a model failure ends the run; say so downstream
            self._fatal = e
            log.exception("analyzer failed")
            self._results.put(e)

    # -- the publishing thread -------------------------------------------------------------------
    def _emit(self, msg: dict) -> None:
        if self.publisher is not None:
            self.publisher.send(msg)
        for s in self.sinks:
            s.write(msg)

    def _status(self, st: StreamStats) -> None:
        now = time.perf_counter()
        dt = max(now - st._last_t, 1e-9)
        fps_in = (st.frames_in - st._last_in) / dt
        fps_out = (st.frames_out - st._last_out) / dt
        st._last_in, st._last_out, st._last_t = st.frames_in, st.frames_out, now
        queues = {"frames": self._frames[st.cam].qsize(), "crops": self._crops.qsize(), "results": self._results.qsize()}
        self._emit(wire.status_message(st.cam, st.sid, st.state, round(fps_in, 2), round(fps_out, 2), st.dropped,
                                       st.decode_errors, queues, st.last_seq))

    def run(self) -> dict[str, StreamStats]:
        """Run to the end of every stream (or ``stop()``); returns per-camera statistics."""
        pub_cfg = self.cfg.publish
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started: list = []
        try:
            if pub_cfg.endpoint:
                from ..wire.publisher import Publisher

                self.publisher = Publisher(pub_cfg.endpoint, hwm=pub_cfg.hwm)
                self.publisher.start()
                started.append(self.publisher)
                if self.on_publish_ready is not None:
                    self.on_publish_ready(self.publisher.bound_endpoint)
            for s in self.sinks:
                s.start(self.run_dir)
                started.append(s)
            self.analyzer.start()
            started.append(self.analyzer)
            for fs in self.face_stages.values():
                fs.start()
                started.append(fs)
            if self.publisher is not None and pub_cfg.wait_subscribers:
                log.info("waiting for %d subscriber(s) on %s", pub_cfg.wait_subscribers, self.publisher.bound_endpoint)
                if not self.publisher.wait_for_subscribers(pub_cfg.wait_subscribers, pub_cfg.wait_timeout_s):
                    log.warning("no subscriber after %.0f s: starting anyway", pub_cfg.wait_timeout_s)
            self._start_threads()
            self._publish_loop()
        except BaseException as e:
            self._fatal = self._fatal or e
            raise
        finally:
            self._stop.set()
            for t in self._threads:
                t.join(timeout=5.0)
            for obj in reversed(started):
                try:
                    obj.stop()
                except Exception:  # noqa: BLE001 - keep closing the rest
                    log.exception("error while stopping %s", type(obj).__name__)
        return self.stats

    def _start_threads(self) -> None:
        for src in self.sources:
            for target, args, role in ((self._decode, (src,), "decode"), (self._faces, (src.cam,), "faces")):
                t = threading.Thread(target=target, args=args, name=f"auflow-{role}-{src.cam}", daemon=True)
                self._threads.append(t)
        self._threads.append(threading.Thread(target=self._analyze, name="auflow-analyzer", daemon=True))
        for t in self._threads:
            t.start()

    def _publish_loop(self) -> None:
        interval = self.cfg.publish.status_interval_s
        open_streams = len(self.sources)
        seqs: dict[tuple[str, str], int] = {}
        next_status = time.perf_counter()
        while open_streams:
            now = time.perf_counter()
            if now >= next_status:
                for st in self.stats.values():
                    if st.state != "ended" and st.sid:  # no session yet: nothing to report under
                        self._status(st)
                next_status = now + interval
            try:
                item = self._results.get(timeout=max(0.0, next_status - time.perf_counter()))
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, EndOfStream):
                open_streams -= 1
                st = self.stats[item.cam]
                st.state, st.reason, st.t_end = "ended", item.reason, time.perf_counter()
                st.error = st.error or item.error
                if not item.sid:
                    continue  # the stream never opened: there is no session to end
                self._status(st)
                self._emit(wire.eos_message(item.cam, item.sid, item.reason, st.last_seq))
                for s in self.sinks:
                    if hasattr(s, "flush"):
                        s.flush()
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
            self._emit(wire.result_message(item, seq))
            if self.on_result is not None:
                self.on_result(st)
