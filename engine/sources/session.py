"""Sessions of a stream: connect, read, drop, reconnect — the same state machine for every kind.

:func:`run_sessions` drives a :class:`Source` and yields, in order, what a subscriber must learn:

- ``StateChange(sid, state)`` — ``connecting`` (first attempt), ``live`` (open, frames flow),
  ``reconnecting`` (after a drop, while waiting and retrying);
- each ``FramePacket`` of the live session;
- ``SessionEnd(sid, reason, error, final)`` — ``end`` (the source is over), ``disconnected`` (a
  live source dropped and a new session follows: ``final`` False), ``error`` (gave up),
  ``interrupted`` (stop was asked).

A session id is drawn when a connection *attempt* starts, so ``connecting``/``reconnecting`` can be
reported under it; it stays the same through failed attempts and becomes the session's id once
the stream is live. Every sid that was announced gets its ``SessionEnd``.

Waits between attempts grow exponentially with jitter (``reconnect.initial_s`` doubling up to
``reconnect.max_s``, each varied by ± ``jitter``), and reset once a session delivers a frame.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from ..config import ReconnectSection
from ..errors import SourceError
from ..types import FrameMeta, FramePacket, SessionEnd, StateChange  # noqa: F401 - re-exported
from .core import Source, new_sid

log = logging.getLogger(__name__)


class Backoff:
    """Exponential waits with jitter: attempt 1 waits ``initial_s``, then ×2 per attempt, capped."""

    def __init__(self, initial_s: float = 1.0, max_s: float = 30.0, jitter: float = 0.2, rng: random.Random | None = None) -> None:
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** max(0, attempt - 1))
        return max(0.0, base * (1.0 + self.rng.uniform(-self.jitter, self.jitter)))


def reconnects_on_end(src: Source, policy: ReconnectSection) -> bool:
    """A live stream that *ends* (EOF) is a dropped camera unless it has a known length."""
    if not src.live:
        return False
    if policy.on_end == "auto":
        return not src.finite
    return policy.on_end == "reconnect"


def run_sessions(src: Source, policy: ReconnectSection, stop: threading.Event,
                 backoff: Backoff | None = None) -> Iterator[StateChange | FramePacket | SessionEnd]:
    backoff = backoff or Backoff(policy.initial_s, policy.max_s, policy.jitter)
    sid, state, announced = new_sid(), "connecting", None
    ever_live = False
    failures = 0
    delay = 0.0
    last_error: str | None = None
    try:
        while True:
            if announced != (sid, state):
                announced = (sid, state)
                yield StateChange(sid, state)
            if delay > 0 and stop.wait(delay) or stop.is_set():
                yield SessionEnd(sid, "interrupted", last_error)
                return
            try:
                src.open(sid)
            except SourceError as e:
                failures += 1
                last_error = str(e)
                retry = src.live and (ever_live or policy.retry_first)
                if not retry or (policy.max_attempts is not None and failures >= policy.max_attempts):
                    if retry:
                        last_error = f"gave up after {failures} attempts: {last_error}"
                    yield SessionEnd(sid, "error", last_error)
                    return
                delay = backoff.delay(failures)
                log.warning("%s: %s; retrying in %.1f s (attempt %d)", src.cam, e, delay, failures + 1)
                continue
            ever_live = True
            state = "live"
            announced = (sid, state)
            yield StateChange(sid, state)
            reason, error, got_frame = "end", None, False
            try:
                for pkt in src.frames():
                    if not got_frame:
                        got_frame, failures = True, 0
                    yield pkt
                    if stop.is_set():
                        reason = "interrupted"
                        break
            except SourceError as e:
                reason, error = "disconnected", str(e)
            finally:
                src.close()
            if reason == "interrupted" or (stop.is_set() and reason == "end" and src.live):
                yield SessionEnd(sid, "interrupted", error)
                return
            if reason == "end" and not reconnects_on_end(src, policy):
                yield SessionEnd(sid, "end", None)
                return
            # a live stream dropped: end this session, announce the next one, retry after a wait
            error = error or f"{src.name}: the stream ended"
            failures = 1 if got_frame else failures + 1
            if policy.max_attempts is not None and failures >= policy.max_attempts and not got_frame:
                yield SessionEnd(sid, "error", f"gave up after {failures} attempts: {error}")
                return
            log.warning("%s: %s; reconnecting", src.cam, error)
            yield SessionEnd(sid, "disconnected", error, final=False)
            sid, state, last_error = new_sid(), "reconnecting", error
            delay = backoff.delay(failures)
    finally:
        src.close()


class Decimator:
    """Keeps the first frame of each ``1/fps`` slot of presentation time: the same frames on every run.

    Frames without a timestamp are placed by their index at the stream's nominal rate. A clock that
    jumps backwards (a camera's timestamps wrapping) restarts the slots.
    """

    def __init__(self, fps: float | None, nominal_fps: float | None = None) -> None:
        self.fps = fps
        self.nominal_fps = nominal_fps or fps
        self._t0: float | None = None
        self._last = -1

    def keep(self, meta: FrameMeta) -> bool:
        if self.fps is None:
            return True
        t = meta.timestamp
        if t is None:
            t = meta.frame / (self.nominal_fps or self.fps)
        if self._t0 is None:
            self._t0 = t
        slot = math.floor((t - self._t0) * self.fps + 1e-6)
        if slot < self._last - 1:
            self._t0, self._last, slot = t, -1, 0
        if slot > self._last:
            self._last = slot
            return True
        return False


class Pacer:
    """Holds each frame until its presentation time comes round on the wall clock (``source.realtime``):
    a file played as a camera would deliver it, for replaying a recording as a live stream and for
    measuring live latency.

    The clock starts at the first frame; frame ``i`` is due ``t_i - t_0`` seconds later (its timestamp,
    or ``i / nominal_fps`` when the container gives none). A frame decoded after it was due goes at
    once. Either way its ``t_capture_ns`` becomes the wall time it was due, so frame→publish latency
    counts a decoder that falls behind as a camera's frames waiting would. A clock that jumps back
    restarts the pacing.
    """

    def __init__(self, name: str, nominal_fps: float | None) -> None:
        self.name = name
        self.nominal_fps = nominal_fps
        self._start: tuple[float, int, float] | None = None  # (monotonic, time_ns, stream time) of the first frame
        self._last = -math.inf

    def due(self, meta: FrameMeta) -> tuple[float, int]:
        """(monotonic, wall ns) at which the frame is due."""
        t = meta.timestamp
        if t is None:
            if not self.nominal_fps:
                raise SourceError(f"{self.name}: source.realtime needs a frame rate to play at, and this source "
                                  "gives neither timestamps nor a rate")
            t = meta.frame / self.nominal_fps
        if self._start is None or t < self._last - 1.0:
            self._start = (time.monotonic(), time.time_ns(), t)
        self._last = t
        mono, wall, t0 = self._start
        return mono + (t - t0), wall + round((t - t0) * 1e9)

    def wait(self, pkt: FramePacket, stop: threading.Event) -> FramePacket:
        """The packet, once due (sooner if ``stop`` is set), stamped with the time it was due."""
        mono, wall = self.due(pkt.meta)
        delay = mono - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        return replace(pkt, meta=replace(pkt.meta, t_capture_ns=wall))
