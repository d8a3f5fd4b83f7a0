"""Network sources on their own: HLS and MJPEG served here, RTSP from GStreamer, opens that fail."""

from __future__ import annotations

import time

import numpy as np
import pytest
from stream_media import plain_decode
from stream_servers import hls_server, mjpeg_server, silent_tcp_server, write_hls

from auflow.engine.config import SourceSection
from auflow.engine.errors import SourceError
from auflow.engine.sources import HttpSource, make_source

pytestmark = pytest.mark.timeout(60)


def test_hls_playlist_is_read_to_the_end(tmp_path):
    playlist = write_hls(tmp_path / "hls", frames=60)
    expected = plain_decode(playlist)
    with hls_server(playlist.parent) as srv:
        src = make_source(f"{srv.base}/index.m3u8")
        assert isinstance(src, HttpSource) and src.live
        src.open()
        frames = list(src.frames())
        src.close()
    assert src.finite, "a playlist with an end has a length: reaching it ends the stream"
    assert len(frames) == len(expected) == 60
    assert all(np.array_equal(f.image, e) for f, e in zip(frames, expected))


def test_mjpeg_stream_is_read_to_the_end():
    with mjpeg_server(frames=20) as srv:
        src = make_source(f"{srv.base}/stream.mjpg")
        src.open()
        frames = list(src.frames())
        src.close()
    assert not src.finite  # a camera's MJPEG has no length: by default it is reconnected when it ends
    assert len(frames) == 20
    assert [int(f.image[5, 5, 0]) for f in frames[:3]] == pytest.approx([0, 11, 22], abs=3)


def test_nothing_listening_fails_at_once_with_a_clear_message():
    from helpers import free_port

    src = make_source(f"rtsp://127.0.0.1:{free_port()}/cam")
    with pytest.raises(SourceError, match=r"cannot connect \(Connection refused\); nothing listens at that address"):
        src.open()


def test_silent_server_fails_within_the_open_timeout():
    sock = silent_tcp_server()
    try:
        port = sock.getsockname()[1]
        src = make_source(f"rtsp://user:pw@127.0.0.1:{port}/cam", SourceSection(open_timeout_s=1.0))
        t0 = time.monotonic()
        with pytest.raises(SourceError) as err:
            src.open()
        waited = time.monotonic() - t0
    finally:
        sock.close()
    assert "no answer within 1 s" in str(err.value) and "pw" not in str(err.value)
    assert waited < 10, "an open must not hang past its timeout"


@pytest.mark.rtsp
def test_rtsp_frames_carry_timing(rtsp_server):
    src = make_source(rtsp_server.url)
    src.open()
    frames = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 10:
            break
    src.close()
    assert src.live and not src.finite
    assert [f.meta.frame for f in frames] == list(range(10))
    assert frames[0].image.shape == (240, 320, 3)
    assert frames[0].meta.time_base == (1, 90000)  # RTP's clock
    pts = [f.meta.pts for f in frames]
    assert pts == sorted(pts)
