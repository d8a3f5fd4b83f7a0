"""A batch of recorded videos on a Ray cluster: ``auflow run FOLDER --executor ray``.

One Ray task per video runs auflow's own per-video pipeline (:func:`auflow.engine.runner.run` on
that one file, ``executor.kind: local``) on whichever node has ``cpus_per_video`` /
``gpus_per_video`` free. What makes it safe to spread and to retry:

- a task writes into its own folder, ``<run dir>/.partial/<cam>.<attempt>/``, and only when its
  video has ended moves each output (``<cam>.jsonl``, ``<cam>.csv``…) into the run directory with
  ``os.replace``: a reader never sees half a file, and an attempt that runs twice (Ray reruns the
  task of a node that died; a node thought dead that was not) replaces a complete file with an
  identical one — never a second copy appended;
- the driver (this process) alone writes ``manifest.json``, from the tasks' results: it stays the
  one record of what is done, so the same command again — after a finished run, a Ctrl-C or the
  driver's own crash — runs only the videos it does not mark done; two drivers on one run
  directory are refused (a lock file);
- Ray retries what a dead node or worker lost (the task's ``max_retries`` = ``executor.max_retries``);
  an error in a video (corrupt, missing, unreadable) is not retried (``retry_exceptions=False``):
  it is one ``failed`` entry with its error line, and the other videos go on.

Only the config, a path, a camera id and a summary of a few hundred bytes go through Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig, dump_config
from ..errors import AuflowError, ConfigError
from ..pipeline.stats import StreamStats
from . import connect, disconnect, import_ray

log = logging.getLogger(__name__)

PARTIAL = ".partial"  # per-attempt work folders inside the run directory
_KEEP_IN_PARTIAL = {"config.yaml", "summary.json", "attempt.json"}  # the per-video run's own files
SAVE_EVERY_S = 1.0  # the manifest is rewritten at most this often while results stream in (and at the end)


# -- the task: runs on a worker node ------------------------------------------------------------------
def process_video(cfg_data: dict, uri: str, cam: str, run_dir: str) -> dict:
    """One video, start to end, with this node's resources; returns its summary (never frames)."""
    import ray

    from .. import runner

    t_start = time.time()
    node = ray.get_runtime_context().get_node_id()
    cfg = RunConfig.model_validate(cfg_data)
    # the per-video pipeline: this file alone, under the batch's camera id, to files only (a task has no
    # stable address to publish on; the fleet's actors are the live path)
    cfg.executor.kind = "local"
    cfg.source.cam, cfg.source.parallel = cam, 1
    cfg.publish.endpoint = None
    part = Path(run_dir) / PARTIAL / f"{cam}.{uuid.uuid4().hex[:10]}"
    part.mkdir(parents=True, exist_ok=False)
    where = {"node": node, "host": socket.gethostname(), "pid": os.getpid()}
    import_s = time.time() - t_start  # the worker process's first task pays for importing the pipeline (torch...)
    (part / "attempt.json").write_text(json.dumps({"uri": uri, "cam": cam, "t_start": t_start, **where}), encoding="utf-8")
    base = {"uri": uri, "cam": cam, **where, "t_start": t_start, "import_s": round(import_s, 4)}
    t_run = time.time()
    try:
        outcome = runner.run(cfg, [uri], run_dir=part)
    except AuflowError as e:  # the video cannot be opened (missing, not a video): one failed entry, no retry
        shutil.rmtree(part, ignore_errors=True)
        return {**base, "state": "failed", "error": str(e), "t_end": time.time()}
    run_s = time.time() - t_run  # the per-video run whole: its pipeline's start-up (models loaded) and its frames
    st = outcome.stats[cam]
    _move_outputs(part, Path(run_dir))
    shutil.rmtree(part, ignore_errors=True)
    done = st.reason == "end" and not st.error
    return {**base, "state": "done" if done else "failed", "error": None if done else (st.error or f"{cam}: ended ({st.reason})"),
            "sid": st.sid, "frames": st.frames_out, "frames_decoded": st.frames_in, "total_frames": st.total_frames,
            "decode_errors": st.decode_errors, "faces": st.faces, "frames_with_face": st.frames_with_face,
            "tracks": {str(k): v for k, v in sorted(st.tracks.items())}, "last_seq": st.last_seq,
            "pipeline_s": round(outcome.wall_s, 4), "run_s": round(run_s, 4), "t_end": time.time()}


def _move_outputs(part: Path, run_dir: Path) -> None:
    """Each output of a finished attempt into the run directory, whole (``os.replace`` is atomic
    within one file system; a folder output such as parquet's replaces the old folder)."""
    for src in sorted(part.iterdir()):
        if src.name in _KEEP_IN_PARTIAL:
            continue
        dest = run_dir / src.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(src, dest)


# -- the driver ---------------------------------------------------------------------------------------
class ArchiveRun:
    """The driver's side of one batch on Ray: submits, collects, keeps the manifest. ``stop()`` (from a
    signal handler too) cancels what has not finished; those videos stay not done, for the next run."""

    def __init__(self, cfg: RunConfig, todo: list[str], cams: dict[str, str], run_dir: Path, manifest,
                 on_video: Callable[[dict], None] | None = None) -> None:
        self.cfg, self.todo, self.cams, self.run_dir, self.manifest = cfg, todo, cams, run_dir, manifest
        self.on_video = on_video
        self._stop = threading.Event()
        self.results: dict[str, dict] = {}  # uri → the task's summary (or the driver's, for a lost task)
        self.nodes: dict[str, int] = {}  # "host node-id-prefix" → videos it finished
        self.frames = 0
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        ray = import_ray()
        ex = self.cfg.executor
        task = ray.remote(process_video)
        opts = {"num_cpus": ex.cpus_per_video, "num_gpus": ex.gpus_per_video, "max_retries": ex.max_retries,
                "retry_exceptions": False}
        cfg_data = self.cfg.model_dump(mode="json")
        pending: dict = {}
        for uri in self.todo:
            ref = task.options(**opts, name=f"auflow:{self.cams[uri]}").remote(cfg_data, uri, self.cams[uri], str(self.run_dir))
            pending[ref] = (uri, time.time())
            self.manifest.mark(uri, self.cams[uri], "running", save=False, executor="ray")
        self.manifest.save()
        last_save = time.monotonic()
        dirty = False
        while pending:
            if self._stop.is_set():
                for ref, (uri, _) in pending.items():
                    ray.cancel(ref)
                    self._record(uri, {"uri": uri, "cam": self.cams[uri], "state": "interrupted", "error": None})
                self.manifest.save()
                return
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5, fetch_local=True)
            for ref in ready:
                uri, t_submit = pending.pop(ref)
                self._record(uri, self._result(ray, ref, uri, t_submit))
                dirty = True
            if dirty and (time.monotonic() - last_save >= SAVE_EVERY_S or not pending):
                self.manifest.save()
                last_save, dirty = time.monotonic(), False

    def _result(self, ray, ref, uri: str, t_submit: float) -> dict:
        cam = self.cams[uri]
        try:
            res = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return {"uri": uri, "cam": cam, "state": "interrupted", "error": None}
        except ray.exceptions.RayTaskError as e:  # raised inside the pipeline: a bug, reported with its cause
            cause = e.cause if getattr(e, "cause", None) is not None else e
            return {"uri": uri, "cam": cam, "state": "failed", "error": f"{cam}: {type(cause).__name__}: {cause}"}
        except ray.exceptions.RayError as e:  # the worker or node died more often than executor.max_retries
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return {"uri": uri, "cam": cam, "state": "failed",
                    "error": f"{cam}: lost {self.cfg.executor.max_retries + 1} times ({type(e).__name__}: {first})"}
        res["t_submit"] = t_submit
        return res

    def _record(self, uri: str, res: dict) -> None:
        self.results[uri] = res
        cam, state = res["cam"], res["state"]
        keep = {k: res[k] for k in ("error", "frames", "decode_errors", "node", "host", "sid") if res.get(k) is not None}
        if "t_start" in res and "t_end" in res:
            keep["task_s"] = round(res["t_end"] - res["t_start"], 3)
        self.manifest.mark(uri, cam, state, save=False, executor="ray", **keep)
        if state == "done":
            self.frames += res.get("frames", 0)
            label = f"{res.get('host', '?')} {res.get('node', '?')[:8]}"
            self.nodes[label] = self.nodes.get(label, 0) + 1
        if self.on_video is not None:
            self.on_video(self.progress(res))

    def progress(self, last: dict | None = None) -> dict:
        states = [r["state"] for r in self.results.values()]
        wall = time.perf_counter() - self.t0
        return {"video": last, "total": len(self.todo), "done": states.count("done"), "failed": states.count("failed"),
                "frames": self.frames, "fps": self.frames / max(wall, 1e-9), "nodes": dict(self.nodes), "wall_s": wall}


@contextlib.contextmanager
def _driver_lock(run_dir: Path):
    """One driver per run directory: the manifest has one writer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".driver.lock"
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(f"another auflow run is writing {run_dir} (its driver: {f.read().strip() or '?'}); "
                              "wait for it, or give this one another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_archive(cfg: RunConfig, inputs, run_dir: str | Path | None = None,
                on_video: Callable[[dict], None] | None = None,
                on_executor: Callable[[ArchiveRun], None] | None = None):
    """:func:`auflow.engine.runner.run` for ``executor.kind: ray``: the same plan (what the manifest
    marks done is skipped, camera ids stay stable), each remaining file as a Ray task."""
    from .. import runner
    from ..sources.manifest import BatchManifest

    others = [u for u in inputs.uris if u not in inputs.files]
    if others:
        raise ConfigError(f"executor ray runs video files (a folder, a glob, several files); {others[0]!r} is a live "
                          "stream or an image folder: run it with executor.kind: local, or a camera fleet (auflow fleet up)")
    if run_dir is None and not inputs.batch:
        run_dir = runner.new_run_dir(cfg.out, runner.cam_id_from(inputs.uris[0]))
    todo_plan = runner.plan(cfg, inputs, run_dir)
    run_dir = todo_plan.run_dir
    assert run_dir is not None  # noqa: S101 - set just above for a single file
    run_dir = run_dir.resolve()  # tasks on other nodes see the same path (shared storage)
    manifest = todo_plan.manifest or BatchManifest(run_dir / "manifest.json")
    if not todo_plan.todo:
        log.info("nothing to do: every file of the batch is done")
        return runner.RunOutcome(run_dir, {}, {}, 0.0, todo_plan.skipped)
    with _driver_lock(run_dir):
        shutil.rmtree(run_dir / PARTIAL, ignore_errors=True)  # attempts of an earlier driver that died
        (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        connected = connect(cfg.executor.address)
        archive = ArchiveRun(cfg, todo_plan.todo, todo_plan.cams, run_dir, manifest, on_video)
        if on_executor is not None:
            on_executor(archive)
        t0 = time.perf_counter()
        try:
            archive.run()
        finally:
            manifest.save()
            disconnect(connected)
        wall = time.perf_counter() - t0
        if not archive.stopping:
            shutil.rmtree(run_dir / PARTIAL, ignore_errors=True)
    outcome = _outcome(run_dir, archive, todo_plan.skipped, wall)
    (run_dir / "summary.json").write_text(json.dumps(outcome.summary(), indent=2), encoding="utf-8")
    return outcome


def _outcome(run_dir: Path, archive: ArchiveRun, skipped: list[str], wall: float):
    from ..runner import RunOutcome

    stats: dict[str, StreamStats] = {}
    failed: dict[str, str] = {}
    placement: dict[str, dict] = {}
    for uri, r in archive.results.items():
        cam = r["cam"]
        if r["state"] == "failed":
            failed[uri] = r["error"] or f"{cam}: failed"
            continue
        st = StreamStats(cam, uri, total_frames=r.get("total_frames"), sid=r.get("sid", ""), state="ended",
                         frames_out=r.get("frames", 0), faces=r.get("faces", 0),
                         frames_with_face=r.get("frames_with_face", 0), last_seq=r.get("last_seq", -1),
                         reason="end" if r["state"] == "done" else r["state"],
                         tracks={int(k): v for k, v in r.get("tracks", {}).items()})
        st.closed.frames, st.closed.decode_errors = r.get("frames_decoded", 0), r.get("decode_errors", 0)
        st.t_start, st.t_end = 0.0, r.get("pipeline_s") or 1e-9
        stats[cam] = st
        if "node" in r:
            placement[cam] = {"node": r["node"], "host": r["host"], "task_s": round(r["t_end"] - r["t_start"], 3),
                              "import_s": r.get("import_s"), "run_s": r.get("run_s"), "pipeline_s": r.get("pipeline_s"),
                              "queued_s": round(r["t_start"] - r["t_submit"], 3)}
    prog = archive.progress()
    executor = {"kind": "ray", "videos": prog["total"], "done": prog["done"], "failed": prog["failed"],
                "frames": prog["frames"], "fps": round(prog["frames"] / max(wall, 1e-9), 2), "nodes": prog["nodes"]}
    return RunOutcome(run_dir, stats, failed, wall, skipped, placement=placement, executor=executor)
