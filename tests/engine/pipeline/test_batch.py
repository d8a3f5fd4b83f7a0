"""Batches of files: a manifest of what is done, resumed after a crash; damage never stops a batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stream_media import damage, write_clip
from watched_run import config

from auflow.engine import runner
from auflow.engine.sources.manifest import BatchManifest

AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]


def test_manifest_round_trip_and_fingerprint(tmp_path):
    video = write_clip(tmp_path / "a.mp4", frames=3)
    m = BatchManifest(tmp_path / "out" / "manifest.json")
    assert not m.is_done(video)
    m.mark(video, "a", "running")
    assert not BatchManifest(m.path).is_done(video)
    m.mark(video, "a", "done", frames=3)
    again = BatchManifest(m.path)
    assert again.is_done(video) and again.cam_for(video) == "a" and again.entry(video)["frames"] == 3
    os.utime(video, ns=(1, 1))  # a replaced recording is processed again
    assert not BatchManifest(m.path).is_done(video)


def test_unreadable_manifest_is_moved_aside(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    m = BatchManifest(path)
    assert m.files == {} and not path.exists()
    assert len(list(tmp_path.glob("manifest.json.bad-*"))) == 1


@pytest.mark.timeout(120)
def test_batch_rerun_skips_what_is_done(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        write_clip(folder / f"v{i}.mp4", frames=8)
    cfg = config("source.workers=thread", "sinks=[{name: jsonl}]")
    out = tmp_path / "out"
    first = runner.run(cfg, [str(folder)], run_dir=out)
    assert sorted(first.stats) == ["v0", "v1", "v2"] and not first.skipped
    assert all(s.reason == "end" and s.frames_out == 8 for s in first.stats.values())
    assert {p.name for p in out.glob("*.jsonl")} == {"v0.jsonl", "v1.jsonl", "v2.jsonl"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["state"] for e in manifest["files"].values()} == {"done"}
    second = runner.run(cfg, [str(folder)], run_dir=out)
    assert second.stats == {} and len(second.skipped) == 3
    assert len(runner.run(cfg.model_copy(update={"source": cfg.source.model_copy(update={"resume": False})}),
                          [str(folder)], run_dir=out).stats) == 3


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_damaged_files_give_the_clean_results_up_to_the_damage_and_the_batch_goes_on(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    clean = write_clip(tmp_path / "clean.mp4", frames=40, face=True, faststart=True)
    clean_ts = write_clip(tmp_path / "clean.ts", frames=40, face=True, fmt="mpegts")
    intact = {"a_garbage": damage(clean, folder / "a_garbage.mp4", "garbage"),
              "b_truncated": damage(clean_ts, folder / "b_truncated.ts", "truncate")}
    (folder / "c_clean.mp4").write_bytes(clean.read_bytes())
    (folder / "d_clean.ts").write_bytes(clean_ts.read_bytes())
    cfg = config("source.workers=process", "analyzer.models=[{name: fer}]", "sinks=[{name: jsonl}]")
    out = tmp_path / "out"
    outcome = runner.run(cfg, [str(folder)], run_dir=out)
    assert list(outcome.stats) == ["a_garbage", "b_truncated", "c_clean", "d_clean"]

    def messages(cam):
        return [json.loads(line) for line in (out / f"{cam}.jsonl").read_text().splitlines()]

    def faces(msg):
        return [(f["track"], f["bbox"], f["kps"], f["expr"]) for f in msg["faces"]]

    for cam, reference in (("a_garbage", "c_clean"), ("b_truncated", "d_clean")):
        got, ref = messages(cam), messages(reference)
        res = {m["frame"]: m for m in got if m["type"] == "result"}
        ref_res = {m["frame"]: m for m in ref if m["type"] == "result"}
        assert len(ref_res) == 40 and len(res) >= intact[cam]
        for frame in range(intact[cam]):
            assert faces(res[frame]) == faces(ref_res[frame]), f"{cam} frame {frame} differs before the damage"
        assert sum(len(ref_res[f]["faces"]) for f in range(intact[cam])) >= intact[cam] - 2  # real faces compared
        eos = [m for m in got if m["type"] == "eos"]
        assert len(eos) == 1 and eos[0]["reason"] == "end" and eos[0]["decode_errors"] >= 1
        assert [m for m in got if m["type"] == "status"][-1]["decode_errors"] == eos[0]["decode_errors"]
        assert outcome.stats[cam].decode_errors >= 1 and outcome.stats[cam].error is None
    for cam in ("c_clean", "d_clean"):  # the batch went on after the damaged files
        eos = [m for m in messages(cam) if m["type"] == "eos"]
        assert eos[0]["reason"] == "end" and eos[0]["decode_errors"] == 0 and eos[0]["last_seq"] == 39


def _children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_batch_killed_after_the_second_file_resumes_with_the_rest(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    names = [f"interview{i}" for i in range(1, 6)]
    for n in names:
        write_clip(folder / f"{n}.mp4", frames=150, face=True)
    out = tmp_path / "out"
    cmd = [*AUFLOW, "run", str(folder), "--out", str(out), "--publish", "none", "--set", "analyzer.models=[]"]
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    manifest = out / "manifest.json"
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            workers |= _children(proc.pid)
            try:
                files = json.loads(manifest.read_text())["files"]
            except (OSError, ValueError):
                files = {}
            states = {Path(k).stem: v["state"] for k, v in files.items()}
            if states.get("interview3") == "running" and states.get("interview2") == "done":
                proc.send_signal(signal.SIGKILL)  # a crash: nothing gets to clean up
                break
            time.sleep(0.01)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed during file 3"
    for pid in workers:  # a worker whose parent died exits by itself
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        assert not _alive(pid), f"worker {pid} outlived its killed parent"

    done_before = {n: (out / f"{n}.jsonl").read_bytes() for n in names[:2]}
    mtimes = {n: (out / f"{n}.jsonl").stat().st_mtime_ns for n in names[:2]}
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["streams"]) == names[2:], "the re-run processes files 3-5 only"
    assert sorted(Path(p).stem for p in summary["skipped"]) == names[:2]
    for n in names[:2]:
        assert (out / f"{n}.jsonl").read_bytes() == done_before[n] and (out / f"{n}.jsonl").stat().st_mtime_ns == mtimes[n]
    for n in names[2:]:  # complete, and the interrupted file's partial output was started afresh
        msgs = [json.loads(line) for line in (out / f"{n}.jsonl").read_text().splitlines()]
        results = [m for m in msgs if m["type"] == "result"]
        assert [r["seq"] for r in results] == list(range(150)) and len({r["sid"] for r in results}) == 1
        assert [m["type"] for m in msgs].count("eos") == 1 and msgs[-1]["type"] == "eos"
    states = {Path(k).stem: v["state"] for k, v in json.loads(manifest.read_text())["files"].items()}
    assert states == {n: "done" for n in names}
