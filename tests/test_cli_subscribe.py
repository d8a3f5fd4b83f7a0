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


def test_subscribe_table_survives_null_aus_and_hostile_values():
    """The table view on what the default config publishes (unsupported AUs are null) and on values a hostile
    publisher can put on the wire (bytes, strings for numbers, markup): every message counted, exit 0.
    Before issue 22 the first face with a null AU ended `auflow subscribe` with a TypeError traceback."""
    faces = [
        {"track": 1, "au": {"AU01": "high", "[/bold]": 0.2}, "expr": ["not", "a", "map"]},
        "not a face",
        {"track": 1, "au": {"AU01": 0.4, "AU05": None, "AU14": None}, "expr": {"neutral": 0.7, "happiness": None}},
    ] * 2  # the last one is what the table shows at the end
    headers = [{**result(seq), "faces": [f], "extra": b"\x00\xff"} for seq, f in enumerate(faces)]
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "subscribe", pub.bound_endpoint,
                                 "--timeout", "20", "--count", str(len(headers) + 1)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
        json_proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "subscribe", pub.bound_endpoint,
                                      "--json", "--timeout", "20", "--count", str(len(headers) + 1)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, COLUMNS="200"))
        try:
            assert pub.wait_for_subscribers(2, 60), "the subscribers never connected"
            for h in headers:
                pub.send(h)
            pub.send(eos_message("cam1", "s1", "end", len(headers) - 1))
            out, err = proc.communicate(timeout=60)
            json_out, json_err = json_proc.communicate(timeout=60)
        finally:
            for p in (proc, json_proc):
                if p.poll() is None:
                    p.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "AU01:0.40" in out and "neutral 0.70" in out and "│ 0    │" in out  # the last row: no gaps
    assert json_proc.returncode == 0 and "Traceback" not in json_err, json_err
    lines = [json.loads(line) for line in json_out.splitlines()]
    assert len(lines) == len(headers) + 1 and lines[0]["extra"] == "00ff"
