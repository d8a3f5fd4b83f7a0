"""Webcams on Linux through FFmpeg's v4l2 input (``/dev/videoN``).

Untested on real hardware in this project (its machines have no camera): the device path parsing
and the error for a missing device are tested; capture itself is FFmpeg's v4l2 demuxer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import SourceError
from .pyav_source import PyAVSource, _reason

_DEVICE = re.compile(r"^(?:v4l2://|webcam:)?(?P<path>/dev/video\d+)$|^webcam:(?P<index>\d+)$")


def parse_device(uri: str) -> str:
    """``/dev/video0``, ``v4l2:///dev/video0``, ``webcam:0`` → ``/dev/video0``; anything else: SourceError."""
    m = _DEVICE.match(uri.strip())
    if not m:
        raise SourceError(f"{uri}: not a webcam device; give /dev/videoN (e.g. /dev/video0) or webcam:N")
    return m.group("path") or f"/dev/video{int(m.group('index'))}"


def is_webcam(uri: str) -> bool:
    return uri.startswith(("/dev/video", "v4l2://", "webcam:"))


class WebcamSource(PyAVSource):
    live = True
    kind = "webcam"

    def __init__(self, uri: str, cam: str | None = None, *, size: str | None = None, fps: float | None = None, **kw) -> None:
        self.device = parse_device(uri)
        super().__init__(uri, cam or Path(self.device).name, **kw)
        if size is not None and not re.fullmatch(r"\d+x\d+", size):
            raise SourceError(f"source.webcam_size must look like 1280x720, got {size!r}")
        self.size, self.capture_fps = size, fps

    def _url(self) -> str:
        return self.device

    def _format(self) -> str:
        return "v4l2"

    def _options(self) -> dict[str, str]:
        opts = {}
        if self.size:
            opts["video_size"] = self.size
        if self.capture_fps:
            opts["framerate"] = f"{self.capture_fps:g}"
        return opts

    def _check_before_open(self) -> None:
        path = Path(self.device)
        if not path.exists():
            present = sorted(str(p) for p in Path("/dev").glob("video[0-9]*"))
            listed = ", ".join(present) if present else "none: is a camera plugged in, and is /dev passed to this container?"
            raise SourceError(f"{self.device}: no such webcam device (devices here: {listed})")
        if not os.access(path, os.R_OK | os.W_OK):
            raise SourceError(f"{self.device}: no permission to open the webcam; add this user to the 'video' group")

    def _explain_open_error(self, e: BaseException) -> str:
        return f"{self.device}: cannot capture from the webcam ({_reason(e)}); is another program using it?"
