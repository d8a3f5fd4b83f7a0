"""Annotated video: boxes, track ids, AU bars and the dominant expression drawn on the source.

Sinks receive messages, not pixels (full frames never leave the stream worker). So this sink keeps
the small per-face results of each camera during the run and, when the run ends (``stop()``),
decodes each *file* source again with PyAV and writes ``<run>/<cam>.mp4``. ``frame`` on the wire is
the index of the decoded frame in its session, which is how results are matched to pixels again.
Live sources cannot be decoded twice and are skipped (with a log line).

The sink needs each camera's source path: the pipeline hands it over through
:meth:`VideoSink.set_sources` after ``start()``. After a run, :func:`render_run` does the same from
a run directory (``summary.json`` names the sources, ``<cam>.jsonl`` holds the results).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from auflow.engine.errors import SourceError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import SINKS

log = logging.getLogger(__name__)

#: colours (BGR) cycled by track id; -1 (unconfirmed) is grey
_COLOURS = [(66, 135, 245), (80, 200, 120), (240, 150, 60), (200, 90, 220), (60, 210, 230), (230, 70, 90)]
_GREY = (160, 160, 160)


def _colour(track: int) -> tuple[int, int, int]:
    return _GREY if track < 0 else _COLOURS[track % len(_COLOURS)]


def dominant(probs: Mapping[str, float | None]) -> tuple[str, float] | None:
    """The label with the highest probability (None for an empty or all-missing map)."""
    items = [(k, v) for k, v in probs.items() if v is not None]
    return max(items, key=lambda kv: kv[1]) if items else None


def draw_faces(img: np.ndarray, faces: list[dict[str, Any]], max_aus: int = 12) -> np.ndarray:
    """Draw each face's box, track id, dominant expression and AU bars on a BGR image (in place)."""
    import cv2

    h, w = img.shape[:2]
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(w, h) / 900)
    for face in faces:
        track = int(face.get("track", -1))
        col = _colour(track)
        bbox = face.get("bbox") or []
        if len(bbox) != 4 or any(v is None for v in bbox):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in bbox)
        cv2.rectangle(img, (x1, y1), (x2, y2), col, 2)
        best = dominant(face.get("expr") or {})
        label = f"#{track}" if track >= 0 else "?"
        if best is not None:
            label += f" {best[0]} {best[1]:.2f}"
        (tw, th), base = cv2.getTextSize(label, font, fs, 1)
        ty = max(y1 - 4, th + 4)
        cv2.rectangle(img, (x1, ty - th - 4), (x1 + tw + 4, ty + base - 2), col, -1)
        cv2.putText(img, label, (x1 + 2, ty - 2), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
        # AU bars to the right of the box (left of it when there is no room)
        aus = [(k, v) for k, v in sorted((face.get("au") or {}).items()) if v is not None][:max_aus]
        if not aus:
            continue
        bar_w, row_h = max(40, (x2 - x1) // 3), max(10, int(16 * fs / 0.5))
        bx = x2 + 6 if x2 + 6 + bar_w + 40 < w else max(0, x1 - bar_w - 46)
        for i, (name, p) in enumerate(aus):
            by = y1 + i * row_h
            if by + row_h > h:
                break
            cv2.rectangle(img, (bx + 38, by + 2), (bx + 38 + bar_w, by + row_h - 2), (40, 40, 40), -1)
            cv2.rectangle(img, (bx + 38, by + 2), (bx + 38 + int(bar_w * min(max(p, 0.0), 1.0)), by + row_h - 2), col, -1)
            cv2.putText(img, name, (bx, by + row_h - 3), font, fs * 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def render_video(source: str | Path, results: Mapping[int, list[dict[str, Any]]], out_path: str | Path,
                 hold_frames: int = 12, codec: str = "libx264", crf: int = 23) -> int:
    """Decode ``source``, draw ``results[frame]`` (faces of a ``result``) on each frame, write ``out_path``.

    A frame without a result of its own (``analyze_fps`` decimation) shows the last result for up to
    ``hold_frames`` frames. Returns the number of frames written.
    """
    import av

    if codec not in av.codecs_available:
        codec = "mpeg4"
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.mp4")
    written = 0
    try:
        src = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot decode {source} again for the annotated video: {exc}") from None
    try:
        vin = src.streams.video[0]
        rate = Fraction(vin.average_rate or vin.guessed_rate or 25).limit_denominator(1001 * 1000)
        with av.open(str(tmp), "w", format="mp4") as dst:
            vout = None
            last, last_i = None, -(10**9)
            for i, frame in enumerate(src.decode(vin)):
                img = frame.to_ndarray(format="bgr24")
                if vout is None:
                    vout = dst.add_stream(codec, rate=rate)
                    vout.width, vout.height = img.shape[1] - img.shape[1] % 2, img.shape[0] - img.shape[0] % 2
                    vout.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        vout.options = {"crf": str(crf), "preset": "veryfast"}
                faces = results.get(i)
                if faces is not None:
                    last, last_i = faces, i
                elif last is not None and i - last_i <= hold_frames:
                    faces = last
                if faces:
                    draw_faces(img, faces)
                img = np.ascontiguousarray(img[: vout.height, : vout.width])
                out = av.VideoFrame.from_ndarray(img, format="bgr24")
                out.pts = written
                out.time_base = 1 / rate
                for packet in vout.encode(out):
                    dst.mux(packet)
                written += 1
            if vout is not None:
                for packet in vout.encode():
                    dst.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    tmp.replace(out_path)
    return written


def results_by_frame(messages: list[dict] | Any, sid: str | None = None) -> dict[int, list[dict]]:
    """``frame -> faces`` of the ``result`` messages of one session (the first one seen by default)."""
    out: dict[int, list[dict]] = {}
    for m in messages:
        if m.get("type") != "result":
            continue
        if sid is None:
            sid = m["sid"]
        if m["sid"] == sid:
            out[int(m["frame"])] = m.get("faces") or []
    return out


def render_run(run_dir: str | Path, cam: str | None = None, **kw: Any) -> list[Path]:
    """Write ``<run>/<cam>.mp4`` for each file source of a finished run (``summary.json`` + ``<cam>.jsonl``)."""
    from auflow.engine.results import iter_jsonl

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    written = []
    for name, info in summary.get("streams", {}).items():
        if cam is not None and name != cam:
            continue
        src, jsonl = info.get("uri"), run_dir / f"{name}.jsonl"
        if not src or not Path(src).is_file() or not jsonl.exists():
            log.warning("no annotated video for %s: needs its source file and %s", name, jsonl.name)
            continue
        out = run_dir / f"{name}.mp4"
        render_video(src, results_by_frame(iter_jsonl(jsonl), info.get("sid") or None), out, **kw)
        written.append(out)
    return written


@SINKS.register("video")
class VideoSink(Plugin):
    class Config(PluginConfig):
        hold_frames: int = 12  # frames without a result of their own keep showing the last one
        codec: str = "libx264"  # libx264 (H.264) when PyAV's FFmpeg has it, else mpeg4
        crf: int = 23  # H.264 quality: lower is better and larger

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.run_dir: Path | None = None
        self.sources: dict[str, str] = {}
        self.paths: dict[str, Path] = {}
        self._results: dict[str, dict[int, list[dict]]] = {}
        self._sid: dict[str, str] = {}

    def start(self, ctx: StartContext = CPU) -> None:
        self.run_dir = ctx.need_run_dir(type(self).__name__)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def set_sources(self, sources: Mapping[str, str]) -> None:
        """``cam -> path`` of the file sources (the pipeline calls this after ``start``)."""
        self.sources.update(sources)

    def write(self, message: dict) -> None:
        if message.get("type") != "result":
            return
        cam, sid = message["cam"], message["sid"]
        if self._sid.setdefault(cam, sid) != sid:
            return  # a file has one session; a live source's later sessions cannot be re-decoded anyway
        self._results.setdefault(cam, {})[int(message["frame"])] = message.get("faces") or []

    def flush(self) -> None:
        """Nothing to flush: the video is written when the run ends."""

    def stop(self) -> None:
        for cam, results in self._results.items():
            src = self.sources.get(cam)
            if src is None or not Path(src).is_file():
                log.warning("video sink: no source file known for camera %r (live, or the pipeline did not call "
                            "set_sources); after a file run, auflow.plugins.sinks.video.render_run(run_dir) makes it", cam)
                continue
            path = self.run_dir / f"{cam}.mp4"
            try:
                n = render_video(src, results, path, self.config.hold_frames, self.config.codec, self.config.crf)
            except Exception:  # noqa: BLE001 - one camera's video must not stop the others
                log.exception("video sink: could not write %s", path)
                continue
            self.paths[cam] = path
            log.info("annotated video: %s (%d frames)", path, n)
        self._results.clear()
