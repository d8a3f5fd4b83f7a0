"""Video sources. ``make_source(uri, cfg)`` picks the kind from the URI; ``expand_inputs`` turns
folders and globs into the list of streams a run processes."""

from __future__ import annotations

from ..config import SourceSection
from ..errors import SourceError
from ..registry import Registry
from .core import SessionCounters, Source, cam_id_from, new_sid, redact
from .file import FileSource
from .images import ImageFolderSource
from .inputs import Inputs, _exists, expand_inputs, is_live_uri
from .live import HttpSource, RtspSource, check_url
from .webcam import WebcamSource, is_webcam

SUPPORTED = "video files, image folders, rtsp:// rtsps:// http:// https:// URLs, and webcams (/dev/videoN)"

#: network sources by URL scheme: ``factory(uri, cam, cfg, common) -> Source`` (``common``: the options every
#: PyAV source takes). Files, image folders and webcams are told apart by their paths, not a scheme.
SOURCE_KINDS: Registry = Registry("source kind", "Network sources by URL scheme; entry: factory(uri, cam, cfg, common).")


@SOURCE_KINDS.register("rtsp")
@SOURCE_KINDS.register("rtsps")
def _rtsp(uri: str, cam: str | None, cfg: SourceSection, common: dict) -> Source:
    check_url(uri)
    return RtspSource(uri, cam, transport=cfg.rtsp_transport, **common)


@SOURCE_KINDS.register("http")
@SOURCE_KINDS.register("https")
def _http(uri: str, cam: str | None, cfg: SourceSection, common: dict) -> Source:
    check_url(uri)
    return HttpSource(uri, cam, **common)


def make_source(uri: str, cfg: SourceSection | None = None, cam: str | None = None,
                frames_device: str | None = None) -> Source:
    """The source for ``uri`` configured by ``cfg`` (no I/O: nothing is opened here). ``frames_device``: a
    CUDA device where NVDEC's frames stay (thread workers feeding the shared GPU face stage)."""
    from pathlib import Path

    cfg = cfg or SourceSection()
    cam = cam or cfg.cam
    common = dict(decode_threads=cfg.decode_threads, open_timeout_s=cfg.open_timeout_s,
                  read_timeout_s=cfg.read_timeout_s, watchdog_s=cfg.watchdog_s, hwaccel_mode=cfg.hwaccel,
                  frames_device=frames_device)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme and scheme.isalnum() and scheme in SOURCE_KINDS:
        return SOURCE_KINDS.get(scheme)(uri, cam, cfg, common)
    if is_webcam(uri):
        return WebcamSource(uri, cam, size=cfg.webcam_size, fps=cfg.webcam_fps, **common)
    if scheme:
        raise SourceError(f"{redact(uri)}: unsupported kind of source {scheme}://; auflow reads {SUPPORTED}")
    if _exists(Path(uri)) and Path(uri).is_dir():
        return ImageFolderSource(uri, cam)
    return FileSource(uri, cam, **common)


__all__ = ["SOURCE_KINDS", "FileSource", "HttpSource", "ImageFolderSource", "Inputs", "RtspSource", "SessionCounters", "Source",
           "WebcamSource", "cam_id_from", "expand_inputs", "is_live_uri", "make_source", "new_sid", "redact"]
