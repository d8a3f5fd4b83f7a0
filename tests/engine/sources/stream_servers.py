"""Stream servers the source tests start themselves, on 127.0.0.1: GStreamer's RTSP server (from
Debian, run by /usr/bin/python3), an HLS playlist and an MJPEG stream over Python's http.server."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
APT_LINE = ("apt-get install -y gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")


def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here (None when it can)."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (the GStreamer bindings are Debian's)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"GStreamer's RTSP server is not installed ({APT_LINE})"
    return None


class RtspServer:
    """The dropped camera: ``start()``, ``kill()``, ``start()`` again on the same port."""

    def __init__(self, port: int, mount: str = "test") -> None:
        self.port, self.mount = port, mount
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.mount}"

    def start(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the port of a killed server may take a moment to be free again
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), self.mount],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = self.proc.stdout.readline().strip()
            if line == "READY":
                return
            self.proc.wait(5)
            err = self.proc.stderr.read()
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None
            if time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start: {err[-500:]}")
            time.sleep(0.3)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a) -> None:
        pass


class HttpServer:
    """A threaded HTTP server on 127.0.0.1 (a port of its own); use as a context manager."""

    def __init__(self, handler) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def write_hls(folder: Path, frames: int = 60, size=(320, 240), fps: int = 25) -> Path:
    """An HLS VOD playlist (1 s segments, with an end) of a moving bar; returns the playlist path."""
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    with av.open(str(playlist), "w", format="hls", options={"hls_time": "1", "hls_list_size": "0",
                                                             "hls_playlist_type": "vod"}) as out:
        s = out.add_stream("libx264", rate=fps, options={"bf": "0", "g": str(fps)})
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 60, np.uint8)
            img[:, (i * 5) % size[0]:(i * 5) % size[0] + 20] = 220
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return playlist


def hls_server(folder: Path) -> HttpServer:
    return HttpServer(functools.partial(_Quiet, directory=str(folder)))


def mjpeg_server(frames: int = 20, size=(320, 240), interval_s: float = 0.02) -> HttpServer:
    """``/stream.mjpg``: ``frames`` JPEGs as multipart/x-mixed-replace, then the connection closes."""
    jpgs = []
    for i in range(frames):
        img = np.full((size[1], size[0], 3), (i * 11) % 255, np.uint8)
        jpgs.append(cv2.imencode(".jpg", img)[1].tobytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            try:
                for j in jpgs:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j) + j + b"\r\n")
                    time.sleep(interval_s)
                self.wfile.write(b"--frame--\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return HttpServer(Handler)


@pytest.fixture
def rtsp_server():
    """A running GStreamer RTSP server on a free port of 127.0.0.1 (skips where it cannot run).
    Import it into a conftest to use it."""
    from helpers import free_port

    reason = rtsp_unavailable()
    if reason:
        pytest.skip(reason)
    server = RtspServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def silent_tcp_server():
    """A socket that accepts connections and never answers: an RTSP open must time out on it."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    return srv


__all__ = ["APT_LINE", "HttpServer", "RtspServer", "hls_server", "mjpeg_server", "rtsp_server", "rtsp_unavailable", "silent_tcp_server",
           "write_hls"]
