"""Choosing the decoder: NVDEC through PyAV's ``hwaccel`` when a GPU exists, FFmpeg's CPU decoders otherwise.

``source.hwaccel``: ``auto`` (default) asks for CUDA only when this machine shows an NVIDIA device
and this FFmpeg build has the ``cuda`` device type, and lets FFmpeg fall back to software when the
stream's codec has no hardware decoder; ``cpu`` never touches the GPU; ``cuda`` insists and fails
with a clear error when it cannot. Decoded frames are downloaded to host memory (``is_hw_owned``
stays False) because the face stage runs on the CPU in the stream's worker.

Untested on hardware in this project's CI (no GPU there): ``auto`` on a machine without a GPU is
tested to choose the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av

from ..errors import SourceError

log = logging.getLogger(__name__)


def cuda_device_present() -> bool:
    """An NVIDIA device node exists (cheap: no CUDA runtime, no torch import in the worker)."""
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def ffmpeg_has_cuda() -> bool:
    try:
        from av.codec.hwaccel import hwdevices_available

        return "cuda" in hwdevices_available()
    except (ImportError, AttributeError):  # PyAV without hwaccel support
        return False


def resolve(mode: str) -> str:
    """``auto`` → ``cuda`` or ``cpu`` for this machine; ``cuda`` checked; ``cpu`` as is."""
    if mode == "cpu":
        return "cpu"
    usable = ffmpeg_has_cuda() and cuda_device_present()
    if mode == "cuda" and not usable:
        why = "this PyAV/FFmpeg build has no CUDA device type" if not ffmpeg_has_cuda() else "no NVIDIA device on this machine"
        raise SourceError(f"source.hwaccel is cuda but {why}; set source.hwaccel: auto (or cpu) to decode on the CPU")
    return "cuda" if usable else "cpu"


def hwaccel_for(mode: str):
    """The ``hwaccel=`` argument of ``av.open`` for a resolved mode (None = CPU)."""
    if mode != "cuda":
        return None
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type="cuda", allow_software_fallback=True)


def open_container(url: str, mode: str, **kwargs):
    """``av.open`` with the decoder ``mode`` asks for; ``auto`` falls back to the CPU when the GPU open fails."""
    resolved = resolve(mode)
    if resolved == "cuda":
        try:
            return av.open(url, hwaccel=hwaccel_for("cuda"), **kwargs), "cuda"
        except (ConnectionError, TimeoutError, FileNotFoundError, PermissionError, av.error.InvalidDataError):
            raise  # the stream itself is unreachable or unreadable: a CPU decoder would fail the same way
        except (av.error.FFmpegError, OSError, RuntimeError) as e:
            if mode == "cuda":
                raise SourceError(f"{url}: cannot decode with NVDEC ({e}); set source.hwaccel: auto or cpu") from None
            log.warning("%s: NVDEC unavailable (%s); decoding on the CPU", url, e)
    return av.open(url, **kwargs), "cpu"
