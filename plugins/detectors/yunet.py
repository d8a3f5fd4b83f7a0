"""YuNet face detector (libfacedetection, from the ``yuface`` wheel): the CPU default.

What ``yuface`` 2023.5.1 returns (checked on the demo clip, 2026-11):

- ``yuface.detect(bgr, conf)`` wraps ``yuface.c_detect(bgr)``, which returns an ``int16`` array
  (N, 16) — not ``uint16`` as its docstring says: column 0 is the confidence as an integer
  **0–100**, columns 1–4 the box as x, y, w, h, columns 5–14 five landmarks as x, y pairs, all in
  whole pixels of the input image. Column 15 is uninitialised memory (it changes from call to
  call); the wrapper drops it (``[:, 5:-1]``) and so do we. Coordinates are signed: a face cut by
  the left or top border gives negative x or y.
- Landmark order is InsightFace/arcface order: image-left eye, image-right eye, nose tip,
  image-left mouth corner, image-right mouth corner (on a frontal face, and on the same face
  mirrored, the first eye always has the smaller x). No reordering is needed.
- ``c_detect`` reads the buffer as a C-contiguous BGR image and ignores strides: a view such as
  ``img[:, ::-1]`` gives silently wrong boxes, so every input goes through ``np.ascontiguousarray``.
- Above 960 px on a side the wrapper warns that accuracy degrades; ``max_side`` is capped at 960.

- ``c_detect`` leaks the 36,864-byte (0x9000) result buffer it allocates for libfacedetection on every
  call, whatever the image size (measured: 36.0 kB more RSS per call; 0.9 MB/s for one 25 fps camera,
  3 GB an hour). So the detector calls the library's own ``facedetect_cnn`` (exported by the
  ``libfacedetection.so`` in the wheel) through ctypes with one reused buffer per thread: the same
  (N, 16) rows, byte for byte, and no growth (:class:`_FaceDetectCnn`; ``c_detect`` is the fallback
  where that library is missing, with a warning).

Threading: ``c_detect`` holds the GIL for the whole call (a pure-Python thread running beside it
gets ~15–18 % of its solo rate, i.e. only the gaps between calls); ctypes releases it during the
call. Both parallelise internally with
OpenMP (the libgomp its wheel bundles, or torch's if torch was loaded first: ≈1.65 s of CPU per
second of wall time on 2 cores). Calls from two threads give results identical to serial calls (each
thread has its own result buffer), so sharing a detector is safe, but two threads are no faster than
one: scale out with processes.

OpenMP's barriers collapse when the cores are busy with anything else. A 640×360 frame on 2 cores:
idle, 25 ms with yuface's default 2 threads and 34 ms with 1; beside one busy process, 66 ms vs
35 ms; with both cores busy, 428 ms vs 47 ms. Since the face stage shares the cores with
decoding, the analyzer process and other streams, ``threads`` defaults to 1 (see
:class:`_OpenMPThreads` for how it is applied); ``threads: 0`` leaves yuface's default (all cores,
or ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
import threading
from collections.abc import Callable

import cv2
import numpy as np
from pydantic import Field

from auflow.engine.errors import ModelError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import DETECTORS
from auflow.engine.types import Faces

log = logging.getLogger(__name__)

#: yuface's wrapper warns above this side length: detection quality degrades
YUNET_MAX_SIDE = 960


def fit_max_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Downscale ``image`` (area interpolation) so its longest side is ≤ ``max_side``.

    Returns the image and the per-axis scale factors (new / old); (1, 1) when no resize was needed.
    """
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0, 1.0
    s = max_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, nw / w, nh / h


class _OpenMPThreads:
    """Runs a yuface call with ``n`` OpenMP threads, whichever OpenMP runtime its calls bound to.

    libfacedetection's ``GOMP_*`` calls bind to the first libgomp in the process's global symbol
    scope: the one yuface's wheel bundles (``yuface.libs/libgomp-*.so``), or torch's ``libgomp.so.1``
    when torch was loaded before yuface's first call (then ``torch.set_num_threads`` is what rules
    yuface). So we set both: the bundled runtime (only yuface uses it), and the global one (torch's),
    restoring the latter's value after the call so torch code in the same thread is unaffected.
    OpenMP thread counts are per calling thread, hence a set before every call.
    """

    def __init__(self, yuface_file: str) -> None:
        libs = sorted(glob.glob(os.path.join(os.path.dirname(yuface_file), os.pardir, "yuface.libs", "libgomp*.so*")))
        # dlopen of an already-loaded path returns that same library: the runtime yuface loaded
        self._bundled = ctypes.CDLL(libs[0]) if libs else None
        self._global: tuple[Callable[[], int], Callable[[int], None]] | None = None

    def _global_runtime(self) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        if self._global is None:  # torch may be imported after start(): look again (dlsym, a few µs)
            lib = ctypes.CDLL(None)
            try:
                self._global = (lib.omp_get_max_threads, lib.omp_set_num_threads)
            except AttributeError:
                return None
        return self._global

    def call(self, n: int, fn: Callable, *args):
        if self._bundled is not None:
            self._bundled.omp_set_num_threads(n)
        runtime = self._global_runtime()
        if runtime is None:
            return fn(*args)
        get, set_ = runtime
        previous = get()
        set_(n)
        try:
            return fn(*args)
        finally:
            set_(previous)


class _FaceDetectCnn:
    """libfacedetection's ``facedetect_cnn(result_buffer, bgr, width, height, step)`` with a result buffer
    reused per thread (``yuface.c_detect`` allocates one per call and never frees it). Returns what
    ``c_detect`` returns: an (N, 16) int16 array, the library's rows."""

    BUFFER_BYTES = 0x9000  # libfacedetection's DETECT_BUFFER_SIZE
    SYMBOL = "_Z14facedetect_cnnPhS_iii"  # facedetect_cnn(unsigned char*, unsigned char*, int, int, int)

    def __init__(self, library: str) -> None:
        fn = getattr(ctypes.CDLL(library), self.SYMBOL)
        fn.restype = ctypes.POINTER(ctypes.c_int)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._fn = fn
        self._local = threading.local()

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = np.zeros(self.BUFFER_BYTES, np.uint8)
        h, w = bgr.shape[:2]
        out = self._fn(buf.ctypes.data, bgr.ctypes.data, w, h, bgr.strides[0])
        n = int(out[0]) if out else 0
        if n <= 0:
            return np.zeros((0, 16), np.int16)
        start = ctypes.addressof(out.contents) - buf.ctypes.data + 4  # the rows follow the count
        if start != 4 or start + 32 * n > buf.nbytes:
            raise ModelError(f"yunet: libfacedetection returned {n} faces outside its result buffer")
        return buf[start:start + 32 * n].view(np.int16).reshape(n, 16).copy()

    @classmethod
    def from_yuface(cls, yuface_module) -> _FaceDetectCnn | None:
        library = os.path.join(os.path.dirname(yuface_module.__file__), "libfacedetection.so")
        try:
            return cls(library)
        except (OSError, AttributeError) as e:
            log.warning("yunet: %s is not usable (%s): falling back to yuface.c_detect, which leaks 36 kB of memory "
                        "per frame", library, e)
            return None


def _import_yuface():
    """The ``yuface`` module, with the raw binding ``c_detect`` that its wrapper ``yuface.detect`` calls (checked
    against 2023.5.1); a :class:`ModelError` saying what to install, or to use retinaface, where it is not."""
    try:
        import yuface
    except ImportError as e:
        where = f"Python {sys.version_info.major}.{sys.version_info.minor}"
        raise ModelError(
            f"detector 'yunet' needs the yuface package, which cannot be imported on {where} ({e}); "
            "yuface ships wheels for CPython 3.10 and 3.11 only: install it there with `pip install yuface`, "
            "or use the detector 'retinaface' (torch, any Python, CPU or GPU)"
        ) from e
    if getattr(yuface, "c_detect", None) is None:
        raise ModelError(f"yuface {getattr(yuface, '__version__', '?')} has no c_detect; install yuface==2023.5.1 "
                         "or use the detector 'retinaface'")
    return yuface


@DETECTORS.register("yunet")
class YuNetDetector(Plugin):
    """YuNet via ``yuface``: boxes, scores (0–1) and 5 arcface-order landmarks, CPU only."""

    #: between start() and stop(): the detector call, and the OpenMP thread setting it runs under
    _detect: Callable[[np.ndarray], np.ndarray] | None = None
    _threads: _OpenMPThreads | None = None

    class Config(PluginConfig):
        score_threshold: float = Field(0.6, ge=0.0, le=1.0, description="keep faces scoring above this (0–1)")
        max_side: int = Field(640, ge=32, le=YUNET_MAX_SIDE,
                              description="downscale the frame so its longest side is ≤ this before detecting")
        min_face: float = Field(0.0, ge=0.0, description="drop faces whose shorter box side is below this (frame px)")
        threads: int = Field(1, ge=0, le=256, description="OpenMP threads per call; 0 = yuface's default (all cores)")

    def start(self, ctx: StartContext = CPU) -> None:
        if self._detect is None:
            yuface = _import_yuface()
            self._detect = _FaceDetectCnn.from_yuface(yuface) or yuface.c_detect
            self._threads = _OpenMPThreads(yuface.__file__) if self.config.threads else None

    def stop(self) -> None:
        self._detect = None
        self._threads = None

    def detect(self, image_bgr: np.ndarray) -> Faces:
        """Faces in one BGR uint8 (H, W, 3) frame, sorted by score, coordinates in frame pixels."""
        if self._detect is None:
            self.start()
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(f"detect expects a BGR uint8 (H, W, 3) image, got {image_bgr.dtype} {image_bgr.shape}")
        cfg = self.config
        small, sx, sy = fit_max_side(image_bgr, cfg.max_side)
        small = np.ascontiguousarray(small)
        if self._threads is not None:
            raw = self._threads.call(cfg.threads, self._detect, small)
        else:
            raw = self._detect(small)
        raw = raw[:, :15].astype(np.float32)  # column 15 is uninitialised memory
        raw = raw[raw[:, 0] > cfg.score_threshold * 100.0]
        if len(raw) == 0:
            return Faces.empty()
        raw = raw[np.argsort(-raw[:, 0], kind="stable")]
        score = raw[:, 0] / 100.0
        x, y, w, h = raw[:, 1], raw[:, 2], raw[:, 3], raw[:, 4]
        # box edges scale as edges; landmarks are pixel centres: (v + 0.5) / s - 0.5
        bbox = np.stack([x / sx, y / sy, (x + w) / sx, (y + h) / sy], axis=1)
        kps = raw[:, 5:15].reshape(-1, 5, 2)
        kps = (kps + 0.5) / np.array([sx, sy], np.float32) - 0.5
        if cfg.min_face > 0:
            keep = np.minimum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]) >= cfg.min_face
            bbox, score, kps = bbox[keep], score[keep], kps[keep]
        return Faces(bbox, score, kps)
