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
