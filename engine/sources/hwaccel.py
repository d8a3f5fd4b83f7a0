"""Choosing the decoder: NVDEC through PyAV's ``hwaccel`` when a GPU exists, FFmpeg's CPU decoders otherwise.

``source.hwaccel``: ``auto`` (default) asks for CUDA only when this machine shows an NVIDIA device
and this FFmpeg build has the ``cuda`` device type, and lets FFmpeg fall back to software when the
stream's codec has no hardware decoder; ``cpu`` never touches the GPU; ``cuda`` insists and fails
with a clear error when it cannot.

Where the frames go. By default NVDEC's frames are downloaded to host memory and converted to BGR
there (the face stage of a stream's worker runs on the CPU). With the all-GPU placement
(``face.device`` on CUDA, thread workers, ``source.device_frames``) they stay on the GPU instead:
FFmpeg decodes into torch's own CUDA context (its ``current_ctx`` option, the context made current on
the decoding thread), each frame's NV12 planes become torch tensors by DLPack without a copy, and
:func:`~auflow.engine.sources.device_frames.nv12_to_bgr` makes the BGR frame on the GPU. Why: on the
first GPU run (H200, 2026-12-04) the download + host conversion held NVDEC to 110 frames/s for one
1080p stream (8.2 ms a frame; plain CPU decoding did 165) and the NVDEC engines sat 0-13 % busy.
Also found there: FFmpeg's default for ``is_hw_owned`` (the device's primary context with its own
flags) fails with "Operation not supported" once torch holds that context with other flags.

Tested on the CPU: the choice of decoder, and the plane → tensor → BGR path on software NV12 frames;
the NVDEC hand-over itself only on a GPU (``bench/gpu_parity.py``'s probe, the gpu tests).
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


#: the CUDA driver's primary contexts this process made current on a decoding thread (device index → handle)
_PRIMARY: dict[int, int] = {}


def make_torch_context_current(index: int) -> None:
    """Make device ``index``'s primary CUDA context — the one torch's runtime uses — current on this thread.

    FFmpeg's ``current_ctx`` then decodes into it, so the frames are torch's to read. (Through torch
    alone a fresh thread may never get it current: torch skips ``cudaSetDevice`` when the device is
    already the thread's default.) Driver API through ctypes: libcuda ships with the NVIDIA driver.
    """
    import ctypes

    import torch

    torch.cuda.init()  # torch's runtime holds the primary context first, with its own flags
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"CUDA driver {what} failed with CUresult {rc}")

    if index not in _PRIMARY:
        check(cuda.cuInit(0), "cuInit")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        check(cuda.cuDeviceGet(ctypes.byref(dev), index), "cuDeviceGet")
        check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")  # held for the process
        _PRIMARY[index] = ctx.value
    check(cuda.cuCtxSetCurrent(ctypes.c_void_p(_PRIMARY[index])), "cuCtxSetCurrent")


def device_index(device: str) -> int:
    """``cuda`` / ``cuda:N`` → N (``cuda`` = torch's current device)."""
    import torch

    d = torch.device(device)
    if d.type != "cuda":
        raise ValueError(f"frames stay on a CUDA device, not {device!r}")
    return d.index if d.index is not None else torch.cuda.current_device()


def on_device_hwaccel(index: int):
    """NVDEC whose frames stay in GPU memory, in the context current on this thread (torch's)."""
    from av.codec.hwaccel import HWAccel

    # primary_ctx 0: PyAV asks for the primary context by default, which FFmpeg refuses ("Operation not
    # supported") when torch already holds it with other flags; current_ctx 1: use the current one as it is
    return HWAccel(device_type="cuda", device=str(index), allow_software_fallback=True, is_hw_owned=True,
                   options={"primary_ctx": "0", "current_ctx": "1"})


def open_container(url: str, mode: str, device_frames: str | None = None, **kwargs):
    """``av.open`` with the decoder ``mode`` asks for; ``auto`` falls back to the CPU when the GPU open fails.

    ``device_frames`` (a CUDA torch device): NVDEC's frames stay there (decoder ``cuda-device``); when that
    open fails the frames are downloaded as usual (decoder ``cuda``), with a warning saying why.
    Returns (container, decoder).
    """
    resolved = resolve(mode)
    if resolved == "cuda" and device_frames is not None:
        try:
            index = device_index(device_frames)
            make_torch_context_current(index)
            return av.open(url, hwaccel=on_device_hwaccel(index), **kwargs), "cuda-device"
        except (ConnectionError, TimeoutError, FileNotFoundError, PermissionError, av.error.InvalidDataError):
            raise
        except (av.error.FFmpegError, OSError, RuntimeError, ValueError) as e:
            log.warning("%s: NVDEC frames cannot stay on %s (%s); downloading them to the host", url, device_frames, e)
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
