"""The stream worker: bounded buffers (wait for files, drop-oldest for live), decimation, messages."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from stream_media import write_clip

from auflow.engine.config import FaceSection, SourceSection
from auflow.engine.sources.core import SessionCounters
from auflow.engine.sources.session import SessionEnd, StateChange
from auflow.engine.pipeline.worker import FrameBuffer, StreamWorker, WorkerSpec
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


# -- source.realtime: a file played as a camera would deliver it ------------------------------------------


def test_pacer_holds_each_frame_until_due_and_stamps_the_due_time():
    from auflow.engine.sources.session import Pacer

    pacer, stop = Pacer("clip", 25.0), threading.Event()
    start = time.monotonic()
    got = [pacer.wait(pkt(i), stop) for i in range(6)]  # pts i at time base 1/25: due every 40 ms
    assert time.monotonic() - start >= 5 * 0.04 - 0.005  # the last frame was held until it was due
    stamps = [p.meta.t_capture_ns - got[0].meta.t_capture_ns for p in got]
    assert stamps == [i * 40_000_000 for i in range(6)]  # the due time, not whenever decoding finished
    # a clock that jumps back (a looping or restarted stream) restarts the pacing: the frames after the jump
    # are paced from it, not all sent at once as long overdue
    pacer = Pacer("clip", 25.0)
    pacer.due(pkt(250).meta)  # t = 10 s starts the clock
    before = time.monotonic()
    restart = pacer.due(pkt(0).meta)[0]  # back to t = 0: due now, not 10 s ago
    assert restart >= before
    assert pacer.due(pkt(1).meta)[0] - restart == pytest.approx(0.04)


def test_pacer_without_timestamps_uses_the_rate_and_fails_clearly_without_one():
    from auflow.engine.errors import SourceError
    from auflow.engine.sources.session import Pacer

    no_pts = FramePacket(FrameMeta("c", "s", 50, None, (1, 1), 0, 2, 2), np.zeros((2, 2, 3), np.uint8))
    first = FramePacket(FrameMeta("c", "s", 0, None, (1, 1), 0, 2, 2), np.zeros((2, 2, 3), np.uint8))
    pacer = Pacer("folder", 10.0)
    t0 = pacer.due(first.meta)[1]
    assert pacer.due(no_pts.meta)[1] - t0 == 5_000_000_000  # frame 50 at 10 fps: 5 s after frame 0
    with pytest.raises(SourceError, match="source.realtime needs a frame rate"):
        Pacer("folder", None).due(first.meta)


def test_realtime_file_is_paced_stamped_when_due_and_kept_newest_first(tmp_path):
    clip = str(write_clip(tmp_path / "clip.mp4", frames=20, face=True))  # 25 fps: 0.76 s from first to last
    start = time.monotonic()
    msgs = run_worker(clip, realtime=True)
    assert time.monotonic() - start >= 0.7
    crops = [m[1] for m in msgs if m[0] == "crops"]
    assert [c.meta.frame for c in crops] == list(range(20))  # the face stage keeps up: nothing dropped
    t = [c.meta.t_capture_ns - crops[0].meta.t_capture_ns for c in crops]
    assert t == [i * 40_000_000 for i in range(20)]
    end = msgs[-2]
    assert end[1].reason == "end" and end[2].dropped == 0 and end[2].frames == 20


def test_realtime_file_drops_the_oldest_when_the_face_stage_is_slower(tmp_path, monkeypatch):
    from auflow.engine.pipeline.face_stage import FaceStage

    process = FaceStage.process

    def slow(self, p):  # 10 frames/s against the file's 25
        time.sleep(0.1)
        return process(self, p)

    monkeypatch.setattr(FaceStage, "process", slow)
    msgs = run_worker(str(write_clip(tmp_path / "clip.mp4", frames=25)), realtime=True, live_queue=2)
    frames = [m[1].meta.frame for m in msgs if m[0] == "crops"]
    counters = msgs[-2][2]
    assert counters.dropped > 0 and len(frames) + counters.dropped == 25  # every frame delivered or counted
    assert frames == sorted(frames) and frames[-1] == 24  # the newest frame is never the one dropped


def test_realtime_on_a_source_without_a_rate_ends_that_stream_with_a_clear_error(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    msgs = run_worker(str(tmp_path), realtime=True)
    end = msgs[-2][1]
    assert end.reason == "error" and "source.realtime needs a frame rate" in end.error
