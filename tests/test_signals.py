"""SIGINT ends a run cleanly: what was decoded is published, the JSONL is complete, eos says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

from helpers import free_port, write_face_video


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_flushes_sinks_and_publishes_eos(tmp_path, signum):
    video = write_face_video(tmp_path / "long.mp4", frames=400)
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 1000)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub.connect(endpoint)
    out_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", str(video), "--publish", endpoint,
                             "--wait-subscribers", "1", "--out", str(out_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
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
