"""The stream worker: bounded buffers (wait for files, drop-oldest for live), decimation, messages."""

from __future__ import annotations

import queue
import threading

import numpy as np
import pytest
from stream_media import write_clip

from auflow.engine.config import FaceSection, SourceSection
from auflow.engine.sources.core import SessionCounters
from auflow.engine.sources.session import SessionEnd, StateChange
from auflow.engine.sources.worker import FrameBuffer, StreamWorker, WorkerSpec
from auflow.engine.types import FaceCrops, FrameMeta, FramePacket

pytestmark = pytest.mark.timeout(60)


def pkt(i, sid="s"):
    return FramePacket(FrameMeta("c", sid, i, i, (1, 25), 0, 2, 2), np.zeros((2, 2, 3), np.uint8))


def test_live_buffer_keeps_the_newest_and_counts_every_drop():
    c = SessionCounters(sid="s")
    buf = FrameBuffer(2, drop_oldest=True, counters=c)
    stop = threading.Event()
    buf.put_control("state")
    for i in range(7):
        buf.put_frame(pkt(i), stop)  # never waits
    assert c.dropped == 5 and len(buf) == 2
    assert buf.get(0) == "state"  # control items are never dropped
    assert [buf.get(0).meta.frame for _ in range(2)] == [5, 6]
    with pytest.raises(queue.Empty):
        buf.get(0.01)


def test_live_buffer_never_drops_an_older_sessions_frames():
    c = SessionCounters(sid="new")
    buf = FrameBuffer(1, drop_oldest=True, counters=c)
    stop = threading.Event()
    buf.put_frame(pkt(0, "old"), stop)
    buf.put_control("end-of-old")
    buf.put_frame(pkt(0, "new"), stop)
    buf.put_frame(pkt(1, "new"), stop)
    assert c.dropped == 1
    got = [buf.get(0) for _ in range(3)]
    assert got[0].meta.sid == "old" and got[1] == "end-of-old" and got[2].meta.frame == 1


def test_file_buffer_makes_decode_wait():
    buf = FrameBuffer(2, drop_oldest=False, counters=SessionCounters())
    stop = threading.Event()
    buf.put_frame(pkt(0), stop)
    buf.put_frame(pkt(1), stop)
    t = threading.Thread(target=buf.put_frame, args=(pkt(2), stop))
    t.start()
    t.join(0.3)
    assert t.is_alive(), "a full file buffer must block the decoder"
    assert buf.get(0).meta.frame == 0
    t.join(5)
    assert not t.is_alive() and len(buf) == 2 and buf.counters.dropped == 0


def run_worker(uri, **source):
    out: queue.Queue = queue.Queue()
    spec = WorkerSpec(uri, "clip", SourceSection(**source).model_dump(mode="json"), FaceSection().model_dump(mode="json"))
    StreamWorker(spec, out, threading.Event()).run()
    msgs = []
    while not out.empty():
        msgs.append(out.get())
    return msgs


def test_worker_sends_crops_states_and_one_final_end(tmp_path):
    msgs = run_worker(str(write_clip(tmp_path / "clip.mp4", frames=20, face=True)))
    kinds = [m[0] for m in msgs]
    assert kinds[:2] == ["state", "state"] and kinds[-2:] == ["end", "done"]
    assert [m[1].state for m in msgs[:2]] == ["connecting", "live"]
    crops = [m[1] for m in msgs if m[0] == "crops"]
    assert [c.meta.frame for c in crops] == list(range(20))
    assert all(isinstance(c, FaceCrops) and c.crops.shape[1:] == (112, 112, 3) for c in crops)
    assert sum(len(c.faces) for c in crops) >= 18  # the face is found; only crops travel, not frames
    end, counters = msgs[-2][1], msgs[-2][2]
    assert isinstance(end, SessionEnd) and end.reason == "end" and end.final
    assert counters.frames == 20 and counters.dropped == 0 and counters.sid == end.sid == crops[0].meta.sid


def test_analyze_fps_shows_as_frame_jumps_and_counts(tmp_path):
    msgs = run_worker(str(write_clip(tmp_path / "clip.mp4", frames=50)), analyze_fps=10)
    frames = [m[1].meta.frame for m in msgs if m[0] == "crops"]
    assert frames[:6] == [0, 3, 5, 8, 10, 13] and len(frames) == 20
    counters = msgs[-2][2]
    assert counters.decimated == 30 and counters.frames == 50


def test_unopenable_source_ends_with_an_error_not_a_hang(tmp_path):
    msgs = run_worker(str(tmp_path / "missing.mp4"))
    assert [m[0] for m in msgs] == ["state", "end", "done"]
    assert isinstance(msgs[0][1], StateChange) and msgs[1][1].reason == "error"
    assert "missing.mp4: no such file" in msgs[1][1].error
