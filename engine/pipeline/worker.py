"""A stream's worker: decode and find faces next to the decoder, send back only the small crops.

One worker per stream, in its own *spawned* process (``source.workers: process``, the default) or
a thread (``thread``). Inside, two threads:

- *decode* runs :func:`~auflow.engine.sources.session.run_sessions` (connect, reconnect, read), applies
  ``analyze_fps`` (and, with ``source.realtime``, holds each frame of a file until it is due: a
  :class:`~auflow.engine.sources.session.Pacer`)
  and puts frames into a :class:`FrameBuffer` — which, for files, makes decoding wait when full
  (lossless) and, for live sources and realtime files, drops the oldest frame and counts it;
- the worker's main thread runs the face stage (detect, track, align) on each frame and sends
  ``FaceCrops`` (aligned crops of a few KB each, never the frame) to the parent — unless
  ``face.device`` is set: then one face stage in the parent serves every stream (batched on that
  device) and the worker sends it the decoded frames (``frame`` messages).

Messages to the parent are :class:`~auflow.engine.types.WorkerMessage` ``(kind, payload, counters)``:
``state`` (a StateChange), ``crops`` (FaceCrops), ``frame`` (a FramePacket, when face.device is set),
``end`` (a SessionEnd), ``log`` ((level, logger, text)), ``fatal`` (an error line: the worker cannot run
at all) and ``done`` (always last, sent from ``finally``).

It lives in ``pipeline/`` (it runs the face stage); ``sources/`` only opens and decodes, and imports
nothing of the pipeline.
"""

from __future__ import annotations

import collections
import logging
import queue as queue_mod
import signal
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import AuflowError
from ..sources.core import Source
from ..sources.session import Decimator, Pacer, run_sessions
from ..types import FramePacket, SessionCounters, SessionEnd, StateChange, WorkerMessage

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """Everything a worker needs, as plain data (it crosses to a spawned process)."""

    uri: str
    cam: str
    source: dict  # SourceSection, dumped
    face: dict  # FaceSection, dumped
    log_level: int = logging.WARNING
    start_frame: int = 0  # frames before it are decoded, not analysed (Source.start_frame)


class FrameBuffer:
    """Frames (and the control items between them) from the decode thread to the face stage.

    ``drop_oldest=False`` (files): ``put_frame`` waits while ``maxsize`` frames are queued.
    ``drop_oldest=True`` (live): ``put_frame`` never waits; when full it discards the oldest frame
    of the current session and counts it in ``counters.dropped``. Control items (state changes,
    session ends) are never dropped and keep their place among the frames.
    """

    def __init__(self, maxsize: int, drop_oldest: bool, counters: SessionCounters) -> None:
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.counters = counters
        self._items: collections.deque = collections.deque()
        self._frames = 0
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return self._frames

    def put_frame(self, pkt: FramePacket, stop: threading.Event) -> None:
        with self._cond:
            while self._frames >= self.maxsize:
                if self.drop_oldest:
                    if self._drop_one(pkt.meta.sid):
                        continue
                    break  # only an older session's frames are queued: let them through
                if stop.is_set():
                    return
                self._cond.wait(0.2)
            self._items.append(pkt)
            self._frames += 1
            self._cond.notify_all()

    def _drop_one(self, sid: str) -> bool:
        for i, item in enumerate(self._items):
            if isinstance(item, FramePacket) and item.meta.sid == sid:
                del self._items[i]
                self._frames -= 1
                self.counters.dropped += 1
                return True
        return False

    def put_control(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue_mod.Empty
            item = self._items.popleft()
            if isinstance(item, FramePacket):
                self._frames -= 1
            self._cond.notify_all()
            return item


class _QueueLogHandler(logging.Handler):
    """Log records of a worker process, forwarded to the parent (dropped, never waited for, when the queue is full)."""

    def __init__(self, out, cam: str) -> None:
        super().__init__()
        self.out, self.cam = out, cam

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.out.put_nowait(WorkerMessage("log", (record.levelno, record.name, text), None))
        except Exception:  # noqa: BLE001 - a full queue or a closing pipe must not break decoding
            pass


def _send(out, msg: WorkerMessage) -> None:
    """Blocking put: a full queue is backpressure (the parent drains it until ``done``)."""
    while True:
        try:
            out.put(msg, timeout=1.0)
            return
        except queue_mod.Full:
            continue


def frames_device(source, face) -> str | None:
    """Where this stream's NVDEC frames stay, or None (downloaded to the host): the shared face stage's CUDA
    device, when ``source.device_frames`` is on and the worker is a thread of the pipeline's process (a
    spawned worker's frames must cross to it through host memory)."""
    dev = face.device
    if not source.device_frames or source.workers != "thread" or dev is None or not str(dev).startswith("cuda"):
        return None
    return str(dev)


class StreamWorker:
    def __init__(self, spec: WorkerSpec, out, stop) -> None:
        from ..config import SourceSection

        self.spec = spec
        self.out = out
        self.stop = stop
        self.cfg = SourceSection.model_validate(spec.source)
        self.counters = SessionCounters()
        self.source: Source | None = None
        self.buffer: FrameBuffer | None = None

    def _snapshot(self) -> SessionCounters:
        c = self.counters.copy()
        c.queue = len(self.buffer) if self.buffer is not None else 0
        return c

    def run(self) -> None:
        """The worker's whole life; always ends with a ``done`` message."""
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which decides
            msg = str(e) if isinstance(e, AuflowError) else f"{self.spec.cam}: {type(e).__name__}: {e}"
            if not isinstance(e, AuflowError):
                log.exception("worker of %s failed", self.spec.cam)
            _send(self.out, WorkerMessage("fatal", msg, self._snapshot()))
        finally:
            _send(self.out, WorkerMessage("done", None, self._snapshot()))

    def _run(self) -> None:
        from ..config import FaceSection
        from ..sources import make_source
        from .face_stage import FaceStage

        face = FaceSection.model_validate(self.spec.face)
        src = make_source(self.spec.uri, self.cfg, cam=self.spec.cam, frames_device=frames_device(self.cfg, face))
        self.source = src
        # face.device set: the pipeline's one shared face stage takes the frames; this worker only decodes
        stage = FaceStage(face) if face.device is None else None
        if stage is not None:
            stage.start()
        try:
            live = src.live or self.cfg.realtime  # a file played in real time is live for the buffer: the newest kept
            self.buffer = FrameBuffer(self.cfg.live_queue if live else self.cfg.queue, live, self.counters)
            decoder = threading.Thread(target=self._decode, args=(src,), name=f"auflow-decode-{self.spec.cam}", daemon=True)
            decoder.start()
            try:
                self._faces(stage)
            finally:
                decoder.join()
        finally:
            if stage is not None:
                stage.stop()

    # -- the decode thread ----------------------------------------------------------------------
    def _decode(self, src: Source) -> None:
        buf = self.buffer
        decimator = Decimator(self.cfg.analyze_fps)
        pacer: Pacer | None = None  # source.realtime on a file: made when the session is live (its rate known)
        final_sent = False
        error: str | None = None
        try:
            for item in run_sessions(src, self.cfg.reconnect, self.stop):
                if isinstance(item, FramePacket):
                    self.counters.frames = item.meta.frame + 1
                    self.counters.decode_errors = src.decode_errors
                    if item.meta.frame < self.spec.start_frame:
                        continue
                    if not decimator.keep(item.meta):
                        self.counters.decimated += 1
                        continue
                    if pacer is not None:
                        item = pacer.wait(item, self.stop)
                    buf.put_frame(item, self.stop)
                elif isinstance(item, StateChange):
                    if item.sid != self.counters.sid:  # a new session: its own counts
                        self.counters.reset(item.sid)
                    if item.state == "live":
                        decimator = Decimator(self.cfg.analyze_fps, src.fps)
                        if self.cfg.realtime and not src.live:
                            pacer = Pacer(src.name, src.fps)
                    buf.put_control((item, self._snapshot()))
                elif isinstance(item, SessionEnd):
                    self.counters.decode_errors = src.decode_errors
                    buf.put_control((item, self._snapshot()))
                    final_sent = item.final
        except AuflowError as e:  # a clear error of this stream (source.realtime on a source with no rate)
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a bug in decoding ends this stream only, with its reason
            log.exception("decoding %s failed", self.spec.cam)
            error = f"{src.name}: decoding failed: {type(e).__name__}: {e}"
        finally:
            if not final_sent:  # every stream ends with a final SessionEnd, whatever happened
                end = SessionEnd(self.counters.sid or "-", "error" if error else "interrupted", error)
                buf.put_control((end, self._snapshot()))

    # -- the worker's main thread: the face stage ----------------------------------------------------
    def _faces(self, stage) -> None:
        """Run the face stage on each frame and send the crops; with no stage (face.device set), send the frames."""
        failed: str | None = None
        while True:
            item = self.buffer.get()
            if isinstance(item, FramePacket):
                if stage is None:
                    _send(self.out, WorkerMessage("frame", item, self._snapshot()))
                    continue
                if failed:
                    continue
                try:
                    crops = stage.process(item)
                except Exception as e:  # noqa: BLE001 - ends this stream only, with its reason
                    log.exception("face stage of %s failed", self.spec.cam)
                    failed = f"{self.spec.cam}: face stage failed: {type(e).__name__}: {e}"
                    self.stop.set()
                    continue
                _send(self.out, WorkerMessage("crops", crops, self._snapshot()))
                continue
            event, counters = item
            if isinstance(event, StateChange):
                _send(self.out, WorkerMessage("state", event, counters))
            elif isinstance(event, SessionEnd):
                if stage is not None:
                    stage.on_stream_end()
                if failed:
                    event = SessionEnd(event.sid, "error", failed, final=True)
                _send(self.out, WorkerMessage("end", event, counters))
                if event.final:
                    return


def _exit_when_orphaned(parent_pid: int) -> None:
    """A worker whose parent died (SIGKILL, crash) has nobody to send to: it exits at once."""
    import os
    import time

    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def worker_main(spec: WorkerSpec, out, stop, parent_pid: int) -> None:
    """Entry point of a spawned worker process."""
    # Ctrl-C reaches the whole process group: the parent decides, and tells us through `stop`
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [_QueueLogHandler(out, spec.cam)]
    root.setLevel(spec.log_level)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="auflow-orphan-watch", daemon=True).start()
    StreamWorker(spec, out, stop).run()
