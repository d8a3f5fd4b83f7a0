"""The session state machine, backoff and decimation, with a scripted source (no network)."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from auflow.engine.config import ReconnectSection
from auflow.engine.errors import SourceError
from auflow.engine.sources.core import Source
from auflow.engine.sources.session import Backoff, Decimator, SessionEnd, StateChange, run_sessions
from auflow.engine.types import FrameMeta, FramePacket

pytestmark = pytest.mark.timeout(30)


class ScriptedSource(Source):
    """Each open takes the next step: "fail", or (n_frames, "drop" | "end")."""

    kind = "rtsp"

    def __init__(self, script, live=True, finite=False):
        self.live = live
        super().__init__("rtsp://127.0.0.1:9/x", "cam")
        self.script = list(script)
        self._step = None
        self.is_finite = finite
        self.opens = 0
        self.closed = 0

    def open(self, sid=None):
        self.opens += 1
        step = self.script.pop(0)
        if step == "fail":
            raise SourceError("cannot connect (Connection refused)")
        self._step = step
        self._start_session(sid)
        self.finite = self.is_finite

    def frames(self):
        n, how = self._step
        for i in range(n):
            yield FramePacket(FrameMeta(self.cam, self.sid, i, i, (1, 25), 0, 4, 4), np.zeros((4, 4, 3), np.uint8))
        if how == "drop":
            raise SourceError("stream broke")

    def close(self):
        self.closed += 1


class RecordingBackoff(Backoff):
    def __init__(self):
        super().__init__(0.0, 0.0, 0.0)
        self.attempts = []

    def delay(self, attempt):
        self.attempts.append(attempt)
        return 0.0


def events(src, policy=None, stop=None, backoff=None):
    return list(run_sessions(src, policy or ReconnectSection(), stop or threading.Event(), backoff or RecordingBackoff()))


def shape(evs):
    out = []
    for e in evs:
        if isinstance(e, StateChange):
            out.append(e.state)
        elif isinstance(e, SessionEnd):
            out.append(f"end:{e.reason}:{'final' if e.final else 'more'}")
        else:
            out.append("f")
    return out


def test_drop_reconnect_with_new_sid_and_eos_for_the_old():
    src = ScriptedSource([(3, "drop"), "fail", "fail", (2, "drop"), (1, "end")])
    bo = RecordingBackoff()
    evs = events(src, ReconnectSection(on_end="end"), backoff=bo)
    assert shape(evs) == ["connecting", "live", "f", "f", "f", "end:disconnected:more",
                          "reconnecting", "live", "f", "f", "end:disconnected:more",
                          "reconnecting", "live", "f", "end:end:final"]
    sids = [e.sid for e in evs if isinstance(e, SessionEnd)]
    assert len(set(sids)) == 3
    # every frame carries its session's sid, and the reconnecting state is announced under the next sid
    assert {e.meta.sid for e in evs[2:5]} == {sids[0]}
    assert evs[6].sid == sids[1] and evs[6].state == "reconnecting"
    assert bo.attempts == [1, 2, 3, 1]  # the failures in a row grow the wait; a session with frames resets it
    assert src.closed >= 3  # every session that opened was closed


def test_first_connection_fails_at_once_unless_asked_to_retry():
    evs = events(ScriptedSource(["fail", (1, "end")]))
    assert shape(evs) == ["connecting", "end:error:final"]
    assert "Connection refused" in evs[-1].error
    evs = events(ScriptedSource(["fail", "fail", (1, "end")]), ReconnectSection(retry_first=True, on_end="end"))
    assert shape(evs) == ["connecting", "live", "f", "end:end:final"]


def test_gives_up_after_max_attempts():
    evs = events(ScriptedSource([(1, "drop"), "fail", "fail", "fail", (5, "end")]), ReconnectSection(max_attempts=3))
    assert shape(evs)[-1] == "end:error:final"
    assert evs[-1].error.startswith("gave up after 3 attempts")


def test_end_of_a_live_stream_reconnects_unless_it_has_a_length():
    assert shape(events(ScriptedSource([(1, "end"), "fail"]), ReconnectSection(max_attempts=1)))[:5] == \
        ["connecting", "live", "f", "end:disconnected:more", "reconnecting"]
    assert shape(events(ScriptedSource([(2, "end")], finite=True))) == ["connecting", "live", "f", "f", "end:end:final"]


def test_files_end_once():
    assert shape(events(ScriptedSource([(2, "end")], live=False))) == ["connecting", "live", "f", "f", "end:end:final"]


def test_stop_while_waiting_ends_the_announced_session():
    stop = threading.Event()
    src = ScriptedSource([(1, "drop")] + ["fail"] * 50)
    gen = run_sessions(src, ReconnectSection(initial_s=0.05, max_s=0.05), stop)
    got = []
    for e in gen:
        got.append(e)
        if isinstance(e, StateChange) and e.state == "reconnecting":
            stop.set()
    assert shape(got)[-2:] == ["reconnecting", "end:interrupted:final"]
    assert got[-1].sid == got[-2].sid


def test_backoff_doubles_to_the_cap_with_bounded_jitter():
    assert [Backoff(1, 30, 0).delay(a) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    bo = Backoff(1, 30, 0.2, random.Random(7))
    for a in range(1, 10):
        base = min(30, 2 ** (a - 1))
        assert 0.8 * base <= bo.delay(a) <= 1.2 * base
    one, two = Backoff(1, 30, 0.2, random.Random(7)), Backoff(1, 30, 0.2, random.Random(7))
    waits = [one.delay(a) for a in range(1, 10)]
    assert waits == [two.delay(a) for a in range(1, 10)]
    assert len(set(waits)) == len(waits)  # jittered: cameras that fell together do not retry together


def meta(i, pts=True, fps=25):
    return FrameMeta("c", "s", i, i if pts else None, (1, fps), 0, 4, 4)


def test_decimation_is_deterministic():
    d = Decimator(10.0)
    kept = [i for i in range(50) if d.keep(meta(i))]
    assert kept[:6] == [0, 3, 5, 8, 10, 13] and len(kept) == 20
    d2 = Decimator(10.0)
    assert kept == [i for i in range(50) if d2.keep(meta(i))]
    d3 = Decimator(10.0, nominal_fps=25)
    assert kept == [i for i in range(50) if d3.keep(meta(i, pts=False))]
    assert all(Decimator(None).keep(meta(i)) for i in range(5))
