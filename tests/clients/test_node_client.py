"""The Node.js client (clients/node/subscribe.mjs, npm `zeromq` + `@msgpack/msgpack`) reads what a
Python Publisher sends: every result, in order, no gap, values equal to the wire's.

Needs `node` and `npm ci --prefix clients/node`; skips with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from auflow.engine.wire import format as wire
from auflow.engine.wire.publisher import Publisher
from fake_messages import face, result_message

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: apt-get install nodejs)"),
    pytest.mark.skipif(not (CLIENT_DIR / "node_modules" / "zeromq").is_dir()
                       or not (CLIENT_DIR / "node_modules" / "@msgpack" / "msgpack").is_dir(),
                       reason="clients/node/node_modules missing: run `npm ci --prefix clients/node`"),
]


def _run_client(args: list[str], send, timeout_s: float = 60.0, **pub_kw) -> tuple[list[dict], list[dict], int]:
    """Start the client, let ``send(publisher)`` publish once it has subscribed; its stdout and stderr lines."""
    pub = Publisher("tcp://127.0.0.1:*", hwm=10_000, **pub_kw).start()
    try:
        proc = subprocess.Popen([NODE, str(CLIENT_DIR / "subscribe.mjs"), *args, pub.bound_endpoint],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if not pub.wait_for_subscribers(1, 30.0):
                proc.kill()
                pytest.fail(f"the node client never subscribed: {proc.communicate()[1][-2000:]}")
            send(pub)
            out, err = proc.communicate(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        pub.stop()
    return [json.loads(line) for line in out.splitlines()], [json.loads(line) for line in err.splitlines()], proc.returncode


def test_node_client_decodes_every_result_without_gap():
    n = 150
    sent: list[dict] = []

    def send(pub):
        for seq in range(n):
            msg = result_message("cam1", "sid-1", seq, 2 * seq, [face(0, seq), face(4, seq, x=300.0)])
            sent.append(msg)
            assert pub.send(msg)
        eos = wire.eos_message("cam1", "sid-1", "end", n - 1)
        sent.append(eos)
        t0 = time.time_ns()
        assert pub.send(eos)
        sent[-1] = {**eos, "_sent_after": t0}

    got, err, code = _run_client(["--count", str(n + 1), "--timeout", "30", "--fail-on-gap"], send)
    assert code == 0, err
    results = [h for h in got if h["type"] == "result"]
    assert [h["seq"] for h in results] == list(range(n))
    assert err[-1] == {"summary": {"received": n + 1, "lost": 0, "garbage": 0}}
    # the decoded values are the values sent (t_publish_ns is stamped by the publisher on sending)
    for h, s in zip(results, sent):
        assert {k: v for k, v in h.items() if k != "t_publish_ns"} == {k: v for k, v in s.items() if k != "t_publish_ns"}
    # 64-bit integers keep every digit (a JavaScript number would round ~1.7e18 to a multiple of 256)
    assert got[-1]["type"] == "eos" and got[-1]["t_publish_ns"] >= sent[-1]["_sent_after"]
    assert results[0]["t_capture_ns"] == sent[0]["t_capture_ns"]


def test_node_client_reports_a_gap():
    def send(pub):
        for seq in (0, 1, 2, 5, 6):  # 3 and 4 never sent: lost, as far as a subscriber can tell
            pub.send(result_message("cam1", "s", seq, seq, []))
        pub.send(wire.eos_message("cam1", "s", "end", 8))  # 7 and 8 lost at the end

    got, err, code = _run_client(["--count", "6", "--timeout", "30", "--fail-on-gap"], send)
    assert code == 3
    assert [e["gap"] for e in err if "gap" in e] == [2, 2]
    assert err[-1]["summary"] == {"received": 6, "lost": 4, "garbage": 0}


def test_node_client_with_curve(tmp_path):
    from auflow.engine.wire.curve import write_keypair

    server_pub, server_sec = write_keypair(tmp_path, "server")

    def send(pub):
        for seq in range(20):
            pub.send(result_message("cam1", "s", seq, seq, [face(1, seq)]))

    got, err, code = _run_client(["--count", "20", "--timeout", "30", "--curve-server-key", str(server_pub)], send,
                                 curve_secret_key_file=str(server_sec))
    assert code == 0, err
    assert [h["seq"] for h in got] == list(range(20))
