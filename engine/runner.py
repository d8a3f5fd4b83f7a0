"""One call that runs a config on sources and leaves a run directory behind.

Used by ``auflow run``, ``auflow demo``, the benchmarks and the tests: expand folders and globs,
pre-flight every source (a missing or unreadable file fails here with one line, before any model
loads; live sources are only checked for a well-formed address, since a camera that is down at
start is the stream's own business), make the run directory (resolved config, per-camera outputs,
``summary.json``), run the pipeline.

A *batch* (a folder or glob of videos, or several files) also keeps ``manifest.json`` in the run
directory: re-running the same command skips the files it marks done and redoes the rest. Without
``--out`` a batch writes to ``<out>/batch-<folder name>`` (no timestamp), so that the re-run finds it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, dump_config
from .errors import AuflowError, SourceError
from .pipeline.core import Pipeline, StreamStats
from .redaction import redact_text, redact_uri
from .sources import Source, expand_inputs, make_source
from .sources.core import cam_id_from
from .sources.manifest import BatchManifest

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_dir: Path
    stats: dict[str, StreamStats]
    failed: dict[str, str] = field(default_factory=dict)  # uri → error line, for streams that never ran
    wall_s: float = 0.0
    skipped: list[str] = field(default_factory=list)  # batch files the manifest marks done
    #: executor ray: cam → the node (and host) that ran it, and the run's figures (videos, frames/s, per node)
    placement: dict[str, dict] = field(default_factory=dict)
    executor: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [redact_text(e) for e in (*self.failed.values(), *(s.error for s in self.stats.values() if s.error))]

    def summary(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "wall_s": round(self.wall_s, 3),
            "streams": {
                cam: {"uri": redact_uri(s.uri), "sid": s.sid, "frames": s.frames_out, "frames_decoded": s.frames_in,
                      "total_frames": s.total_frames, "faces": s.faces, "frames_with_face": s.frames_with_face,
                      "tracks": {str(k): v for k, v in sorted(s.tracks.items())}, "fps": round(s.fps, 2),
                      "decode_errors": s.decode_errors, "dropped": s.dropped, "decimated": s.decimated,
                      "sessions": s.sessions, "restarts": s.restarts, "last_seq": s.last_seq,
                      "end": s.reason, "error": s.error and redact_text(s.error)}
                for cam, s in self.stats.items()
            },
            "failed": {redact_uri(uri): redact_text(err) for uri, err in self.failed.items()},
            "skipped": self.skipped,
            **({"placement": self.placement} if self.placement else {}),
            **({"executor": self.executor} if self.executor else {}),
        }


def new_run_dir(out: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{stamp}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def _unique_cams(uris: list[str], fixed: dict[str, str], single_cam: str | None) -> dict[str, str]:
    """A camera id per uri: the config's for a single stream, the manifest's for a known file,
    else derived from the name, with ``_2``, ``_3``… when two files share a name."""
    cams: dict[str, str] = {}
    used: set[str] = set(fixed.values())
    for uri in uris:
        if uri in fixed:
            cams[uri] = fixed[uri]
            continue
        base = single_cam if single_cam and len(uris) == 1 else cam_id_from(uri)
        cam, i = base, 1
        while cam in used:
            i += 1
            cam = f"{base}_{i}"
        used.add(cam)
        cams[uri] = cam
    return cams


def preflight(uris: list[str], cfg: RunConfig, cams: dict[str, str] | None = None) -> tuple[list[Source], dict[str, str]]:
    """Open and close each file once (the ones that fail are reported, not run); live sources are
    only built, which checks their address."""
    ok, failed = [], {}
    cams = cams or _unique_cams(uris, {}, cfg.source.cam)
    for uri in uris:
        try:
            src = make_source(uri, cfg.source, cam=cams.get(uri))
            if not src.live:
                src.open()
                src.close()
            ok.append(src)
        except SourceError as e:
            failed[uri] = str(e)
    return ok, failed


def _remove_partial_outputs(run_dir: Path, cam: str) -> None:
    """A file redone after an interruption starts its outputs afresh (sinks append)."""
    for p in run_dir.glob(f"{cam}.*"):
        if p.is_file() and "." not in p.name[len(cam) + 1:]:
            p.unlink()
    shutil.rmtree(run_dir / f"{cam}.parquet", ignore_errors=True)  # the parquet sink writes a folder of parts


@dataclass
class BatchPlan:
    """What a run has to do, as both executors see it: the files to run (with their camera ids,
    stable across re-runs), those the manifest marks done, and the manifest itself (batches only)."""

    todo: list[str]
    cams: dict[str, str]
    skipped: list[str]
    manifest: BatchManifest | None
    run_dir: Path | None
    files: list[str]


def plan(cfg: RunConfig, inputs, run_dir: str | Path | None) -> BatchPlan:
    if run_dir is None:
        run_dir = Path(cfg.out) / f"batch-{inputs.name}" if inputs.batch else None
    manifest = BatchManifest(Path(run_dir) / "manifest.json") if inputs.batch and run_dir is not None else None
    todo, skipped, fixed = [], [], {}
    for uri in inputs.uris:
        if manifest is not None and uri in inputs.files:
            if cfg.source.resume and manifest.is_done(uri):
                skipped.append(uri)
                continue
            if manifest.cam_for(uri):
                fixed[uri] = manifest.cam_for(uri)
        todo.append(uri)
    # names stay stable across re-runs, and a skipped file's name stays taken
    taken = {u: manifest.cam_for(u) for u in skipped} if manifest is not None else {}
    cams = _unique_cams(todo, {**fixed, **{k: v for k, v in taken.items() if v}}, cfg.source.cam)
    if skipped:
        log.info("%d of %d files already done (%s): skipping them", len(skipped), len(inputs.files), manifest.path)
    return BatchPlan(todo, cams, skipped, manifest, Path(run_dir) if run_dir is not None else None, inputs.files)


def run(cfg: RunConfig, uris: list[str], run_dir: str | Path | None = None,
        on_result: Callable[[StreamStats], None] | None = None,
        on_publish_ready: Callable[[str], None] | None = None,
        on_pipeline: Callable[[Pipeline], None] | None = None,
        on_video: Callable[[dict], None] | None = None) -> RunOutcome:
    """Run ``cfg`` on ``uris``. Raises SourceError when no source can be opened at all.

    ``executor.kind: ray`` runs each file as a Ray task instead (:mod:`.distributed.archive`):
    ``on_video`` then gets each video's summary as it ends, and ``on_pipeline`` an object whose
    ``stop()`` ends the run as :meth:`Pipeline.stop` does."""
    inputs = expand_inputs(uris)
    if cfg.executor.kind == "ray":
        from .distributed.archive import run_archive

        return run_archive(cfg, inputs, run_dir, on_video=on_video, on_executor=on_pipeline)
    todo_plan = plan(cfg, inputs, run_dir)
    todo, skipped, cams, manifest = todo_plan.todo, todo_plan.skipped, todo_plan.cams, todo_plan.manifest
    run_dir = todo_plan.run_dir
    if not todo:
        log.info("nothing to do: every file of the batch is done")
        return RunOutcome(Path(run_dir), {}, {}, 0.0, skipped)
    sources, failed = preflight(todo, cfg, cams)
    if manifest is not None:
        for uri, err in failed.items():
            if uri in inputs.files:
                manifest.mark(uri, cams[uri], "failed", error=err)
    if not sources:
        raise SourceError("; ".join(failed.values()))
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg.out, sources[0].cam)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")

    def started(st: StreamStats) -> None:
        if manifest is not None and st.uri in inputs.files:
            _remove_partial_outputs(run_dir, st.cam)
            manifest.mark(st.uri, st.cam, "running")

    def ended(st: StreamStats) -> None:
        if manifest is None or st.uri not in inputs.files:
            return
        if st.reason == "end" and not st.error:
            manifest.mark(st.uri, st.cam, "done", frames=st.frames_out, decode_errors=st.decode_errors)
        elif st.reason == "not started":
            pass
        else:
            manifest.mark(st.uri, st.cam, "interrupted" if st.reason == "interrupted" else "failed", error=st.error)

    pipe = Pipeline(cfg, sources, run_dir, on_result=on_result, on_publish_ready=on_publish_ready,
                    on_stream_start=started, on_stream_end=ended)
    if on_pipeline is not None:
        on_pipeline(pipe)
    t0 = time.perf_counter()
    try:
        stats = pipe.run()
    finally:
        wall = time.perf_counter() - t0
    outcome = RunOutcome(run_dir, stats, failed, wall, skipped)
    _write_summary(run_dir, outcome)
    return outcome


def _write_summary(run_dir: Path, outcome: RunOutcome) -> None:
    """summary.json, written whole or not at all (a full disk leaves no half file behind)."""
    tmp = run_dir / ".summary.json.tmp"
    try:
        tmp.write_text(json.dumps(outcome.summary(), indent=2), encoding="utf-8")
        tmp.replace(run_dir / "summary.json")
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.error("cannot write %s: %s", run_dir / "summary.json", e.strerror or e)


__all__ = ["AuflowError", "BatchPlan", "RunOutcome", "new_run_dir", "plan", "preflight", "run"]
