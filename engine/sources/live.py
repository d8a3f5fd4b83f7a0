"""Network streams through PyAV: RTSP cameras and HTTP(S) streams (HLS playlists, MJPEG).

Live: they reconnect when they drop (:mod:`.session`), and their worker keeps only the newest
frames when downstream is slower (:mod:`.worker`). Demuxer options favour latency over smoothness:
no input buffering, low-delay decoding, a short probe.
"""

from __future__ import annotations

import errno

from ..errors import SourceError
from .pyav_source import PyAVSource, _reason

#: options that make FFmpeg hand frames over as soon as they arrive
LOW_LATENCY = {"fflags": "nobuffer", "flags": "low_delay", "analyzeduration": "1000000", "probesize": "500000"}


class RtspSource(PyAVSource):
    live = True
    kind = "rtsp"

    def __init__(self, uri: str, cam: str | None = None, *, transport: str = "tcp", **kw) -> None:
        super().__init__(uri, cam, **kw)
        self.transport = transport

    def _options(self) -> dict[str, str]:
        # TCP by default: UDP loses packets behind NAT and firewalls, and lost packets are grey smears
        return {**LOW_LATENCY, "rtsp_transport": self.transport, "max_delay": "500000"}

    def _explain_open_error(self, e: BaseException) -> str:
        why = _reason(e)
        if isinstance(e, ConnectionRefusedError):
            hint = "nothing listens at that address and port: check the camera is on and the URL"
        elif self.open_timed_out(e):
            why = f"no answer within {self.open_timeout_s:g} s"
            hint = "check the address, the network path and the firewall (source.open_timeout_s sets the wait)"
        elif "401" in why or "unauthorized" in why.lower():
            hint = "the camera refused the credentials: check user and password in the URL"
        elif "404" in why or "not found" in why.lower():
            hint = "the camera has no stream at that path: check the URL's path"
        else:
            hint = "check the URL, and try source.rtsp_transport: udp if the camera does not speak RTSP over TCP"
        return f"{self.name}: cannot connect ({why}); {hint}"


class HttpSource(PyAVSource):
    """HLS playlists (``.m3u8``), MJPEG (``multipart/x-mixed-replace``) and any stream FFmpeg reads over HTTP."""

    live = True
    kind = "http"

    def _options(self) -> dict[str, str]:
        # no `fflags nobuffer` here: over HTTP it discards what the probe read (the first frames of
        # an MJPEG stream, the first second of a playlist). FFmpeg's own HTTP reconnect stays off:
        # the session loop reconnects, and reports it.
        return {"flags": "low_delay"}

    def _is_end(self, e: BaseException) -> bool:
        # FFmpeg's multipart (MJPEG) reader reports a server that closed the response as EIO
        return getattr(e, "errno", None) == errno.EIO

    def _is_finite(self, container) -> bool:
        # an HLS playlist with an end (VOD) has a duration; a camera's MJPEG or a live playlist does not
        return container.duration is not None and container.duration > 0

    def _explain_open_error(self, e: BaseException) -> str:
        why = _reason(e)
        if isinstance(e, ConnectionRefusedError):
            return f"{self.name}: cannot connect ({why}); nothing listens at that address and port"
        if self.open_timed_out(e):
            return f"{self.name}: no answer within {self.open_timeout_s:g} s; check the address (source.open_timeout_s sets the wait)"
        return f"{self.name}: cannot open ({why}); check the URL serves a video stream (HLS .m3u8, MJPEG, or a video file)"


def check_url(uri: str) -> None:
    """Reject URLs FFmpeg would misread, before any connection is tried."""
    from urllib.parse import urlsplit

    from .core import redact

    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a non-numeric port
    except ValueError as e:
        # not Python's words: they quote the "port", which is a password when one holds a raw '/' or '#'
        why = "a port out of range" if "out of range" in str(e) else (
            "an invalid IPv6 address" if "IPv6" in str(e) else "the port is not a number")
        raise SourceError(f"{redact(uri)}: not a valid URL ({why}; a password with / # ? @ must be "
                          "percent-encoded, e.g. %2F)") from None
    if not parts.hostname:
        raise SourceError(f"{redact(uri)}: the URL has no host (expected e.g. rtsp://192.168.1.10:554/stream1)")
