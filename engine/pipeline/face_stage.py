"""Detect → keep the best faces → track → align: a frame in, its aligned crops out.

Runs in the stream's own worker so full frames never cross to the analyzer; only the small
aligned crops do. The per-worker placement of the face-stage contract
(:class:`~auflow.engine.contracts.FacePlacement`); the batched one, for every stream in the pipeline's
process, is :mod:`.batched_face_stage`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..config import FaceSection
from ..errors import ConfigError
from ..plugin import build
from ..registry import ALIGNERS, DETECTORS, TRACKERS
from ..types import FaceCrops, FramePacket


class FaceStage:
    placement = "worker"  # one stage per stream, in its worker

    def __init__(self, cfg: FaceSection) -> None:
        self.cfg = cfg
        self.detector = build(DETECTORS, cfg.detector.name, cfg.detector.options, "face.detector")
        self.aligner = build(ALIGNERS, cfg.align.name, cfg.align.options, "face.align")
        self.tracker = build(TRACKERS, cfg.tracker.name, cfg.tracker.options, "face.tracker")

    def start(self) -> None:
        if self.cfg.context is not None and not hasattr(self.aligner, "context_crop"):
            raise ConfigError(f"face.context: the aligner {self.cfg.align.name!r} cannot cut context crops (no context_crop)")
        for p in (self.detector, self.aligner, self.tracker):
            p.start()

    def process(self, pkt: FramePacket) -> FaceCrops:
        lat = dict(pkt.latency_ms)
        t0 = time.perf_counter()
        faces = self.detector.detect(pkt.image)
        if len(faces) > self.cfg.max_faces:
            faces = faces[np.argsort(-faces.score)[: self.cfg.max_faces]]
        t1 = time.perf_counter()
        faces = self.tracker.update(faces, pkt.meta.frame)
        t2 = time.perf_counter()
        crops = self.aligner.crop(pkt.image, faces)
        context = None
        if self.cfg.context is not None:
            c = self.cfg.context
            context = self.aligner.context_crop(pkt.image, faces, c.size, c.scale, c.border)
        t3 = time.perf_counter()
        lat.update(detect=(t1 - t0) * 1e3, track=(t2 - t1) * 1e3, align=(t3 - t2) * 1e3)
        return FaceCrops(pkt.meta, faces, crops, lat, context)

    def process_batch(self, packets: Sequence[FramePacket]) -> list[FaceCrops]:
        """The placement contract's entry (frames of this worker's one stream, in order)."""
        return [self.process(p) for p in packets]

    def on_stream_end(self, cam: str | None = None) -> None:
        """The stream's session ended: its tracks end (``cam``: the contract's; a worker has one stream)."""
        self.tracker.reset()

    def stop(self) -> None:
        for p in (self.detector, self.aligner, self.tracker):
            p.stop()
