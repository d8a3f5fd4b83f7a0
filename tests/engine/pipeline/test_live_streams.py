"""Live streams through the whole pipeline: drops, reconnects, watchdog, restarts, dead cameras."""

from __future__ import annotations

import multiprocessing
import signal
import time

import pytest
from stream_media import write_clip
from watched_run import WatchedRun, child_pids, config, open_fds
from stream_servers import hls_server, mjpeg_server, silent_tcp_server, write_hls

FAST_RECONNECT = ["source.reconnect.initial_s=0.2", "source.reconnect.max_s=1.0", "source.reconnect.jitter=0.1"]


def is_(type_, cam=None, **kv):
    return lambda m: m["type"] == type_ and (cam is None or m["cam"] == cam) and all(m.get(k) == v for k, v in kv.items())


@pytest.mark.rtsp
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_camera_dropped_five_times(rtsp_server, tmp_path):
    watchdog = 3.0
    ctx = multiprocessing.get_context("spawn")  # the resource tracker it starts once per process is no leak
    ctx.Event()
    fds, children = open_fds(), child_pids() - {rtsp_server.proc.pid}
    cfg = config("source.workers=process", f"source.watchdog_s={watchdog}", *FAST_RECONNECT)
    with WatchedRun(cfg, [rtsp_server.url], tmp_path / "run") as run:
        cam = run.sources[0].cam
        sid = run.wait_for(is_("result", cam), 60, "first result")["sid"]
        for cycle in range(5):
            # frames flow in this session
            run.wait_for(lambda m: m["type"] == "result" and m["sid"] == sid and m["seq"] >= 5, 30, f"results of {sid}")
            n_before = len(run.snapshot())
            rtsp_server.kill()
            t_kill = time.monotonic()
            st = run.wait_for(lambda m: m["type"] == "status" and m["state"] == "reconnecting"
                              and run.snapshot().index(m) >= n_before, watchdog + 10, "status reconnecting")
            assert time.monotonic() - t_kill < watchdog + 2 * cfg.publish.status_interval_s + 1.0
            new_sid = st["sid"]
            assert new_sid != sid
            rtsp_server.start()
            first = run.wait_for(lambda m: m["type"] == "result" and m["sid"] == new_sid, 60, "results after reconnect")
            assert first["seq"] == 0  # a new session numbers its results from 0
            msgs = run.snapshot()
            eos = [m for m in msgs if m["type"] == "eos" and m["sid"] == sid]
            assert len(eos) == 1 and eos[0]["reason"] == "disconnected", f"cycle {cycle}: old session's eos"
            old = [m["seq"] for m in msgs if m["type"] == "result" and m["sid"] == sid]
            assert eos[0]["last_seq"] == old[-1] and old == list(range(len(old)))
            sid = new_sid
    msgs = run.snapshot()
    sids = [m["sid"] for m in msgs if m["type"] == "eos"]
    assert len(sids) == 6 and len(set(sids)) == 6 and msgs[-1]["type"] == "eos" and msgs[-1]["reason"] == "interrupted"
    assert run.error is None
    # counted with the server up, as at the start (its pipes are open in both counts)
    assert child_pids() - {rtsp_server.proc.pid} <= children, "a worker process was left behind"
    assert open_fds() <= fds, "file descriptors leaked"


@pytest.mark.slow
@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_frozen_camera_is_caught_by_the_watchdog(rtsp_server, tmp_path):
    """A server that stops sending without closing the connection (SIGSTOP): only the watchdog can tell."""
    watchdog = 2.0
    cfg = config("source.workers=thread", f"source.watchdog_s={watchdog}", "source.open_timeout_s=2", *FAST_RECONNECT)
    with WatchedRun(cfg, [rtsp_server.url], tmp_path / "run") as run:
        first = run.wait_for(lambda m: m["type"] == "result" and m["seq"] >= 3, 60, "results")
        n = len(run.snapshot())
        rtsp_server.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            st = run.wait_for(lambda m: m["type"] == "status" and m["state"] == "reconnecting"
                              and run.snapshot().index(m) >= n, watchdog + 15, "reconnecting after a freeze")
            waited = time.monotonic() - t0
        finally:
            rtsp_server.proc.send_signal(signal.SIGCONT)
        assert waited < watchdog + 5, "a frozen stream must be declared dead within the watchdog time"
        eos = run.wait_for(lambda m: m["type"] == "eos" and m["sid"] == first["sid"], 10, "eos of the frozen session")
        assert eos["reason"] == "disconnected" and ("no frame for" in eos["error"] or "broke" in eos["error"])
        run.wait_for(lambda m: m["type"] == "result" and m["sid"] == st["sid"], 60, "frames after the thaw")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dead_cameras_fail_clearly_while_the_file_goes_on(tmp_path):
    from helpers import free_port

    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    silent = silent_tcp_server()
    refused = f"rtsp://127.0.0.1:{free_port()}/cam"
    mute = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
    cfg = config("source.workers=process", "source.open_timeout_s=1.5")
    try:
        t0 = time.monotonic()
        with WatchedRun(cfg, [refused, mute, str(clip)], tmp_path / "run") as run:
            cams = [s.cam for s in run.sources]
            ends = {c: run.wait_for(is_("eos", c), 60, f"eos of {c}") for c in cams}
            waited = time.monotonic() - t0
    finally:
        silent.close()
    assert ends[cams[0]]["reason"] == "error" and "nothing listens" in ends[cams[0]]["error"]
    assert ends[cams[1]]["reason"] == "error" and "no answer within 1.5 s" in ends[cams[1]]["error"]
    assert ends[cams[2]]["reason"] == "end" and ends[cams[2]]["last_seq"] == 29
    results = [m for m in run.snapshot() if m["type"] == "result" and m["cam"] == cams[2]]
    assert [r["seq"] for r in results] == list(range(30))
    stats = run.pipe.stats
    assert "nothing listens" in stats[cams[0]].error and stats[cams[2]].error is None
    assert waited < 60


@pytest.mark.slow
@pytest.mark.rtsp
@pytest.mark.timeout(120)
def test_crashed_worker_is_restarted(rtsp_server, tmp_path):
    multiprocessing.get_context("spawn").Event()  # its resource tracker, started once per process, is no leak
    fds, children = open_fds(), child_pids() - {rtsp_server.proc.pid}
    cfg = config("source.workers=process", *FAST_RECONNECT, "source.reconnect.max_restarts=1")
    with WatchedRun(cfg, [rtsp_server.url], tmp_path / "run") as run:
        cam = run.sources[0].cam
        first = run.wait_for(lambda m: m["type"] == "result" and m["seq"] >= 2, 60, "results")
        run.pipe.handles[cam].kill()  # SIGKILL: what a segfault in a decoder looks like
        eos = run.wait_for(lambda m: m["type"] == "eos" and m["sid"] == first["sid"], 30, "eos of the crashed session")
        assert eos["reason"] == "error" and "worker process died" in eos["error"]
        nxt = run.wait_for(lambda m: m["type"] == "result" and m["sid"] != first["sid"], 60, "results after restart")
        assert nxt["seq"] == 0
        assert run.pipe.stats[cam].restarts == 1
        run.pipe.handles[cam].kill()  # the second crash exceeds max_restarts: the stream ends
        final = run.wait_for(lambda m: m["type"] == "eos" and m["sid"] == nxt["sid"], 30, "final eos")
        assert final["reason"] == "error"
        run.thread.join(30)
        assert not run.thread.is_alive(), "the run ends when its only stream has ended"
    assert run.pipe.stats[cam].state == "ended" and "worker process died" in run.pipe.stats[cam].error
    # invariants of a run with two kill -9s: every session's results contiguous up to its eos, nothing left behind
    msgs = run.snapshot()
    for sid in {m["sid"] for m in msgs if m["type"] == "result"}:
        seqs = [m["seq"] for m in msgs if m["type"] == "result" and m["sid"] == sid]
        (eos,) = [m for m in msgs if m["type"] == "eos" and m["sid"] == sid]
        assert seqs == list(range(len(seqs))) and eos["last_seq"] == seqs[-1]
    assert sum(m["type"] == "result" for m in msgs) == run.pipe.stats[cam].frames_out
    assert child_pids() - {rtsp_server.proc.pid} <= children, "a worker process was left behind"
    assert open_fds() <= fds, "file descriptors leaked"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hls_and_mjpeg_streams_are_read_to_the_end(tmp_path):
    playlist = write_hls(tmp_path / "hls", frames=60)
    cfg = config("source.workers=process", "source.reconnect.on_end=end", "source.live_queue=64")
    with hls_server(playlist.parent) as hls, mjpeg_server(frames=20) as mjpeg:
        with WatchedRun(cfg, [f"{hls.base}/index.m3u8", f"{mjpeg.base}/stream.mjpg"], tmp_path / "run") as run:
            cams = [s.cam for s in run.sources]
            ends = {c: run.wait_for(is_("eos", c), 60, f"eos of {c}") for c in cams}
    for cam, n in zip(cams, (60, 20)):
        assert ends[cam]["reason"] == "end"
        results = [m for m in run.snapshot() if m["type"] == "result" and m["cam"] == cam]
        # live sources may drop when downstream is slow, but every frame is accounted for
        assert len(results) + ends[cam]["dropped"] == n == ends[cam]["frames"]
        assert [r["seq"] for r in results] == list(range(len(results)))


@pytest.mark.timeout(120)
def test_analyze_fps_keeps_seq_contiguous(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=50)
    cfg = config("source.workers=thread", "source.analyze_fps=5")
    with WatchedRun(cfg, [str(clip)], tmp_path / "run") as run:
        eos = run.wait_for(is_("eos"), 60, "eos")
    results = [m for m in run.snapshot() if m["type"] == "result"]
    assert [r["seq"] for r in results] == list(range(10))  # no gaps in seq: nothing was lost
    assert [r["frame"] for r in results] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]  # the jumps say what was skipped
    assert eos["decimated"] == 40 and eos["frames"] == 50 and eos["dropped"] == 40  # decimation is a deliberate drop
    last_status = [m for m in run.snapshot() if m["type"] == "status"][-1]
    assert last_status["state"] == "ended" and last_status["decimated"] == 40


@pytest.mark.rtsp
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_ends_a_camera_run_cleanly(rtsp_server, tmp_path):
    """`auflow run rtsp://…` then SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", rtsp_server.url, "--out", str(out),
                             "--publish", "none", "--set", "analyzer.models=[]"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, COLUMNS="200"))
    try:
        jsonl = out / "127.0.0.1_{}_test.jsonl".format(rtsp_server.port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.exists() and jsonl.read_text().count('"type":"result"') >= 5:
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # the worker process gets it too, and must leave the decision to the parent
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-2000:]
    msgs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    results = [m for m in msgs if m["type"] == "result"]
    assert len(results) >= 5 and msgs[-1]["type"] == "eos" and msgs[-1]["reason"] == "interrupted"
    assert msgs[-1]["last_seq"] == results[-1]["seq"]
    assert json.loads((out / "summary.json").read_text())["streams"][msgs[-1]["cam"]]["end"] == "interrupted"
