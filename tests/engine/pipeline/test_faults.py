"""Faults injected into real runs, each followed by the run's invariants (issue 22):

- results published == frames processed (summary.json), per camera;
- ``seq`` contiguous from 0 per session, one ``eos`` per session, its ``last_seq`` the last result's;
- every output readable: each JSONL line parses and holds exactly what was published;
- the manifest true: a file is ``done`` exactly when its stream reached its end without error;
- nothing left behind: child processes, threads and open file descriptors back to their count before.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from auflow.engine import runner
from auflow.engine.config import load_config
from helpers import write_face_video
from stream_media import write_clip
from watched_run import child_pids, open_fds

pytestmark = pytest.mark.slow  # real runs, 5-35 s each on 2 busy cores

FAST = ["publish.endpoint=null", "analyzer.models=[]", "source.reconnect.initial_s=0.2", "source.reconnect.max_s=1.0"]


class FaultRun:
    """``runner.run`` (what `auflow run` calls) in a thread, recording every message it emits."""

    def __init__(self, overrides: list[str], uris: list[str], run_dir: Path) -> None:
        self.cfg = load_config(None, [*FAST, *overrides])
        self.uris, self.run_dir = uris, run_dir
        self.messages: list[dict] = []
        self.pipe = None
        self.outcome = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="fault-run", daemon=True)

    def _hook(self, pipe) -> None:
        self.pipe = pipe
        emit = pipe._emit

        def record(msg: dict) -> None:
            with self._lock:
                self.messages.append(msg)
            emit(msg)

        pipe._emit = record

    def _run(self) -> None:
        try:
            self.outcome = runner.run(self.cfg, self.uris, self.run_dir, on_pipeline=self._hook)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            self.error = e

    def __enter__(self) -> FaultRun:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.pipe is not None:
            self.pipe.stop()
        self.thread.join(90)
        assert not self.thread.is_alive(), "the run did not end"

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.snapshot():
                if pred(m):
                    return m
            if not self.thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; error={self.error!r}")


def check_invariants(run_dir: Path, messages: list[dict]) -> dict:
    """The invariants of the module docstring; returns summary.json."""
    summary = json.loads((run_dir / "summary.json").read_text())
    by_cam: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        by_cam[m["cam"]].append(m)
    for cam, st in summary["streams"].items():
        msgs = by_cam.get(cam, [])
        results = [m for m in msgs if m["type"] == "result"]
        assert len(results) == st["frames"], f"{cam}: {len(results)} results published, {st['frames']} frames processed"
        sessions: dict[str, list[int]] = defaultdict(list)
        for r in results:
            sessions[r["sid"]].append(r["seq"])
        eos = [m for m in msgs if m["type"] == "eos"]
        assert len({e["sid"] for e in eos}) == len(eos), f"{cam}: a session has two eos"
        for e in eos:
            seqs = sessions.get(e["sid"], [])
            assert seqs == list(range(len(seqs))), f"{cam}/{e['sid']}: seq not contiguous"
            assert e["last_seq"] == (seqs[-1] if seqs else -1), f"{cam}/{e['sid']}: eos last_seq"
        assert set(sessions) <= {e["sid"] for e in eos}, f"{cam}: a session without eos"
        if st["end"] is not None:
            assert eos and msgs[-1]["type"] in ("eos", "status"), f"{cam}: the stream ended without its eos last"
        jsonl = run_dir / f"{cam}.jsonl"
        if jsonl.exists():
            lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
            assert [(m["sid"], m["seq"]) for m in lines if m["type"] == "result"] == \
                   [(m["sid"], m["seq"]) for m in results], f"{cam}: JSONL differs from what was published"
            assert [m["sid"] for m in lines if m["type"] == "eos"] == [e["sid"] for e in eos]
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        files = json.loads(manifest.read_text())["files"]
        for entry in files.values():
            st = summary["streams"].get(entry["cam"])
            if st is None:
                continue
            clean = st["end"] == "end" and not st["error"]
            assert (entry["state"] == "done") == clean, f"manifest says {entry['state']} for {entry['cam']}: {st}"
    return summary


@pytest.fixture
def leak_check():
    """Counts child processes, threads and fds before the test and after it (after a warm-up run, so what
    a first run creates once and keeps, such as torch's thread pool, is in the baseline)."""
    def counts():
        return len(child_pids()), threading.active_count(), open_fds()

    before = counts()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(a > b for a, b in zip(counts(), before)):
        time.sleep(0.2)
    after = counts()
    assert after[0] <= before[0], f"child processes left behind: {before[0]} -> {after[0]}"
    assert after[1] <= before[1], f"threads left behind: {before[1]} -> {after[1]} ({[t.name for t in threading.enumerate()]})"
    assert after[2] <= before[2], f"file descriptors left behind: {before[2]} -> {after[2]}"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    long_a, long_b = write_clip(folder / "a.mp4", frames=150), write_clip(folder / "b.mp4", frames=150)
    short = write_clip(folder / "short.mp4", frames=20)
    # the warm-up run: what a first run creates once (spawn's resource tracker, thread pools) is no leak
    with FaultRun(["source.workers=process"], [str(short)], folder / "warm") as run:
        run.thread.join(60)
    return {"a": long_a, "b": long_b, "short": short}


@pytest.mark.timeout(180)
def test_killed_file_worker_fails_that_file_only(clips, tmp_path, leak_check):
    with FaultRun(["source.workers=process", "source.parallel=2", "source.queue=4"],
                  [str(clips["a"]), str(clips["b"])], tmp_path / "run") as run:
        run.wait_for(lambda m: m["type"] == "result" and m["cam"] == "a" and m["seq"] >= 5, 60, "results of a")
        run.pipe.handles["a"].kill()  # SIGKILL: a segfault in a decoder
        run.thread.join(120)
    assert run.error is None, run.error
    summary = check_invariants(tmp_path / "run", run.snapshot())
    a, b = summary["streams"]["a"], summary["streams"]["b"]
    assert a["end"] == "error" and "worker process died" in a["error"] and 5 <= a["frames"] < 150
    assert b["end"] == "end" and b["frames"] == 150 and b["error"] is None
    files = json.loads((tmp_path / "run" / "manifest.json").read_text())["files"]
    assert sorted(e["state"] for e in files.values()) == ["done", "failed"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("delay_s", [0.0, 3.0], ids=["at-once", "after-the-source-ended"])
def test_a_model_that_raises_mid_batch_ends_the_run_cleanly(clips, tmp_path, leak_check, delay_s):
    """Either order: the model raises while the source still decodes, or (delay_s, large queues) after the
    source reached its end and its eos waits behind the failing batch: the stream ends with the error
    (it ended 'end' in CI once, its frames after the failure unanalysed)."""
    video = write_face_video(tmp_path / "faces.mp4", frames=60)  # the model runs only on frames with a face
    model = f"{{name: 'fault_plugins:ExplodingModel', options: {{delay_s: {delay_s}}}}}"
    queues = ["source.queue=100"] if delay_s else []
    with FaultRun(["source.workers=thread", f"analyzer.models=[{model}]", *queues,
                   "analyzer.batch=2", "analyzer.max_wait_ms=0"], [str(video)], tmp_path / "run") as run:
        run.thread.join(120)
    assert run.error is None, f"the run raised instead of ending its streams: {run.error!r}"
    summary = check_invariants(tmp_path / "run", run.snapshot())
    a = summary["streams"]["faces"]
    assert a["end"] == "error" and "injected" in a["error"] and a["frames"] < 60, a
    if delay_s:
        assert a["frames_decoded"] == 60, a  # the case this parameter is for: the source had reached its end
    eos = [m for m in run.snapshot() if m["type"] == "eos"]
    assert len(eos) == 1 and eos[0]["reason"] == "error" and "injected" in eos[0]["error"]


@pytest.mark.timeout(180)
def test_a_file_that_shrinks_while_read(clips, tmp_path, leak_check):
    clip = tmp_path / "shrinking.mp4"
    clip.write_bytes(clips["a"].read_bytes())
    with FaultRun(["source.workers=thread", "source.queue=2"], [str(clip)], tmp_path / "run") as run:
        run.wait_for(lambda m: m["type"] == "result" and m["seq"] >= 3, 60, "results")
        os.truncate(clip, clip.stat().st_size // 3)  # a recording rotated away or cut under the reader
        run.thread.join(120)
    assert run.error is None, run.error
    summary = check_invariants(tmp_path / "run", run.snapshot())
    st = summary["streams"]["shrinking"]
    assert st["frames"] < 150 and (st["decode_errors"] > 0 or st["end"] == "error"), st


@pytest.mark.timeout(180)
def test_a_file_that_grows_while_read(clips, tmp_path, leak_check):
    clip = tmp_path / "growing.mp4"
    clip.write_bytes(clips["a"].read_bytes())
    with FaultRun(["source.workers=thread", "source.queue=2"], [str(clip)], tmp_path / "run") as run:
        run.wait_for(lambda m: m["type"] == "result" and m["seq"] >= 3, 60, "results")
        with open(clip, "ab") as f:  # a recorder still appending (garbage after the index)
            f.write(os.urandom(200_000))
        run.thread.join(120)
    assert run.error is None, run.error
    summary = check_invariants(tmp_path / "run", run.snapshot())
    assert summary["streams"]["growing"]["end"] in ("end", "error")


@pytest.mark.timeout(180)
def test_a_sink_whose_disk_fills(clips, tmp_path):
    """`auflow run` under a file-size limit (RLIMIT_FSIZE, as a full disk: writes fail with EFBIG): the run
    ends every stream with the sink's error, a subscriber still gets each eos, the JSONL holds whole
    lines up to the failure, summary.json says why, one error and no traceback."""
    import resource
    import signal
    import subprocess
    import sys

    import msgpack
    import zmq
    from helpers import free_port

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write() instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 1000)
    sub.connect(endpoint)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", str(clips["a"]), "--out", str(out),
                             "--publish", endpoint, "--wait-subscribers", "1", "--set", "analyzer.models=[]"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit,
                            env=dict(os.environ, COLUMNS="300", NO_COLOR="1"))
    published = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                published.append(msgpack.unpackb(sub.recv_multipart()[1], raw=False))
            except zmq.Again:
                if proc.poll() is not None:
                    break
                continue
            if published[-1]["type"] == "eos":
                break
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close(linger=0)
    assert proc.returncode == 3 and "Traceback" not in stderr, stderr[-3000:]
    assert "cannot write" in stderr and ("File too large" in stderr or "No space" in stderr), stderr[-2000:]
    eos = [m for m in published if m["type"] == "eos"]
    assert len(eos) == 1 and eos[0]["reason"] == "error" and "cannot write" in eos[0]["error"], published[-3:]
    results = [m for m in published if m["type"] == "result"]
    assert [r["seq"] for r in results] == list(range(len(results))) and eos[0]["last_seq"] == len(results) - 1
    text = (out / "a.jsonl").read_text()
    whole = [json.loads(line) for line in text.split("\n")[:-1]]  # the last piece may be cut by the limit
    assert whole and all(m["type"] in ("result", "status") for m in whole)
    assert [m["seq"] for m in whole if m["type"] == "result"] == list(range(sum(m["type"] == "result" for m in whole)))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["streams"]["a"]["end"] == "error" and "cannot write" in summary["streams"]["a"]["error"]
    assert summary["streams"]["a"]["frames"] == len(results)  # published == processed


@pytest.mark.rtsp
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kill_after_s", [0.0, 0.15, 0.4, 1.0])
def test_rtsp_server_killed_during_the_first_connect(clips, rtsp_server, tmp_path, kill_after_s, leak_check):
    """The camera dies while auflow connects to it (before, during or just after the RTSP handshake): one
    error line for that stream, an eos for every session it had, nothing left behind."""
    # counted with the server up, as at the start: its own process is the fixture's, not the run's
    with FaultRun(["source.workers=process", "source.open_timeout_s=2", "source.watchdog_s=2",
                   "source.reconnect.max_attempts=2"], [rtsp_server.url], tmp_path / "run") as run:
        time.sleep(kill_after_s)
        rtsp_server.kill()
        run.thread.join(120)
        rtsp_server.start()  # the fixture's process again, so that the leak count compares like with like
    assert run.error is None, run.error
    summary = check_invariants(tmp_path / "run", run.snapshot())
    (st,) = summary["streams"].values()
    assert st["end"] == "error" and "\n" not in st["error"], st
    eos = [m for m in run.snapshot() if m["type"] == "eos"]
    assert eos and eos[-1]["reason"] == "error"


@pytest.mark.timeout(180)
def test_a_subscriber_that_disconnects_and_reconnects(clips, tmp_path, leak_check):
    """A viewer drops out and comes back mid-run: the run does not notice (every frame processed is
    published and written), and the viewer's gap count says exactly what it missed."""
    from auflow.engine.wire.subscriber import Subscriber
    from helpers import free_port

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = Subscriber(endpoint, topics=["result/", "eos/"])
    with FaultRun(["source.workers=thread", "source.realtime=true", f"publish.endpoint={endpoint}",
                   "publish.wait_subscribers=2", "publish.wait_timeout_s=30"], [str(clips["a"])], tmp_path / "run") as run:
        seen_first = [first.recv(30) for _ in range(10)]
        first.close()
        time.sleep(0.5)  # results go by unseen
        with Subscriber(endpoint, topics=["result/", "eos/"]) as second:
            got = []
            while (m := second.recv(30)) is not None:
                got.append(m)
                if m.type == "eos":
                    break
            lost = second.gaps.lost
        run.thread.join(60)
    assert run.error is None, run.error
    summary = check_invariants(tmp_path / "run", run.snapshot())
    total = summary["streams"]["a"]["frames"]
    assert [m.header["seq"] for m in seen_first] == list(range(10))
    results = [m for m in got if m.type == "result"]
    assert got[-1].type == "eos" and got[-1].header["last_seq"] == total - 1
    assert results and results[0].header["seq"] > 10, "the second subscriber should have missed some results"
    assert len(results) + lost == total, "received + counted as lost == published"
