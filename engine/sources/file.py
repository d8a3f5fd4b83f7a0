"""Video files through PyAV: lossless, in decode order, every frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..errors import SourceError
from ..types import FrameMeta, FramePacket
from .core import Source, new_sid

log = logging.getLogger(__name__)


class FileSource(Source):
    live = False

    def __init__(self, uri: str, cam: str | None = None, decode_threads: int = 0, open_timeout_s: float = 5.0) -> None:
        super().__init__(uri, cam)
        self.decode_threads = decode_threads
        self.open_timeout_s = open_timeout_s
        self._container = None
        self._stream = None

    def open(self) -> None:
        path = Path(self.uri)
        if not path.exists():
            raise SourceError(f"{self.uri}: no such file")
        if path.is_dir():
            raise SourceError(f"{self.uri}: is a folder, not a video file")
        try:
            container = av.open(str(path), timeout=self.open_timeout_s)
        except av.error.FFmpegError as e:
            raise SourceError(f"{self.uri}: not a readable video ({e.strerror or type(e).__name__})") from None
        except OSError as e:
            raise SourceError(f"{self.uri}: cannot open ({e})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.uri}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.decode_threads:
            stream.codec_context.thread_count = self.decode_threads
        self._container, self._stream = container, stream
        self.sid = new_sid()
        self.total_frames = stream.frames or None
        self.fps = float(stream.average_rate) if stream.average_rate else None

    def frames(self) -> Iterator[FramePacket]:
        if self._container is None:
            raise SourceError(f"{self.uri}: frames() before open()")
        stream = self._stream
        tb: Fraction = stream.time_base or Fraction(1, 1)
        time_base = (tb.numerator, tb.denominator)
        index = 0
        packets = self._container.demux(stream)
        while True:
            t0 = time.perf_counter()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                self.decode_errors += 1
                log.warning("%s: demux error after frame %d: %s", self.uri, index, e)
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as e:
                # A damaged packet: count it and go on; the frame index only counts decoded frames.
                self.decode_errors += 1
                log.warning("%s: decode error near frame %d: %s", self.uri, index, e)
                continue
            for vf in decoded:
                image = vf.to_ndarray(format="bgr24")
                decode_ms = (time.perf_counter() - t0) * 1e3
                meta = FrameMeta(self.cam, self.sid, index, vf.pts, time_base, time.time_ns(), vf.width, vf.height)
                yield FramePacket(meta, image, {"decode": decode_ms})
                index += 1
                t0 = time.perf_counter()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = self._stream = None
