"""The one contract every video source keeps.

A source is opened (``open()``, which raises :class:`SourceError` with one clear line when the
stream cannot be read), then iterated (``frames()`` yields :class:`FramePacket` in decode order
until the stream ends, and raises :class:`SourceError` when it breaks), then closed. Each open is
one session with its own id ``sid``. Sources know nothing of reconnecting, dropping or
decimating: :mod:`.session` and :mod:`.worker` do that, the same way for every kind.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..redaction import redact_uri
from ..types import FramePacket, SessionCounters  # noqa: F401 - SessionCounters re-exported


def new_sid() -> str:
    """A fresh stream-session id (one per open/reconnect)."""
    return uuid.uuid4().hex[:12]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_.")


#: longest camera id: it names the run's output files (``<cam>.jsonl``, ``<cam>_2.parquet``), which a
#: file system limits to 255 bytes
MAX_CAM_CHARS = 120


def cam_id_from(uri: str) -> str:
    """A topic-safe camera id from a file name or URL.

    ``/data/Interview 3.mp4`` → ``Interview_3``; ``rtsp://user:pw@10.0.0.5:554/live`` →
    ``10.0.0.5_554_live`` (host and path: many cameras share a path such as ``/live``);
    ``/dev/video0`` → ``video0``. Credentials never end up in the id; a malformed URL still gets one,
    and a long name is cut (with a hash of the whole, so two long names stay apart).
    """
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        try:
            parts = urlsplit(uri)
            host = parts.hostname or ""
            port = f"_{parts.port}" if parts.port else ""
            path = parts.path
        except ValueError:  # a bad port or IPv6 address: the URL's own check reports it; the id needs none
            netloc, _, path = rest.partition("/")
            host, port = netloc.rsplit("@", 1)[-1], ""
        path = path.split("?", 1)[0].strip("/")
        stem = Path(path).with_suffix("").as_posix() if path else ""
        cam = _safe(f"{host}{port}_{stem}" if stem else f"{host}{port}") or "cam"
    else:
        stem = Path(uri.split("?", 1)[0].rstrip("/")).stem or "cam"
        cam = _safe(stem) or "cam"
    if len(cam) > MAX_CAM_CHARS:
        cam = f"{cam[:MAX_CAM_CHARS - 9]}_{hashlib.sha1(cam.encode()).hexdigest()[:8]}"
    return cam


def redact(uri: str) -> str:
    """The URI with its password (and secret query values) replaced by ``***``, for logs, errors and outputs."""
    return redact_uri(uri)


class Source(ABC):
    #: cameras and network streams: reconnect when they drop, drop the oldest frames when
    #: downstream is slow. Files (False) are lossless and make decoding wait instead.
    live: bool = False
    #: "file" | "rtsp" | "http" | "webcam" | "images"
    kind: str = "file"

    def __init__(self, uri: str, cam: str | None = None) -> None:
        self.uri = uri
        self.cam = cam or cam_id_from(uri)
        self.sid = ""
        #: damaged packets or frames of the current session (FFmpeg often conceals damage, so a
        #: source also counts frames flagged corrupt and a file that ends before its index says)
        self.decode_errors = 0
        #: frames the stream is expected to hold, when the container says (files), else None
        self.total_frames: int | None = None
        #: nominal frame rate, when known
        self.fps: float | None = None
        #: after open: True when the stream has an end (files, HLS playlists with an end), so that
        #: reaching it is the normal end of the run, not a dropped connection
        self.finite: bool = not self.live
        #: files: frames before this index are decoded but not analysed (a pass resumed where it stopped)
        self.start_frame: int = 0

    @property
    def name(self) -> str:
        """The URI as logs and errors show it (no password)."""
        return redact(self.uri)

    @abstractmethod
    def open(self, sid: str | None = None) -> None:
        """Open the stream as session ``sid`` (a new one when None); raises SourceError."""

    @abstractmethod
    def frames(self) -> Iterator[FramePacket]:
        """Decoded frames of the current session, in order; raises SourceError when the stream breaks."""

    @abstractmethod
    def close(self) -> None:
        """Release the stream. Safe to call twice."""

    def _start_session(self, sid: str | None) -> None:
        self.sid = sid or new_sid()
        self.decode_errors = 0

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
