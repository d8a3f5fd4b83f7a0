"""The one contract every video source keeps.

A source is opened (``open()``, which raises :class:`SourceError` with one clear line when the
stream cannot be read), then iterated (``frames()`` yields :class:`FramePacket` in decode order),
then closed. Each open starts a new session id ``sid``.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from ..types import FramePacket


def new_sid() -> str:
    """A fresh stream-session id (one per open/reconnect)."""
    return uuid.uuid4().hex[:12]


def cam_id_from(uri: str) -> str:
    """A topic-safe camera id from a file name or URL: ``/data/Interview 3.mp4`` → ``Interview_3``."""
    stem = Path(uri.split("?", 1)[0].rstrip("/")).stem or "cam"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "cam"


class Source(ABC):
    #: True for cameras/streams (drop oldest frames when downstream is slow); False for files
    live: bool = False

    def __init__(self, uri: str, cam: str | None = None) -> None:
        self.uri = uri
        self.cam = cam or cam_id_from(uri)
        self.sid = ""
        self.decode_errors = 0

    @abstractmethod
    def open(self) -> None:
        """Open the stream and start a new session (sets ``sid``)."""

    @abstractmethod
    def frames(self) -> Iterator[FramePacket]:
        """Decoded frames of the current session, in order."""

    @abstractmethod
    def close(self) -> None:
        """Release the stream. Safe to call twice."""

    #: frames the stream is expected to hold, when the container says (files), else None
    total_frames: int | None = None
    #: nominal frame rate, when known
    fps: float | None = None

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
