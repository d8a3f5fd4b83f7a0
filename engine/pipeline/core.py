"""The run: stream workers → analyzer → publisher and sinks, wired by bounded queues.

- per stream, a *worker* (a spawned process by default, see :mod:`.worker`) decodes,
  reconnects, decimates and runs the face stage, and sends back only aligned crops; in this process
  a *collector* thread per stream reads them, follows the stream's sessions and restarts a live
  stream's worker when it crashes (``source.reconnect.max_restarts``);
- one *analyzer* thread shared by all streams (dynamic batches across streams);
- the calling thread *publishes*: it numbers results per (cam, sid), sends them on ZeroMQ and to
  the sinks, emits a ``status`` heartbeat per camera every ``status_interval_s``, an ``eos`` for
  every session that ends, and starts the next files of a batch (``source.parallel`` at a time).

Files are lossless: every queue is bounded and a full queue makes decode wait. A stream that fails
(cannot open, breaks, its worker dies) ends with one error line and an ``eos`` with reason
"error"; the other streams go on. ``stop()`` (SIGINT/SIGTERM) ends every stream at its next frame;
what is in flight is still analysed, published and written, then every session gets its ``eos``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..analyzer.core import Analyzer
from ..config import RunConfig
from ..errors import AuflowError
from ..plugin import Plugin, build
from ..redaction import redact_text
from ..registry import SINKS
from ..sources.core import Source
from ..sources.session import Backoff
from .worker import WorkerSpec
from ..types import FaceCrops, FramePacket
from ..wire import format as wire
from .face_stage import FaceStage
from ..types import EndOfStream
from .stats import StreamStats
from .streams import WorkerHandle

log = logging.getLogger(__name__)

_FINISH = object()  # tells the face and analyzer threads that no stream will send anything more


def gather(q: queue.Queue, batch: int, max_wait_ms: float, kind: type | tuple[type, ...],
           weight: Callable[[object], int] = lambda _: 1) -> Iterator[tuple[list, object]]:
    """Dynamic batches from ``q``: ``(items, None)`` once ``batch`` is reached (by ``weight``), the queue
    runs dry with the oldest item waited ``max_wait_ms``, or another kind of item comes; ``([], item)``
    for each item not of ``kind`` (a control item), after the batch before it — order is kept."""
    pending: list = []
    n, t_first = 0, 0.0
    while True:
        timeout = None
        if pending:
            timeout = max(0.0, t_first + max_wait_ms / 1e3 - time.perf_counter())
        try:
            item = q.get(timeout=timeout) if timeout is None or timeout > 0 else q.get_nowait()
        except queue.Empty:
            item = None
        if isinstance(item, kind):
            if not pending:
                t_first = time.perf_counter()
            pending.append(item)
            n += weight(item)
            if n < batch and not q.empty():
                continue
            if n < batch and (time.perf_counter() - t_first) * 1e3 < max_wait_ms:
                continue
        if pending:
            yield pending, None
            pending, n = [], 0
        if item is not None and not isinstance(item, kind):
            yield [], item

__all__ = ["EndOfStream", "Pipeline", "StreamStats"]


class Pipeline:
    def __init__(self, cfg: RunConfig, sources: list[Source], run_dir: str | Path,
                 on_result: Callable[[StreamStats], None] | None = None,
                 on_publish_ready: Callable[[str], None] | None = None,
                 on_stream_end: Callable[[StreamStats], None] | None = None,
                 on_stream_start: Callable[[StreamStats], None] | None = None) -> None:
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
        self.on_stream_end = on_stream_end
        self.on_stream_start = on_stream_start
        self.stats = {s.cam: StreamStats(s.cam, s.uri, live=s.live, total_frames=s.total_frames) for s in sources}
        self._stop = threading.Event()
        n_live = sum(s.live for s in sources)
        width = max(n_live + min(cfg.source.parallel, len(sources) - n_live), 1)
        # Items queued per stream between its worker and the stage that batches them. Files: source.queue, so
        # decoding runs ahead (lossless, backpressure). A run of live streams only (cameras, or files played with
        # source.realtime): a few, so that when the pipeline falls behind the workers drop the oldest frames
        # (counted) instead of a deep queue serving stale ones seconds late.
        all_live = cfg.source.realtime or n_live == len(sources)
        self._depth = cfg.source.live_queue + 2 if all_live else cfg.source.queue
        self._crops: queue.Queue = queue.Queue(maxsize=self._depth * width)
        self.face_stage = None  # face.device set: one face stage for every stream, fed by self._frames
        if cfg.face.device is not None:
            from .gpu_face_stage import GpuFaceStage

            self.face_stage = GpuFaceStage(cfg.face, device=cfg.face.device)
            self._frames: queue.Queue = queue.Queue(maxsize=self._depth * width)
        self._inbox = self._crops if self.face_stage is None else self._frames  # what the collectors fill
        self._results: queue.Queue = queue.Queue(maxsize=cfg.source.queue * width)
        self.analyzer = Analyzer(cfg.analyzer)
        self.temporal = None  # windows per track (engine/temporal.py): its encoder runs with the analyzer's models
        if cfg.temporal.enabled:
            from ..temporal import TemporalStage

            self.temporal = TemporalStage(cfg.temporal, cfg.analyzer.batch, cfg.analyzer.models)
            self.analyzer.plugins.append(self.temporal.encoder)
        if self.face_stage is None:
            FaceStage(cfg.face)  # builds (no I/O) to fail here, once, on a bad face config; workers build their own
        self.sinks: list[Plugin] = [build(SINKS, s.name, s.options, f"sinks.{i}") for i, s in enumerate(cfg.sinks)]
        self.publisher = None
        # files wait their turn (source.parallel at a time); live streams all start at once
        self._pending: collections.deque[Source] = collections.deque(s for s in sources if not s.live)
        self._live = [s for s in sources if s.live]
        self._active: set[str] = set()
        self.handles: dict[str, WorkerHandle] = {}
        self._threads: list[threading.Thread] = []
        self._fatal: BaseException | None = None
        self._run_error: str | None = None  # the analyzer or a sink failed: every stream ends with this error
        self._failed_sinks: set[int] = set()  # sinks that could not write (a full disk): written to no more
        self._stop_forwarded = False
        self._seqs: dict[tuple[str, str], int] = {}  # results sent per (cam, sid)

    # ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every stream to end at its next frame (what is in flight is still delivered).

        Safe from a signal handler: only sets a flag; the publishing thread tells the workers."""
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

    # -- streams -----------------------------------------------------------------------------------
    def _start_stream(self, src: Source) -> None:
        spec = WorkerSpec(src.uri, src.cam, self.cfg.source.model_dump(mode="json"), self.cfg.face.model_dump(mode="json"),
                          logging.getLogger().getEffectiveLevel())
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

    # -- shared ----------------------------------------------------------------------------------
    def _analyze(self) -> None:
        cfg = self.cfg.analyzer
        kind: type | tuple[type, ...] = FaceCrops
        if self.face_stage is not None:  # its crops may stay on its device (GpuFaceCrops)
            from .gpu_face_stage import GpuFaceCrops

            kind = (FaceCrops, GpuFaceCrops)
        batches = gather(self._crops, cfg.batch, cfg.max_wait_ms, kind, lambda it: len(it.faces))
        try:
            for items, control in batches:
                if items:
                    for res in self.analyzer.run(items):
                        self._put(self._results, res)
                if isinstance(control, EndOfStream):
                    self.analyzer.forget(control.cam)  # its people's AU baselines (a new session starts afresh)
                    self._put(self._results, control)
                elif control is _FINISH:
                    return
        except Exception as e:  # a model that raises (a CUDA error, a bug in a user's model): no stream can go on
            self._run_error = f"analyzer failed: {type(e).__name__}: {' '.join(str(e).split())}"[:500]
            log.error("%s; ending every stream", self._run_error)
            log.debug("analyzer failure", exc_info=True)
            self.stop()
            self._drain_after_run_error(batches)
        except BaseException as e:
            self._fatal = e
            log.exception("analyzer failed")
            self._results.put(e)

    def _drain_after_run_error(self, batches: Iterator[tuple[list, object]]) -> None:
        """After the analyzer failed: the streams' ends still reach the publisher, each with the error (a
        stream whose source reached its end meanwhile did not end cleanly either); their frames in flight
        are not analysed, so not published, and not counted as processed. ``batches`` is the generator the
        failure left: the control item it had already taken off the queue (an eos after the failed batch)
        is not lost."""
        for _, control in batches:
            if control is _FINISH:
                return
            if isinstance(control, EndOfStream):
                self.analyzer.forget(control.cam)
                if control.reason != "error":
                    control = dataclasses.replace(control, reason="error", error=self._run_error)
                self._put(self._results, control)

    def _shared_faces(self) -> None:
        """face.device set: frames of every stream → one batched face stage → the analyzer's queue.

        A batch that fails is run again frame by frame, so one stream's bad frame ends that stream
        only (its worker is stopped; its end says why) and the others' frames go on."""
        cfg = self.cfg.face
        stage = self.face_stage
        failed: dict[str, str] = {}  # cam → why its face stage failed
        try:
            for frames, control in gather(self._frames, cfg.batch, cfg.max_wait_ms, FramePacket):
                frames = [f for f in frames if f.meta.cam not in failed]
                if frames:
                    for crops in self._shared_batch(frames, failed):
                        self._put(self._crops, crops)
                if isinstance(control, EndOfStream):
                    stage.on_stream_end(control.cam)
                    if control.cam in failed and control.final:
                        c = control
                        control = EndOfStream(c.cam, c.sid, "error", failed.pop(c.cam), True, c.counters)
                    self._put(self._crops, control)
                elif control is _FINISH:
                    self._put(self._crops, _FINISH)
                    return
        except BaseException as e:
            self._fatal = e
            log.exception("face stage failed")
            self._results.put(e)

    def _shared_batch(self, frames: list[FramePacket], failed: dict[str, str]) -> list:
        import torch

        stage = self.face_stage
        dev = stage.device

        def tensor(pkt: FramePacket) -> torch.Tensor:  # (H, W, 3) host BGR → (3, H, W) on the stage's device
            img = pkt.image
            return img if isinstance(img, torch.Tensor) else torch.from_numpy(img).to(dev, non_blocking=True).permute(2, 0, 1)

        try:
            out = stage.process([(f.meta, tensor(f)) for f in frames], [f.latency_ms for f in frames])
        except Exception:  # noqa: BLE001 - find the frame(s) at fault: each alone
            out = []
            for f in frames:
                if f.meta.cam in failed:
                    continue
                try:
                    out += stage.process([(f.meta, tensor(f))], [f.latency_ms])
                except Exception as e:  # noqa: BLE001 - ends this stream only, with its reason
                    log.exception("face stage failed on %s frame %d", f.meta.cam, f.meta.frame)
                    failed[f.meta.cam] = f"{f.meta.cam}: face stage failed: {type(e).__name__}: {e}"
                    handle = self.handles.get(f.meta.cam)
                    if handle is not None:
                        handle.request_stop()
        # a failed stream's frames before the bad one are delivered; the crops stay on the stage's device
        # when every model takes tensors (the analyzer moves them to its own device), else go to the host
        if self.analyzer.takes_tensors:
            return out
        return [o.to_face_crops() for o in out]

    # -- the publishing thread -------------------------------------------------------------------
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

    def run(self) -> dict[str, StreamStats]:
        """Run to the end of every stream (or ``stop()``); returns per-camera statistics."""
        pub_cfg = self.cfg.publish
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started: list = []
        try:
            if pub_cfg.endpoint:
                from ..wire.publisher import Publisher

                self.publisher = Publisher(pub_cfg.endpoint, hwm=pub_cfg.hwm,
                                           curve_secret_key_file=pub_cfg.curve_secret_key_file)
                self.publisher.start()
                started.append(self.publisher)
                if self.on_publish_ready is not None:
                    self.on_publish_ready(self.publisher.bound_endpoint)
            for s in self.sinks:
                s.start(self.run_dir)
                started.append(s)
                if hasattr(s, "set_sources"):  # sinks that re-read the pixels (annotated video)
                    s.set_sources({src.cam: src.uri for src in self.sources if not src.live})
            if self.face_stage is not None:
                self.face_stage.start()
                started.append(self.face_stage)
                faces = threading.Thread(target=self._shared_faces, name="auflow-faces", daemon=True)
                self._threads.append(faces)
                faces.start()
            self.analyzer.start()
            started.append(self.analyzer)
            if self.publisher is not None and pub_cfg.wait_subscribers:
                log.info("waiting for %d subscriber(s) on %s", pub_cfg.wait_subscribers, self.publisher.bound_endpoint)
                if not self.publisher.wait_for_subscribers(pub_cfg.wait_subscribers, pub_cfg.wait_timeout_s):
                    log.warning("no subscriber after %.0f s: starting anyway", pub_cfg.wait_timeout_s)
            analyzer = threading.Thread(target=self._analyze, name="auflow-analyzer", daemon=True)
            self._threads.append(analyzer)
            analyzer.start()
            for src in self._live:
                self._start_stream(src)
            self._publish_loop()
        except BaseException as e:
            self._fatal = self._fatal or e
            raise
        finally:
            self._stop.set()
            if self._fatal is not None:
                for q in {id(self._inbox): self._inbox, id(self._crops): self._crops}.values():
                    try:
                        q.put_nowait(_FINISH)  # a face stage or analyzer still waiting for input ends too
                    except queue.Full:
                        pass
            for h in list(self.handles.values()):
                h.request_stop()
            for t in self._threads:
                t.join(timeout=5.0)
            for h in list(self.handles.values()):
                h.close(grace_s=5.0 if self._fatal is not None else 30.0)
            for obj in reversed(started):
                try:
                    obj.stop()
                except Exception:
                    if id(obj) in self._failed_sinks:  # its error is the run's, already reported
                        log.debug("error while stopping %s", type(obj).__name__, exc_info=True)
                    else:
                        log.exception("error while stopping %s", type(obj).__name__)
        return self.stats

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
        self._inbox.put(_FINISH)

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
