"""`auflow run` in a subprocess, watched by a plain pyzmq SUB socket (not auflow's own subscriber)."""

from __future__ import annotations

import json
import time

import av
import msgpack
import pytest
import zmq
from helpers import start_watched_run, starter_au


def count_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.slow
def test_run_publishes_one_result_per_frame_then_eos(face_video, tmp_path):
    out_dir = tmp_path / "run"
    proc, sub = start_watched_run(face_video, out_dir)
    msgs: list[tuple[str, dict]] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            try:
                topic, raw = sub.recv_multipart()
            except zmq.Again:
                if proc.poll() is not None and proc.returncode != 0:
                    break
                continue
            header = msgpack.unpackb(raw, raw=False)
            msgs.append((topic.decode(), header))
            if header["type"] == "eos":
                break
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close(linger=0)
    assert proc.returncode == 0, stderr

    n = count_frames(face_video)
    results = [h for t, h in msgs if h["type"] == "result"]
    statuses = [h for t, h in msgs if h["type"] == "status"]
    eos = [h for t, h in msgs if h["type"] == "eos"]
    assert len(results) == n
    assert [r["seq"] for r in results] == list(range(n))
    assert [r["frame"] for r in results] == list(range(n))
    assert all(t == f"{h['type']}/{h['cam']}/" for t, h in msgs)
    assert all(h["v"] == 1 and {"cam", "sid", "t_publish_ns"} <= set(h) for _, h in msgs)
    assert len({r["sid"] for r in results}) == 1
    assert statuses, "no status heartbeat"
    assert eos and eos[-1]["last_seq"] == n - 1 and eos[-1]["reason"] == "end"

    with_face = [r for r in results if r["faces"]]
    assert len(with_face) >= 0.95 * n
    face = with_face[-1]["faces"][0]
    assert {"track", "bbox", "score", "kps", "expr", "au"} <= set(face)
    assert len(face["bbox"]) == 4 and len(face["kps"]) == 5
    assert set(face["expr"]) == {"neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"}
    assert abs(sum(face["expr"].values()) - 1) < 1e-2
    assert all(k.startswith("AU") for k in face["au"])
    models = results[0]["models"]
    assert models["expr"] == {"name": "fer", "kind": "trained"}
    assert models["au"] == starter_au()  # the shipped starter student, or its teacher if it fails its gate
    assert {"decode", "detect", "analyze", "total"} <= set(results[0]["latency_ms"])
    tracks = {f["track"] for r in with_face for f in r["faces"]}
    assert len(tracks - {-1}) == 1

    # the JSONL sink wrote the same results
    run_dirs = list(out_dir.glob("*.jsonl"))
    assert len(run_dirs) == 1
    lines = [json.loads(line) for line in run_dirs[0].read_text().splitlines()]
    assert [m["seq"] for m in lines if m["type"] == "result"] == list(range(n))
    assert lines[-1]["type"] == "eos"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["streams"]["astronaut"]["frames"] == n
