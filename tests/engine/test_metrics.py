"""Prometheus metrics: fed wire messages, scraped over HTTP like Prometheus would."""

from __future__ import annotations

import urllib.request

import pytest

from auflow.engine.plugin import build
from auflow.engine.registry import SINKS
from auflow.engine.wire import format as wire
from fake_messages import fake_run

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from auflow.engine.metrics import EngineMetrics  # noqa: E402
from auflow.engine.plugin import StartContext


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_scrape_after_feeding_a_run():
    m = EngineMetrics()
    port = m.serve(0)
    try:
        msgs = fake_run("cam1", frames=30)
        # a later status of the same session: totals grow, counters count only the increase
        msgs.insert(-1, wire.status_message("cam1", "s1", "live", 12.5, 11.75, 7, 2, {"frames": 5, "crops": 1}, 28))
        msgs.insert(-1, wire.status_message("cam1", "s1", "live", 12.0, 12.0, 9, 2, {"frames": 3, "crops": 0}, 29))
        msgs.append(wire.eos_message("cam1", "s1", "end", 29))  # (a second eos only adds to the count)
        for msg in msgs:
            m.observe(msg)
        m.observe({"type": "result", "cam": "cam1"})  # malformed: ignored, never raises
        got = scrape(port)
    finally:
        m.stop()
    results = [x for x in msgs if x["type"] == "result"]
    cam = (("cam", "cam1"),)
    assert got[("auflow_results_total", cam)] == len(results) == 30
    assert got[("auflow_faces_total", cam)] == sum(len(x["faces"]) for x in results)
    assert got[("auflow_fps_in", cam)] == 12.0 and got[("auflow_fps_out", cam)] == 12.0
    assert got[("auflow_frames_dropped_total", cam)] == 9 and got[("auflow_decode_errors_total", cam)] == 2
    assert got[("auflow_queue_depth", (("cam", "cam1"), ("queue", "frames")))] == 3
    assert got[("auflow_stream_state", (("cam", "cam1"), ("state", "live")))] == 1
    assert got[("auflow_stream_state", (("cam", "cam1"), ("state", "ended")))] == 0
    assert got[("auflow_last_seq", cam)] == 29
    assert got[("auflow_sessions_ended_total", (("cam", "cam1"), ("reason", "end")))] == 2
    # the latency histogram: one observation per result per stage, in seconds
    total = (("cam", "cam1"), ("stage", "total"))
    assert got[("auflow_stage_latency_seconds_count", total)] == 30
    expected = sum(x["latency_ms"]["total"] for x in results) / 1000
    assert got[("auflow_stage_latency_seconds_sum", total)] == pytest.approx(expected)
    assert got[("auflow_stage_latency_seconds_bucket", tuple(sorted((*total, ("le", "0.05")))))] == 30  # all < 50 ms


def test_prometheus_sink_serves_while_the_run_lasts(tmp_path):
    sink = build(SINKS, "prometheus", {"port": 0})
    sink.start(StartContext(run_dir=tmp_path))
    port = sink.metrics.port
    for msg in fake_run("lobby", frames=5):
        sink.write(msg)
    assert scrape(port)[("auflow_results_total", (("cam", "lobby"),))] == 5
    sink.stop()
    sink.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_two_engines_do_not_share_counters():
    a, b = EngineMetrics(), EngineMetrics()
    for msg in fake_run(frames=3):
        a.observe(msg)
    assert b"auflow_results_total{cam=\"cam1\"} 3.0" in a.render()
    assert b"auflow_results_total{cam=\"cam1\"}" not in b.render()
