"""A subscriber that sleeps on every message: the run is not held back (every frame reaches the
JSONL sink) and the subscriber's gaps account exactly for the results it did not receive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from auflow.engine.wire.subscriber import Subscriber
from helpers import free_port


@pytest.mark.slow
def test_sleeping_subscriber_loses_only_what_its_gaps_report(face_video, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out_dir = tmp_path / "run"
    # tiny queues on both sides so that the sleeping subscriber really falls behind
    sub = Subscriber(endpoint, topics=["result/", "eos/"], timeout_s=30, hwm=2)
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", str(face_video),
                             "--publish", endpoint, "--wait-subscribers", "2", "--out", str(out_dir),
                             "--set", "publish.hwm=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COLUMNS="200"))
    received: list[int] = []
    gaps = 0
    eos = None
    try:
        for msg in sub:
            gaps += msg.gap
            if msg.type == "eos":
                eos = msg.header
                break
            received.append(msg.header["seq"])
            time.sleep(0.25)
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert proc.returncode == 0, stderr

    # the sink side lost nothing: one result per frame in the run's JSONL
    lines = [json.loads(line) for line in next(out_dir.glob("*.jsonl")).read_text().splitlines()]
    published = [m["seq"] for m in lines if m["type"] == "result"]
    n = json.loads((out_dir / "summary.json").read_text())["streams"]["astronaut"]["frames"]
    assert published == list(range(n))

    assert received == sorted(received) and len(set(received)) == len(received)
    assert set(received) <= set(published)
    lost = n - len(received)
    if eos is not None:
        assert eos["last_seq"] == n - 1
        # gaps (including the eos's trailing gap) account for every result not received
        assert gaps == lost == sub.gaps.lost
    else:
        # the eos itself was dropped: the gaps cover the holes up to the last result received
        assert gaps == received[-1] + 1 - len(received)
    assert lost > 0, "the subscriber never fell behind, so this test checked nothing about gaps"
