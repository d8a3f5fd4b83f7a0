"""One call that runs a config on sources and leaves a run directory behind.

Used by ``auflow run``, ``auflow demo``, the benchmarks and the tests: pre-flight every source
(a missing or unreadable file fails here with one line, before any model loads), make the run
directory (resolved config, per-camera outputs, ``summary.json``), run the pipeline.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig, dump_config
from .errors import AuflowError, SourceError
from .pipeline.core import Pipeline, StreamStats
from .sources import Source, make_source

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_dir: Path
    stats: dict[str, StreamStats]
    failed: dict[str, str] = field(default_factory=dict)  # uri → error line, for streams that never ran
    wall_s: float = 0.0

    @property
    def errors(self) -> list[str]:
        return list(self.failed.values()) + [s.error for s in self.stats.values() if s.error]

    def summary(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "wall_s": round(self.wall_s, 3),
            "streams": {
                cam: {"uri": s.uri, "sid": s.sid, "frames": s.frames_out, "frames_decoded": s.frames_in,
                      "total_frames": s.total_frames, "faces": s.faces, "frames_with_face": s.frames_with_face,
                      "tracks": {str(k): v for k, v in sorted(s.tracks.items())}, "fps": round(s.fps, 2),
                      "decode_errors": s.decode_errors, "dropped": s.dropped, "last_seq": s.last_seq,
                      "end": s.reason, "error": s.error}
                for cam, s in self.stats.items()
            },
            "failed": self.failed,
        }


def new_run_dir(out: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{stamp}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def preflight(uris: list[str], cfg: RunConfig) -> tuple[list[Source], dict[str, str]]:
    """Open and close each source once: the ones that fail are reported, not run."""
    ok, failed = [], {}
    cam = cfg.source.cam if len(uris) == 1 else None
    for uri in uris:
        try:
            src = make_source(uri, cfg.source, cam=cam)
            src.open()
            src.close()
            ok.append(src)
        except SourceError as e:
            failed[uri] = str(e)
    return ok, failed


def run(cfg: RunConfig, uris: list[str], run_dir: str | Path | None = None,
        on_result: Callable[[StreamStats], None] | None = None,
        on_publish_ready: Callable[[str], None] | None = None,
        on_pipeline: Callable[[Pipeline], None] | None = None) -> RunOutcome:
    """Run ``cfg`` on ``uris``. Raises SourceError when no source can be opened at all."""
    sources, failed = preflight(uris, cfg)
    if not sources:
        raise SourceError("; ".join(failed.values()))
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg.out, sources[0].cam)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    pipe = Pipeline(cfg, sources, run_dir, on_result=on_result, on_publish_ready=on_publish_ready)
    if on_pipeline is not None:
        on_pipeline(pipe)
    t0 = time.perf_counter()
    try:
        stats = pipe.run()
    finally:
        wall = time.perf_counter() - t0
    outcome = RunOutcome(run_dir, stats, failed, wall)
    (run_dir / "summary.json").write_text(json.dumps(outcome.summary(), indent=2), encoding="utf-8")
    return outcome


__all__ = ["AuflowError", "RunOutcome", "new_run_dir", "preflight", "run"]
