"""Lost ``result`` messages per ``(cam, sid)`` session, counted from their ``seq``: what a subscriber
(engine/wire/subscriber.py) reports as ``Message.gap``."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: open sessions (and cameras with losses) a GapTracker remembers; a fleet has a few hundred
MAX_SESSIONS = 4096

__all__ = ["MAX_SESSIONS", "GapTracker", "SessionGaps"]


@dataclass
class SessionGaps:
    """What one subscriber saw of the results of one ``(cam, sid)`` session."""

    first_seq: int
    last_seq: int
    received: int
    lost: int


class GapTracker:
    """Counts lost ``result`` messages per ``(cam, sid)`` from their ``seq`` (0, 1, 2, … per session).

    ``count_missed_start``: a session first seen at seq k counts the k results before it as lost
    (right for a subscriber started with the run; a viewer joining a live camera late may turn it
    off). ``expects_results(cam)`` says whether this subscriber subscribes to that camera's results;
    an ``eos`` of a session it saw no result of counts its results as lost only then.
    An ``eos`` closes the session's record; totals stay in :attr:`lost` and :attr:`lost_by_cam`.
    At most :data:`MAX_SESSIONS` open sessions and cameras are remembered (the least recently heard are
    forgotten first), so a publisher inventing session or camera ids cannot grow a subscriber's memory.
    """

    def __init__(self, count_missed_start: bool = True, expects_results: Callable[[str], bool] | None = None) -> None:
        self.count_missed_start = count_missed_start
        self.expects_results = expects_results or (lambda cam: True)
        self.sessions: OrderedDict[tuple[str, str], SessionGaps] = OrderedDict()
        #: results lost over all sessions
        self.lost = 0
        self.lost_by_cam: OrderedDict[str, int] = OrderedDict()
        #: sessions forgotten to keep memory bounded (their later results count from scratch)
        self.forgotten = 0

    def update(self, header: dict) -> int:
        """Account for a decoded header; returns the number of results missed just before it."""
        mtype = header.get("type")
        key = (header["cam"], header["sid"])
        if mtype == "result":
            gap = self._on_result(key, header["seq"])
        elif mtype == "eos":
            gap = self._on_eos(key, header["last_seq"])
        else:
            return 0
        if gap:
            self.lost += gap
            self.lost_by_cam[key[0]] = self.lost_by_cam.get(key[0], 0) + gap
            self.lost_by_cam.move_to_end(key[0])
            while len(self.lost_by_cam) > MAX_SESSIONS:
                self.lost_by_cam.popitem(last=False)
            logger.warning("lost %d result message(s) of cam %r session %r before this %s", gap, *key, mtype)
        return gap

    def _on_result(self, key: tuple[str, str], seq: int) -> int:
        s = self.sessions.get(key)
        if s is None:
            gap = max(seq, 0) if self.count_missed_start else 0
            self.sessions[key] = SessionGaps(first_seq=seq, last_seq=seq, received=1, lost=gap)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
                self.forgotten += 1
            return gap
        self.sessions.move_to_end(key)
        expected = s.last_seq + 1
        if seq < expected:
            # one publisher socket keeps order, so this is a publisher bug or a reused sid
            logger.warning("seq of cam %r session %r went back from %d to %d", *key, s.last_seq, seq)
            gap = 0
        else:
            gap = seq - expected
        s.last_seq = seq
        s.received += 1
        s.lost += gap
        return gap

    def _on_eos(self, key: tuple[str, str], last_seq: int) -> int:
        s = self.sessions.pop(key, None)
        if s is None:
            if self.count_missed_start and self.expects_results(key[0]):
                return max(last_seq + 1, 0)
            return 0
        return max(last_seq - s.last_seq, 0)
