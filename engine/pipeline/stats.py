"""What the pipeline knows of each stream: its sessions, counts and end (for status, summaries, progress)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..types import EndOfStream, SessionCounters  # noqa: F401 - EndOfStream re-exported (it lives in types)


#: the per-session counts that :class:`StreamStats` sums over a stream's sessions
SESSION_COUNTS = ("frames", "dropped", "decimated", "decode_errors")


def _over_sessions(count: str, doc: str) -> property:
    """A read-only total of the ``count`` of :class:`SessionCounters` over every session of the stream."""
    return property(lambda self: self._total(count), doc=doc)


@dataclass
class StreamStats:
    cam: str
    uri: str
    live: bool = False
    total_frames: int | None = None
    sid: str = ""
    state: str = "connecting"
    frames_out: int = 0
    faces: int = 0
    frames_with_face: int = 0
    last_seq: int = -1
    sessions: int = 0  # sessions that went live
    restarts: int = 0  # worker restarts after crashes
    error: str | None = None
    reason: str | None = None
    t_start: float = field(default_factory=time.perf_counter)
    t_end: float | None = None
    tracks: dict[int, int] = field(default_factory=dict)  # track id → frames it appears in
    #: counts of the current session, and the sums over the sessions that ended
    session: SessionCounters = field(default_factory=SessionCounters)
    closed: SessionCounters = field(default_factory=SessionCounters)
    # for the fps figures of the status heartbeat
    _last_in: int = 0
    _last_out: int = 0
    _last_t: float = field(default_factory=time.perf_counter)
    _last_rates: tuple[float, float] = (0.0, 0.0)

    #: rates are measured over at least this long: a status right after another (a session's end just
    #: after a heartbeat) repeats the last rates instead of dividing a few frames by a few microseconds
    MIN_RATE_WINDOW_S = 0.25

    def rates(self, now: float) -> tuple[float, float]:
        """Frames per second in (``frames_in``) and out since the last measurement, at least
        :attr:`MIN_RATE_WINDOW_S` ago; within that window the previous figures."""
        dt = now - self._last_t
        if dt < self.MIN_RATE_WINDOW_S:
            return self._last_rates
        fps_in = max(0, self.frames_in - self._last_in) / dt
        fps_out = max(0, self.frames_out - self._last_out) / dt
        self._last_in, self._last_out, self._last_t = self.frames_in, self.frames_out, now
        self._last_rates = (fps_in, fps_out)
        return self._last_rates

    def close_session(self, c: SessionCounters | None) -> None:
        if c is not None:
            for name in SESSION_COUNTS:
                setattr(self.closed, name, getattr(self.closed, name) + getattr(c, name))
        self.session = SessionCounters(sid=self.sid)

    def _total(self, name: str) -> int:
        current = getattr(self.session, name) if self.session.sid and self.session.sid == self.sid else 0
        return getattr(self.closed, name) + current

    frames_in = _over_sessions("frames", "Frames decoded over every session (decimated and dropped ones included).")
    dropped = _over_sessions("dropped", "Frames the live queue discarded (downstream was slower), over every session.")
    decimated = _over_sessions("decimated", "Frames skipped on purpose (analyze_fps), over every session.")
    decode_errors = _over_sessions("decode_errors", "Damaged packets/frames and early ends, over every session.")

    @property
    def fps(self) -> float:
        end = self.t_end or time.perf_counter()
        return self.frames_out / max(end - self.t_start, 1e-9)
