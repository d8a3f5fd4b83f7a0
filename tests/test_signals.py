"""SIGINT ends a run cleanly: what was decoded is published, the JSONL is complete, eos says why."""

from __future__ import annotations

import json
import signal
import time

import msgpack
import pytest
import zmq

from helpers import start_watched_run, write_face_video


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_flushes_sinks_and_publishes_eos(tmp_path, signum):
    video = write_face_video(tmp_path / "long.mp4", frames=400)
    out_dir = tmp_path / "run"
    proc, sub = start_watched_run(video, out_dir)
    results, eos, sent = [], None, False
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            try:
                _, raw = sub.recv_multipart()
            except zmq.Again:
                if proc.poll() is not None:
                    break
                continue
            h = msgpack.unpackb(raw, raw=False)
            if h["type"] == "result":
                results.append(h)
                if len(results) == 10 and not sent:
                    proc.send_signal(signum)
                    sent = True
            elif h["type"] == "eos":
                eos = h
                break
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close(linger=0)
    assert sent
    assert proc.returncode == 130, stderr
    assert eos is not None and eos["reason"] == "interrupted"
    assert 10 <= len(results) < 400, "the run should stop early"
    assert [r["seq"] for r in results] == list(range(len(results)))
    assert eos["last_seq"] == results[-1]["seq"]
    lines = [json.loads(line) for line in (out_dir / "long.jsonl").read_text().splitlines()]
    assert [m["seq"] for m in lines if m["type"] == "result"] == list(range(len(results)))
    assert lines[-1]["type"] == "eos" and lines[-1]["reason"] == "interrupted"


def _group_alive(pgid: int) -> list[int]:
    """Processes of the process group ``pgid`` still alive (zombies excluded)."""
    import os

    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry))
    return alive


def _check_point(proc, out_dir, where: str) -> str:
    """One run signalled at a random point: exit 0 or 130, no traceback, no process left; what it wrote is
    whole. Returns how far it got: before, not started, interrupted or end."""
    import os

    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130), f"{where}: exit {proc.returncode}: {stderr[-2000:]}"
    assert "Traceback" not in stderr, f"{where}: {stderr[-2000:]}"
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), f"{where}: processes of the run outlived it"
    jsonl, summary = out_dir / "clip.jsonl", out_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text())["streams"]["clip"]["end"] == "not started":
        # the signal came after the run began and before the file's worker started: nothing decoded
        assert proc.returncode == 130 and not jsonl.exists(), where
        return "not started"
    if summary.exists():
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        results = [m["seq"] for m in lines if m["type"] == "result"]
        assert results == list(range(len(results))), where
        assert lines[-1]["type"] == "eos" and lines[-1]["last_seq"] == len(results) - 1, where
        st = json.loads(summary.read_text())["streams"]["clip"]
        assert st["frames"] == len(results) and st["end"] in ("end", "interrupted"), f"{where}: {st}"
        # 'end' means every frame; 'interrupted' may still hold all 60 (the stop came after the last frame
        # was read and before the decoder saw the file's end)
        assert st["end"] == "interrupted" or len(results) == 60, where
        return st["end"]
    # stopped before the pipeline ran: it wrote no results
    assert proc.returncode == 130 and not (jsonl.exists() and jsonl.read_text().strip()), where
    return "before"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigint_or_sigterm_at_20_random_points(tmp_path):
    """A signal at a random moment of `auflow run` (importing, loading, decoding, flushing, exiting):
    exit 0 or 130, never a traceback; when the pipeline ran, its JSONL ends with the eos of every result it
    holds and summary.json counts exactly those; no process of the run outlives it."""
    import os
    import random
    import subprocess
    import sys

    video = write_face_video(tmp_path / "clip.mp4", frames=60)
    rng = random.Random(22)
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")

    def start(out_dir):
        return subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", str(video), "--out", str(out_dir),
                                 "--publish", "none", "--set", "analyzer.models=[]", "--set", "source.workers=process"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)

    # two runs at a time (the machine's 2 cores; the reference duration is measured two at a time too, so the
    # random points spread over the runs as they go under that load)
    t0 = time.monotonic()
    fulls = [start(tmp_path / f"full{k}") for k in range(2)]
    for full in fulls:
        assert full.wait(300) == 0, full.stderr.read()
        full.stderr.close()
    whole_s = time.monotonic() - t0
    points = []
    for i in range(20):
        # from 0.3 s: before that the interpreter itself is starting (runpy importing the module), and a
        # SIGINT there ends it Python's own way (exit -2), with nothing written yet
        points.append((i, rng.uniform(0.3, whole_s * 1.05), (signal.SIGINT, signal.SIGTERM)[i % 2]))
    outcomes = []
    for pair in (points[k:k + 2] for k in range(0, len(points), 2)):
        t0 = time.monotonic()
        procs = [(i, delay, signum, start(tmp_path / f"run{i}")) for i, delay, signum in pair]
        for i, delay, signum, proc in sorted(procs, key=lambda p: p[1]):
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            if proc.poll() is None:
                proc.send_signal(signum)
        for i, delay, signum, proc in procs:
            outcomes.append(_check_point(proc, tmp_path / f"run{i}", f"point {i}: {signum.name} after {delay:.2f} s of {whole_s:.1f}"))
    assert "interrupted" in outcomes, f"no signal landed while frames flowed: {outcomes}"


def test_a_signal_inside_richs_own_lazy_import_still_stops_the_run_and_says_so(monkeypatch, capsys):
    """CI, 2026-12-06: SIGINT landed while the progress bar imported rich._emoji_codes; the handler's own
    console.print needed that half-initialised module (ImportError) and the run exited 1 instead of ending
    cleanly. The handler stops the pipeline first and falls back to plain stderr."""
    import signal as sig

    from auflow.engine.cli import signals

    stopped = []

    class Pipe:
        def stop(self):
            stopped.append(True)

    def broken(*a, **k):
        raise ImportError("cannot import name 'EMOJI' from partially initialized module 'rich._emoji_codes'")

    prev = sig.getsignal(sig.SIGINT), sig.getsignal(sig.SIGTERM)
    try:
        signals.install_signal_handlers(Pipe())
        monkeypatch.setattr(signals.console, "print", broken)
        sig.getsignal(sig.SIGINT)(sig.SIGINT, None)
    finally:
        sig.signal(sig.SIGINT, prev[0])
        sig.signal(sig.SIGTERM, prev[1])
    assert stopped == [True]
    assert "SIGINT: finishing what is in flight" in capsys.readouterr().err
