"""What each kind of plugin must provide, as Protocols code can check (``tests/engine/test_contracts.py``
checks every registered entry against its kind's).

Every plugin derives from :class:`~auflow.engine.plugin.Plugin` (``Config``, ``start(ctx)``, ``stop``).
``start`` takes the same :class:`~auflow.engine.plugin.StartContext` in every kind (the device the
analyzers use, the run directory the sinks write into; :data:`~auflow.engine.plugin.CPU` by default).
The kinds differ in the calls the engine makes on them; optional hooks are listed per kind in
:data:`OPTIONAL_HOOKS`, the only attributes the engine looks up with ``hasattr``/``getattr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .plugin import CPU, StartContext
from .registry import ALIGNERS, ANALYZERS, DETECTORS, SINKS, TRACKERS, Registry
from .types import EndOfStream, FaceCrops, FaceResults, Faces, FramePacket

__all__ = ["OPTIONAL_HOOKS", "PROTOCOLS", "Aligner", "AnalyzerPlugin", "Detector", "FacePlacement", "FaceTap", "Sink", "Tracker", "missing"]


@runtime_checkable
class Detector(Protocol):
    """Faces with 5 landmarks in one BGR frame (engine/pipeline/face_stage.py)."""

    def start(self, ctx: StartContext = CPU) -> None: ...
    def stop(self) -> None: ...
    def detect(self, image_bgr: np.ndarray) -> Faces: ...


@runtime_checkable
class Tracker(Protocol):
    """Track ids for one stream's faces, frame after frame; ``reset`` when its session ends."""

    def start(self, ctx: StartContext = CPU) -> None: ...
    def stop(self) -> None: ...
    def update(self, faces: Faces, frame_index: int) -> Faces: ...
    def reset(self) -> None: ...


@runtime_checkable
class Aligner(Protocol):
    """Aligned crops (N, S, S, 3) uint8 of a frame's faces."""

    def start(self, ctx: StartContext = CPU) -> None: ...
    def stop(self) -> None: ...
    def crop(self, image_bgr: np.ndarray, faces: Faces) -> np.ndarray: ...


@runtime_checkable
class AnalyzerPlugin(Protocol):
    """Named outputs (N, C) per batch of crops; ``outputs`` (name → labels) and ``provenance`` (name →
    ModelInfo) are set by ``start``."""

    def start(self, ctx: StartContext = CPU) -> None: ...
    def stop(self) -> None: ...
    def analyze(self, crops: Any) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Sink(Protocol):
    """Every wire message of a run (results, windows, status, eos), written under the run directory."""

    def start(self, ctx: StartContext = CPU) -> None: ...
    def stop(self) -> None: ...
    def write(self, message: dict) -> None: ...


@runtime_checkable
class FacePlacement(Protocol):
    """The face stage, in either placement, built from the run config's ``face`` section (detector, aligner,
    tracker by name): per stream in its worker (engine/pipeline/face_stage.py, ``placement = "worker"``), or
    one for every stream in the pipeline's process (engine/pipeline/batched_face_stage.py, ``"batched"``,
    ``face.device``). Frames in (each stream's in frame order), one FaceCrops per frame out."""

    placement: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def process_batch(self, packets: Sequence[FramePacket]) -> list[FaceCrops]: ...
    def on_stream_end(self, cam: str) -> None: ...


@runtime_checkable
class FaceTap(Protocol):
    """What a caller of the pipeline (not a registered plugin) may see beside the wire: every analysed frame
    with its crops, in each stream's frame order, and each session's end, called from the analyzer's thread
    (``Pipeline(taps=...)``; the distillation teacher pass writes its cache so). A tap that raises in
    ``on_analyzed`` fails the run as a model would (every stream ends with its error); in ``on_stream_end``,
    that stream ends with its error."""

    def on_analyzed(self, item: FaceCrops, result: FaceResults) -> None: ...
    def on_stream_end(self, end: EndOfStream) -> None: ...


#: kind → (registry, protocol)
PROTOCOLS: dict[str, tuple[Registry, type]] = {
    "detector": (DETECTORS, Detector),
    "tracker": (TRACKERS, Tracker),
    "aligner": (ALIGNERS, Aligner),
    "analyzer": (ANALYZERS, AnalyzerPlugin),
    "sink": (SINKS, Sink),
}

#: hooks a plugin may have; the engine calls them only where present
OPTIONAL_HOOKS: Mapping[str, tuple[str, ...]] = {
    # the batched (GPU) face stage: retinaface's tensor entry points
    "detector": ("detect_batch", "downscale_tensors", "detect_tensors", "network", "device"),
    "tracker": (),
    "aligner": ("crop_tensors", "context_crop"),  # the batched face stage's warp on the device; face.context's crops
    # crops as device tensors; outputs it cannot measure; whole FaceCrops items (tracks, context crops) instead
    # of the crops alone; a stream ended (per-person state dropped)
    "analyzer": ("takes_tensors", "unsupported_aus", "analyze_items", "forget"),
    "sink": ("flush", "set_sources"),  # at each session's end; the sources' paths (sinks that re-read pixels)
}


def missing(cls: type, protocol: type) -> list[str]:
    """The methods of ``protocol`` that the class ``cls`` lacks (or has as something not callable)."""
    names = [n for n in protocol.__dict__ if not n.startswith("_") and callable(protocol.__dict__[n])]
    return [n for n in names if not callable(getattr(cls, n, None))]
