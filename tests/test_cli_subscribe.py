"""`auflow subscribe --json` prints each message as a JSON line and reports gaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from auflow.engine.wire.format import eos_message
from auflow.engine.wire.publisher import Publisher


def result(seq: int) -> dict:
    return {"v": 1, "type": "result", "cam": "cam1", "sid": "s1", "seq": seq, "frame": seq, "pts": seq, "time_base": [1, 25],
            "t_capture_ns": 0, "latency_ms": {}, "models": {}, "faces": []}


def test_subscribe_json_lines_and_gap_report():
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "subscribe", pub.bound_endpoint, "--json",
                                 "--timeout", "20", "--count", "5"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
        try:
            assert pub.wait_for_subscribers(1, 60), "the subscriber never connected"
            for seq in (0, 1, 3, 4):  # seq 2 is lost
                pub.send(result(seq))
            pub.send(eos_message("cam1", "s1", "end", 4))
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    msgs = [json.loads(line) for line in out.splitlines()]
    assert [m.get("seq") for m in msgs if m["type"] == "result"] == [0, 1, 3, 4]
    assert msgs[-1]["type"] == "eos"
    assert "gap: 1 result(s) lost before cam1 seq 3" in err
