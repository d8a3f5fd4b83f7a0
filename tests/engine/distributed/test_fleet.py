"""Camera fleets on Ray (`auflow fleet up|status|down|proxy`): a camera whose node dies restarts on
another under a new sid, its old session ended by `eos` (node_lost); the others go on without a gap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
import zmq
from stream_media import write_clip

from auflow.engine.distributed.fleet import load_fleet
from auflow.engine.errors import ConfigError
from auflow.engine.wire.format import decode

AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]
ENV = dict(os.environ, COLUMNS="200")
# files played as cameras (at their own rate, newest frames kept), faces only, nothing written
CAMERA_SET = ["source.realtime=true", "source.workers=thread", "analyzer.models=[]", "sinks=[]"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_fleet(path: Path, address: str, clips: list[Path], proxy_port: int) -> Path:
    """Three cameras of 0.3 CPU each (fractions): any one node of one CPU can hold all three."""
    path.write_text(yaml.safe_dump({
        "name": "lobby", "address": address, "set": CAMERA_SET,
        "cameras": [{"cam": f"cam{i}", "uri": str(c), "num_cpus": 0.3} for i, c in enumerate(clips)],
        "proxy": {"publish": f"tcp://127.0.0.1:{proxy_port}"},
    }))
    return path


def fleet(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([*AUFLOW, "fleet", *args], capture_output=True, text=True, env=ENV, timeout=timeout)


class Subscriber:
    """Every message of the proxy's endpoint, decoded, in a thread."""

    def __init__(self, endpoint: str, spec: Path) -> None:
        self.spec = spec
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.messages: list[dict] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(decode(self.sock.recv_multipart()))
            except zmq.Again:
                continue

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close(0)

    def results(self, cam: str) -> list[dict]:
        return [m for m in list(self.messages) if m["type"] == "result" and m["cam"] == cam]

    def wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.1)
        status = fleet("status", str(self.spec), "--json")
        raise AssertionError(f"timed out waiting for {what}; fleet: {status.stdout[-2000:]} {status.stderr[-2000:]}; "
                             f"last messages: {self.messages[-3:]}")


def test_fleet_file_is_checked(tmp_path):
    bad = tmp_path / "fleet.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "cameras": [{"cam": "a", "uri": "rtsp://h/a", "gpus": 1}]}))
    with pytest.raises(ConfigError, match="gpus"):
        load_fleet(bad)
    bad.write_text(yaml.safe_dump({"name": "x", "cameras": [{"cam": "a", "uri": "u"}, {"cam": "a", "uri": "v"}]}))
    with pytest.raises(ConfigError, match="share an id"):
        load_fleet(bad)


def test_a_camera_with_the_default_endpoint_gets_a_run_config_and_a_bad_endpoint_is_refused_at_load(tmp_path):
    from auflow.engine.distributed.fleet import camera_config

    spec_file = tmp_path / "fleet.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "x", "cameras": [{"cam": "a", "uri": "rtsp://h/a"}]}))
    spec = load_fleet(spec_file)
    assert camera_config(spec, spec.cameras[0])["publish"]["endpoint"] == spec.cameras[0].publish
    spec_file.write_text(yaml.safe_dump({"name": "x", "cameras": [{"cam": "a", "uri": "u", "publish": "tcp://127.0.0.1:0"}]}))
    with pytest.raises(ConfigError, match="port '0'"):
        load_fleet(spec_file)


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_a_camera_whose_node_dies_restarts_elsewhere_under_a_new_sid_and_the_others_show_no_gap(ray_cluster, tmp_path):
    clips = [write_clip(tmp_path / f"cam{i}.mp4", frames=900, size=(160, 120), fps=10, face=True) for i in range(3)]
    port = free_port()
    spec = write_fleet(tmp_path / "fleet.yaml", ray_cluster.address, clips, port)
    up = fleet("up", str(spec))
    assert up.returncode == 0, up.stderr[-3000:]
    proxy_log = (tmp_path / "proxy.log").open("w")
    proxy = subprocess.Popen([*AUFLOW, "fleet", "proxy", str(spec)], stdout=proxy_log, stderr=subprocess.STDOUT, env=ENV)
    proxy_log.close()
    sub = Subscriber(f"tcp://127.0.0.1:{port}", spec)
    try:
        sub.wait(lambda: all(len(sub.results(f"cam{i}")) >= 5 for i in range(3)), 120, "results of every camera")
        before = json.loads(fleet("status", str(spec), "--json").stdout)
        by_node: dict[str, list[str]] = {}
        for cam, r in before.items():
            by_node.setdefault(r["node"], []).append(cam)
        assert sorted(len(v) for v in by_node.values()) == [1, 2], f"SPREAD puts the 3 cameras on both nodes: {by_node}"
        node, (victim,) = next((n, cams) for n, cams in by_node.items() if len(cams) == 1)
        old_sid = sub.results(victim)[-1]["sid"]
        ray_cluster.kill(ray_cluster.node_of(node))

        eos = sub.wait(lambda: [m for m in sub.messages if m["type"] == "eos" and m["cam"] == victim], 120, "the eos")
        assert eos[0]["sid"] == old_sid and eos[0]["reason"] == "node_lost" and eos[0]["last_seq"] >= 4
        new = sub.wait(lambda: [r for r in sub.results(victim) if r["sid"] != old_sid], 120, "the new session")
        assert sub.messages.index(eos[0]) < sub.messages.index(new[0]), "the old session ends before the new one speaks"
        n_after = len(sub.messages)
        sub.wait(lambda: len([r for r in sub.results(victim) if r["sid"] != old_sid]) >= 5, 60, "more of the new session")
        after = json.loads(fleet("status", str(spec), "--json").stdout)
        assert after[victim]["node"] != node and after[victim]["restarts"] == 1 and after[victim]["sid"] != old_sid
        others = [c for c in before if c != victim]
        for cam in others:  # never restarted, and every result reached the subscriber: one sid, no seq gap
            res = sub.results(cam)
            seqs = [r["seq"] for r in res]
            assert len({r["sid"] for r in res}) == 1 and after[cam]["restarts"] == 0
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{cam}: seq gap"
            assert len([m for m in sub.messages[n_after:] if m["type"] == "result" and m["cam"] == cam]) > 0
    finally:
        sub.close()
        proxy.terminate()
        proxy.wait(30)
        down = fleet("down", str(spec))
        ray_cluster.workers.append(ray_cluster.add_worker())  # the module's cluster has two workers again
    assert down.returncode == 0, down.stderr[-3000:]
    assert "removed 4 actor(s)" in down.stdout
    deadline = time.monotonic() + 20
    while ray_cluster.ray_processes("ray::CameraActor") + ray_cluster.ray_processes("ray::FleetRegistry") \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_cluster.ray_processes("ray::CameraActor") == [] and ray_cluster.ray_processes("ray::FleetRegistry") == []
    gone = fleet("status", str(spec))
    assert gone.returncode != 0 and "no fleet 'lobby'" in gone.stderr
