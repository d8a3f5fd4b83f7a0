"""Archives on Ray (`auflow run FOLDER --executor ray`): every video done exactly once, a lost node
costs only the work in flight, the results equal one machine's, and the manifest resumes a killed driver."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from stream_media import write_clip

from auflow.engine import runner
from auflow.engine.config import load_config
from auflow.engine.errors import ConfigError

AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]
# a real model on every face (fer: expressions), files only, decode in a thread (no process spawned per video)
OVERRIDES = ["publish.endpoint=null", "analyzer.models=[{name: fer}]", "source.workers=thread", "sinks=[{name: jsonl}]"]
SETS = [arg for o in OVERRIDES for arg in ("--set", o)]
TIMING = {"t_publish_ns", "t_capture_ns", "latency_ms", "sid"}  # differ between any two runs
ENV = dict(os.environ, COLUMNS="200")


def cut_demo(dest: Path, frames: int = 48) -> Path:
    """The demo clip's first ``frames`` frames (a real face, 640×360), re-encoded."""
    from auflow.engine.assets import asset_path

    with av.open(str(asset_path("demo_video"))) as src, av.open(str(dest), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"bf": "0"})
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            for p in s.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return dest


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """12 videos: 11 generated clips of a real face (24-34 frames, 256×192) and the demo clip's first 48 frames."""
    folder = tmp_path_factory.mktemp("archive")
    for i in range(11):
        write_clip(folder / f"clip{i:02d}.mp4", frames=24 + i, size=(256, 192), face=True)
    cut_demo(folder / "demo.mp4")
    return folder


def messages(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(path: Path) -> list[dict]:
    """What two runs of the same video must agree on: results, windows and eos, without timings and sids."""
    return [{k: v for k, v in m.items() if k not in TIMING} for m in messages(path) if m["type"] != "status"]


def assert_close(a, b, where: str = "", tol: float = 1e-4) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}", tol)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]", tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= tol, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_complete(path: Path) -> int:
    """One session, every result once in order, one eos at the end; returns the result count."""
    msgs = messages(path)
    results = [m for m in msgs if m["type"] == "result"]
    assert [r["seq"] for r in results] == list(range(len(results))), f"{path.name}: seq not 0..n-1 once each"
    assert len({m["sid"] for m in msgs}) == 1, f"{path.name}: more than one session"
    assert [m["type"] for m in msgs].count("eos") == 1 and msgs[-1]["type"] == "eos" and msgs[-1]["reason"] == "end"
    assert msgs[-1]["last_seq"] == len(results) - 1
    return len(results)


def manifest_states(out: Path) -> dict[str, dict]:
    try:
        files = json.loads((out / "manifest.json").read_text())["files"]
    except (OSError, ValueError):
        return {}
    return {Path(k).stem: v for k, v in files.items()}


def attempts(out: Path) -> list[dict]:
    """The attempts in flight: each task writes its attempt.json (node, start) into its own .partial folder."""
    found = []
    for p in (out / ".partial").glob("*/attempt.json"):
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            pass
    return found


def start_driver(folder_or_files, out: Path, address: str, log: Path) -> subprocess.Popen:
    args = [str(a) for a in (folder_or_files if isinstance(folder_or_files, list) else [folder_or_files])]
    with log.open("w") as err:  # the child keeps its own descriptor
        return subprocess.Popen([*AUFLOW, "run", *args, "--executor", "ray", "--ray-address", address, "--out", str(out),
                                 *SETS], stdout=subprocess.DEVNULL, stderr=err, env=ENV)


# -- without a cluster ----------------------------------------------------------------------------------
def test_without_ray_the_executor_is_one_error_naming_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from auflow.engine.distributed import import_ray

    with pytest.raises(ConfigError, match=r"auflow\[ray\]"):
        import_ray()


def test_executor_config_is_checked():
    cfg = load_config(None, ["executor.kind=ray", "executor.gpus_per_video=0.25", "executor.address=auto"])
    assert cfg.executor.kind == "ray" and cfg.executor.gpus_per_video == 0.25
    with pytest.raises(ConfigError, match="executor"):
        load_config(None, ["executor.kind=spark"])
    with pytest.raises(ConfigError, match="cpus_per_video"):
        load_config(None, ["executor.cpus_per_video=0"])


def test_ray_executor_refuses_live_streams():
    with pytest.raises(ConfigError, match="fleet"):
        runner.run(load_config(None, [*OVERRIDES, "executor.kind=ray"]), ["rtsp://127.0.0.1:8554/cam"])


# -- on a local 3-node cluster (a head with no CPUs, two workers of one CPU) ----------------------------
@pytest.mark.ray
@pytest.mark.timeout(180)
def test_corrupt_and_missing_videos_are_failed_entries_and_the_rest_is_done(ray_cluster, tmp_path, not_a_video):
    good = [write_clip(tmp_path / f"good{i}.mp4", frames=12, size=(160, 120), face=True) for i in range(2)]
    missing = tmp_path / "gone.mp4"
    out = tmp_path / "out"
    log = tmp_path / "driver.log"
    proc = start_driver([*good, not_a_video, missing], out, ray_cluster.address, log)
    assert proc.wait(150) == 3, log.read_text()[-3000:]  # some videos failed: the exit status says so
    states = manifest_states(out)
    assert {k: v["state"] for k, v in states.items()} == {"good0": "done", "good1": "done", "notes": "failed", "gone": "failed"}
    assert "gone.mp4" in states["gone"]["error"] and "notes.mp4" in states["notes"]["error"]
    stderr = log.read_text()
    assert "gone.mp4" in stderr and "notes.mp4" in stderr  # one error line each, for people
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["failed"]) == 2 and sorted(summary["streams"]) == ["good0", "good1"]
    for i in range(2):
        assert assert_complete(out / f"good{i}.jsonl") == 12
    assert not (out / "notes.jsonl").exists() and not (out / ".partial").exists()


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_driver_killed_mid_archive_then_rerun_runs_only_the_unfinished(ray_cluster, archive, tmp_path):
    out = tmp_path / "out"
    proc = start_driver(archive, out, ray_cluster.address, tmp_path / "driver1.log")
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and proc.poll() is None:
            done = [k for k, v in manifest_states(out).items() if v["state"] == "done"]
            if len(done) >= 3:
                proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to clean up or save
                break
            time.sleep(0.02)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the driver finished before it could be killed"
    at_kill = manifest_states(out)
    done = {k for k, v in at_kill.items() if v["state"] == "done"}
    assert 3 <= len(done) < 12
    kept = {k: ((out / f"{k}.jsonl").read_bytes(), (out / f"{k}.jsonl").stat().st_mtime_ns) for k in done}

    log = tmp_path / "driver2.log"
    rerun = start_driver(archive, out, ray_cluster.address, log)
    assert rerun.wait(240) == 0, log.read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(Path(p).stem for p in summary["skipped"]) == sorted(done)
    assert set(summary["streams"]) == {p.stem for p in archive.iterdir()} - done, "the re-run ran exactly the unfinished"
    for k, (data, mtime) in kept.items():  # finished outputs untouched
        assert (out / f"{k}.jsonl").read_bytes() == data and (out / f"{k}.jsonl").stat().st_mtime_ns == mtime
    states = manifest_states(out)
    assert len(states) == 12 and {v["state"] for v in states.values()} == {"done"}
    for p in archive.iterdir():
        assert assert_complete(out / f"{p.stem}.jsonl") == states[p.stem]["frames"]


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_a_worker_node_lost_mid_run_costs_only_its_video_in_flight_and_results_equal_one_machine(
        ray_cluster, archive, tmp_path):
    out = tmp_path / "ray"
    log = tmp_path / "driver.log"
    proc = start_driver(archive, out, ray_cluster.address, log)
    victim, lost = None, None
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and proc.poll() is None and victim is None:
            done = [v for v in manifest_states(out).values() if v["state"] == "done"]
            # an attempt that has just started (its video still has seconds to go) on a node that already finished one
            fresh = [a for a in attempts(out) if time.time() - a["t_start"] < 0.5
                     and any(d.get("node") == a["node"] for d in done)]
            if len(done) >= 2 and fresh:
                lost = fresh[0]
                victim = ray_cluster.node_of(lost["node"])
                ray_cluster.kill(victim, pids=(lost["pid"],))
            time.sleep(0.02)
        assert victim is not None, f"no node was killed mid-run: {log.read_text()[-3000:]}"
        assert proc.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        ray_cluster.workers.append(ray_cluster.add_worker())  # the next test finds two workers again
        ray_cluster.cluster.wait_for_nodes()

    states = manifest_states(out)
    names = {p.stem for p in archive.iterdir()}
    assert set(states) == names and {v["state"] for v in states.values()} == {"done"}
    # the video in flight on the lost node was done again elsewhere, once
    assert states[lost["cam"]]["node"] != lost["node"], "the lost node's video was not rerun on another node"
    assert len({v["node"] for v in states.values()}) == 2, "the videos ran on both worker nodes"
    # the run directory holds one complete output per video, nothing partial or duplicated
    assert {p.name for p in out.iterdir()} == {f"{n}.jsonl" for n in names} | {
        "manifest.json", "summary.json", "config.yaml", ".driver.lock"}
    for n in names:
        assert assert_complete(out / f"{n}.jsonl") == states[n]["frames"]

    # one machine, the same config: the same frames, seq, tracks, values within 1e-4
    ref = tmp_path / "local"
    local = runner.run(load_config(None, OVERRIDES), [str(archive)], run_dir=ref)
    assert sorted(local.stats) == sorted(names) and not local.errors
    for n in sorted(names):
        assert_close(comparable(out / f"{n}.jsonl"), comparable(ref / f"{n}.jsonl"), n)
    assert sum(1 for m in messages(out / "demo.jsonl") if m["type"] == "result" and m["faces"]) >= 40  # real faces compared


def test_one_driver_per_run_directory(tmp_path):
    from auflow.engine.distributed.archive import _driver_lock

    with _driver_lock(tmp_path / "run"):
        with pytest.raises(ConfigError, match="another auflow run is writing"):
            with _driver_lock(tmp_path / "run"):
                pass
    with _driver_lock(tmp_path / "run"):  # released at the end of the first
        pass
