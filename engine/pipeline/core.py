"""The run: stream workers → analyzer → publisher and sinks, wired by bounded queues.

- per stream, a *worker* (a spawned process by default, see :mod:`.worker`) decodes,
  reconnects, decimates and runs the face stage, and sends back only aligned crops; in this process
  a *collector* thread per stream reads them, follows the stream's sessions and restarts a live
  stream's worker when it crashes (``source.reconnect.max_restarts``);
- one *analyzer* thread shared by all streams (dynamic batches across streams);
- the calling thread *publishes*: it numbers results per (cam, sid), sends them on ZeroMQ and to
  the sinks, emits a ``status`` heartbeat per camera every ``status_interval_s``, an ``eos`` for
  every session that ends, and starts the next files of a batch (``source.parallel`` at a time).

The parts, each in its file: :mod:`.supervision` (start, collect and restart stream workers),
:mod:`.batching` (dynamic batches), :mod:`.publishing` (numbering, windows, status, eos, sinks); this
module wires them (queues, the analyzer and shared face stage threads, start and teardown).

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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..analyzer.core import Analyzer
from ..config import RunConfig
from ..contracts import FaceTap
from ..errors import AuflowError
from ..plugin import Plugin, StartContext, build
from ..registry import SINKS
from ..sources.core import Source
from ..types import EndOfStream, FaceCrops, FramePacket
from .batching import FINISH, gather
from .face_stage import FaceStage
from .publishing import ResultPublishing
from .stats import StreamStats
from .streams import WorkerHandle
from .supervision import StreamSupervision

log = logging.getLogger(__name__)

__all__ = ["EndOfStream", "Pipeline", "StreamStats"]


class Pipeline(StreamSupervision, ResultPublishing):
    def __init__(self, cfg: RunConfig, sources: list[Source], run_dir: str | Path,
                 on_result: Callable[[StreamStats], None] | None = None,
                 on_publish_ready: Callable[[str], None] | None = None,
                 on_stream_end: Callable[[StreamStats], None] | None = None,
                 on_stream_start: Callable[[StreamStats], None] | None = None,
                 taps: Sequence[FaceTap] = ()) -> None:
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
        self.taps = tuple(taps)  # see contracts.FaceTap: each analysed frame with its crops, and each session's end
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
            from .batched_face_stage import BatchedFaceStage

            self.face_stage = BatchedFaceStage(cfg.face, device=cfg.face.device)
            self._frames: queue.Queue = queue.Queue(maxsize=self._depth * width)
        self._inbox = self._crops if self.face_stage is None else self._frames  # what the collectors fill
        self._results: queue.Queue = queue.Queue(maxsize=cfg.source.queue * width)
        self.temporal = None  # windows per track (engine/temporal.py): its encoder runs with the analyzer's models
        if cfg.temporal.enabled:
            from ..temporal import TemporalStage

            self.temporal = TemporalStage(cfg.temporal, cfg.analyzer.batch, cfg.analyzer.models)
        self.analyzer = Analyzer(cfg.analyzer, encoder=self.temporal.encoder if self.temporal is not None else None)
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

    # -- shared ----------------------------------------------------------------------------------
    def _analyze(self) -> None:
        cfg = self.cfg.analyzer
        batches = gather(self._crops, cfg.batch, cfg.max_wait_ms, FaceCrops, lambda it: len(it.faces))
        try:
            for items, control in batches:
                if items:
                    for item, res in zip(items, self.analyzer.run(items)):
                        for tap in self.taps:
                            tap.on_analyzed(item, res)
                        self._put(self._results, res)
                if isinstance(control, EndOfStream):
                    self.analyzer.forget(control.cam)  # its people's AU baselines (a new session starts afresh)
                    self._put(self._results, self._tap_end(control))
                elif control is FINISH:
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

    def _tap_end(self, end: EndOfStream) -> EndOfStream:
        """The taps see a session's end; one that fails there ends that stream with its error."""
        for tap in self.taps:
            try:
                tap.on_stream_end(end)
            except Exception as e:  # noqa: BLE001 - this stream's end says why; the others go on
                log.exception("%s failed at the end of %s", type(tap).__name__, end.cam)
                end = dataclasses.replace(end, reason="error", error=f"{end.cam}: {type(tap).__name__} failed: {type(e).__name__}: {e}")
        return end

    def _drain_after_run_error(self, batches: Iterator[tuple[list, object]]) -> None:
        """After the analyzer failed: the streams' ends still reach the publisher, each with the error (a
        stream whose source reached its end meanwhile did not end cleanly either); their frames in flight
        are not analysed, so not published, and not counted as processed. ``batches`` is the generator the
        failure left: the control item it had already taken off the queue (an eos after the failed batch)
        is not lost."""
        for _, control in batches:
            if control is FINISH:
                return
            if isinstance(control, EndOfStream):
                self.analyzer.forget(control.cam)
                if control.reason != "error":
                    control = dataclasses.replace(control, reason="error", error=self._run_error)
                self._put(self._results, self._tap_end(control))

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
                elif control is FINISH:
                    self._put(self._crops, FINISH)
                    return
        except BaseException as e:
            self._fatal = e
            log.exception("face stage failed")
            self._results.put(e)

    def _shared_batch(self, frames: list[FramePacket], failed: dict[str, str]) -> list:
        stage = self.face_stage
        try:
            out = stage.process_batch(frames)
        except Exception:  # noqa: BLE001 - find the frame(s) at fault: each alone
            out = []
            for f in frames:
                if f.meta.cam in failed:
                    continue
                try:
                    out += stage.process_batch([f])
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
        return [o.to_host() for o in out]

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
                s.start(StartContext(run_dir=Path(self.run_dir)))
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
                        q.put_nowait(FINISH)  # a face stage or analyzer still waiting for input ends too
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
