"""Video sources. ``make_source(uri, cfg)`` picks the kind from the URI."""

from __future__ import annotations

from ..config import SourceSection
from ..errors import SourceError
from .core import Source, cam_id_from, new_sid
from .file import FileSource

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


def make_source(uri: str, cfg: SourceSection | None = None, cam: str | None = None) -> Source:
    cfg = cfg or SourceSection()
    if uri.startswith(LIVE_SCHEMES) or uri.startswith("/dev/video"):
        raise SourceError(f"{uri}: live sources (RTSP, HTTP, webcams) are not supported yet in this version; give a video file")
    return FileSource(uri, cam=cam or cfg.cam, decode_threads=cfg.decode_threads, open_timeout_s=cfg.open_timeout_s)


__all__ = ["FileSource", "Source", "cam_id_from", "make_source", "new_sid"]
