"""What every PyAV-backed source shares: opening with timeouts and options, the decode loop.

Subclasses say what to open (``_url``, ``_format``, ``_options``) and how to explain a failure;
this class opens the container (every open and every read bounded by PyAV's ``timeout=(open,
read)``), decodes the first video stream, and counts damage. FFmpeg usually conceals damage
instead of raising, so three things count as decode errors: a packet the decoder rejects, a frame
it flags corrupt, and a file that ends before the frame count its index promised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..errors import SourceError
from ..types import FrameMeta, FramePacket
from . import hwaccel
from .core import Source

log = logging.getLogger(__name__)


def _reason(e: BaseException) -> str:
    """FFmpeg's words for an error, without PyAV's ``[Errno n]`` prefix and the repeated URL."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(text).strip()


class PyAVSource(Source):
    """A source FFmpeg demuxes and decodes (files, RTSP, HTTP, v4l2 devices)."""

    def __init__(self, uri: str, cam: str | None = None, *, decode_threads: int = 0, open_timeout_s: float = 5.0,
                 read_timeout_s: float = 5.0, watchdog_s: float | None = None, hwaccel_mode: str = "cpu",
                 frames_device: str | None = None) -> None:
        super().__init__(uri, cam)
        self.decode_threads = decode_threads
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.watchdog_s = watchdog_s if self.live else None
        self.hwaccel_mode = hwaccel_mode
        self.frames_device = frames_device  # a CUDA device: NVDEC frames stay there (engine/sources/hwaccel.py)
        self.decoder = "cpu"  # what the open chose: "cpu", "cuda" (frames downloaded) or "cuda-device" (kept there)
        self._container = None
        self._stream = None
        self._open_waited_s = 0.0

    # -- what subclasses say ---------------------------------------------------------------------
    def _url(self) -> str:
        return self.uri

    def _format(self) -> str | None:
        return None

    def _options(self) -> dict[str, str]:
        return {}

    def _check_before_open(self) -> None:
        """Fail early with a precise message (a missing file, a missing device)."""

    def _explain_open_error(self, e: BaseException) -> str:
        return f"{self.name}: cannot open ({_reason(e)})"

    def open_timed_out(self, e: BaseException) -> bool:
        """Whether the failed open ran into ``open_timeout_s`` (FFmpeg then reports whatever the
        interrupted read returned, often "Invalid data", so the clock decides)."""
        return isinstance(e, TimeoutError) or self._open_waited_s >= 0.9 * self.open_timeout_s

    def _is_end(self, e: BaseException) -> bool:
        """Whether a read error after frames is how this kind of stream ends (the session loop then
        applies ``reconnect.on_end``) rather than a breakage."""
        return False

    # -- the contract ----------------------------------------------------------------------------
    def open(self, sid: str | None = None) -> None:
        self.close()
        self._check_before_open()
        read_s = self.read_timeout_s if self.watchdog_s is None else min(self.read_timeout_s, self.watchdog_s)
        t0 = time.monotonic()
        try:
            container, self.decoder = hwaccel.open_container(
                self._url(), self.hwaccel_mode, self.frames_device, format=self._format(), options=self._options(),
                timeout=(self.open_timeout_s, read_s))
        except SourceError:
            raise
        except (av.error.FFmpegError, OSError) as e:
            self._open_waited_s = time.monotonic() - t0
            raise SourceError(self._explain_open_error(e)) from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.name}: has no video stream")
        stream = container.streams.video[0]
        # frame threading holds back one frame per thread: fine for files, latency for a camera
        stream.thread_type = "SLICE" if self.live else "AUTO"
        if self.decode_threads:
            stream.codec_context.thread_count = self.decode_threads
        self._container, self._stream = container, stream
        self._start_session(sid)
        self.total_frames = stream.frames or None
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.finite = self._is_finite(container)

    def _is_finite(self, container) -> bool:
        return not self.live

    def frames(self) -> Iterator[FramePacket]:
        if self._container is None:
            raise SourceError(f"{self.name}: frames() before open()")
        stream = self._stream
        tb: Fraction = stream.time_base or Fraction(1, 1)
        time_base = (tb.numerator, tb.denominator)
        index = 0
        packets = self._container.demux(stream)
        last_frame = time.monotonic()
        end_time: float | None = None  # where the latest frame ends, in seconds
        broken = False
        on_device = self.decoder == "cuda-device"
        if on_device:
            from .device_frames import frame_to_bgr_tensor
        while not broken:
            t0 = time.perf_counter()
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as e:
                if self.live and index and self._is_end(e):
                    break
                if self.live:
                    raise SourceError(f"{self.name}: stream broke after frame {index} ({_reason(e)})") from None
                # a damaged or truncated file: what was decoded stands (the decoder is flushed
                # below), the rest is counted lost
                self.decode_errors += 1
                log.warning("%s: unreadable after frame %d (%s)", self.name, index, _reason(e))
                broken, packet = True, None
            try:
                decoded = packet.decode() if packet is not None else stream.codec_context.decode(None)
            except av.error.FFmpegError as e:
                # a damaged packet: count it and go on; the frame index counts decoded frames only
                self.decode_errors += 1
                log.debug("%s: decode error near frame %d: %s", self.name, index, _reason(e))
                decoded = []
            for vf in decoded:
                if vf.is_corrupt:
                    self.decode_errors += 1  # concealed by FFmpeg: delivered, but counted
                # NVDEC frames kept on the GPU become a BGR tensor there; a software frame (a codec NVDEC lacks) is
                # converted on the host as usual and uploaded by the face stage
                image = frame_to_bgr_tensor(vf) if on_device and vf.format.name == "cuda" else vf.to_ndarray(format="bgr24")
                decode_ms = (time.perf_counter() - t0) * 1e3
                meta = FrameMeta(self.cam, self.sid, index, vf.pts, time_base, time.time_ns(), vf.width, vf.height)
                yield FramePacket(meta, image, {"decode": decode_ms})
                if vf.time is not None:
                    t_end = vf.time + (float(vf.duration * tb) if vf.duration else 1.0 / (self.fps or 25.0))
                    end_time = t_end if end_time is None else max(end_time, t_end)
                index += 1
                last_frame = time.monotonic()
                t0 = time.perf_counter()
            if self.watchdog_s is not None and time.monotonic() - last_frame > self.watchdog_s:
                raise SourceError(f"{self.name}: no frame for {self.watchdog_s:g} s (watchdog); the stream counts as dead")
        if not self.live and not broken:
            short = self._ends_early(index, end_time)
            if short:
                self.decode_errors += 1
                log.warning("%s: %s (truncated?)", self.name, short)

    def _ends_early(self, frames: int, end_time: float | None) -> str | None:
        """Why a file that reached its end looks cut short, or None. FFmpeg reads a truncated file
        to where it stops without a word, so its own promises are checked: the frame count of the
        index (MP4), the duration of the header (Matroska), whole 188-byte packets (MPEG-TS)."""
        if self.total_frames and frames < self.total_frames:
            return f"ends at frame {frames} of the {self.total_frames} its index lists"
        c, st = self._container, self._stream
        # the video stream's own duration; the container's only when nothing else (audio, which
        # often runs a little longer) is in it
        start = length = None
        if st.duration and st.time_base:
            start, length = float((st.start_time or 0) * st.time_base), float(st.duration * st.time_base)
        elif c.duration and len(c.streams) == 1:
            start, length = (c.start_time or 0) / 1e6, c.duration / 1e6
        if length and end_time is not None and end_time < start + length - 1.5 / (self.fps or 25.0):
            return f"ends at {end_time - start:.2f} s of the {length:.2f} s its header gives"
        if c.format.name == "mpegts":
            size = Path(self.uri).stat().st_size if Path(self.uri).is_file() else 0
            if size % 188 and size % 192:
                return "ends inside a transport-stream packet"
        return None

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = self._stream = None
