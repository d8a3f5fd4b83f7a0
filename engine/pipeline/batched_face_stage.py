"""The batched face stage: frames of many streams on one torch device (a GPU, or the CPU), in one batch.

DESIGN.md ("GPU path"): NVDEC decodes into GPU memory, one GPU process batches detection across all
streams, estimates norm_crop's similarity and warps on the GPU, and the crops go to the models
without visiting host memory. This module is that process's face stage: the per-worker
:class:`~auflow.engine.pipeline.face_stage.FaceStage` batched, with the same contract
(:class:`~auflow.engine.contracts.FacePlacement`: ``process_batch``, ``on_stream_end``) and the same
``face`` config; it also runs on the CPU (``face.device: cpu``), where the tests check it:

    frames (3, H, W) uint8 BGR tensors of several streams, one device
      → RetinaFace-MobileNet0.25 on the whole batch (frames grouped by size; a frame larger than
        ``max_side`` is area-downscaled on the device with cv2's INTER_AREA weights)
      → the best ``max_faces`` per frame → the configured tracker, one instance per stream
        (ByteTrack runs on the host: only boxes and scores, a few floats per face, travel)
      → the aligner's ``crop_tensors`` (``align_torch.warp_crops``) on the device
      → :class:`~auflow.engine.types.FaceCrops` per frame, its crops one (N, 3, S, S) uint8 device tensor,
        for a device-side analyzer; ``to_host()`` gives the host form a CPU model takes.

Placement (``face.device``, wired in ``engine/pipeline/core.py``): set, the stream workers only
decode and send their frames; a thread of the pipeline's process gathers the frames of every
stream into dynamic batches (``face.batch`` frames, ``face.max_wait_ms``), uploads them, calls
:meth:`BatchedFaceStage.process` once per batch and hands those FaceCrops to the analyzer: the crops
stay on the device when every model takes tensors (the registry models do: ``torch_model``'s
device preprocessing; a teacher such as mediapipe_au does not, and then they go to the host). Frames of one stream arrive in
order (one collector per stream), as the tracker needs. With thread workers and NVDEC the frames
can arrive already on the device (``source.device_frames``: engine/sources/device_frames.py, no
host copy); the pipeline passes a frame that is already a tensor through as it is and uploads the
others. The detector's network is replayed from CUDA graphs (``face.cuda_graphs``,
engine/cuda_graphs.py).

Parity, tested on the CPU (tests/engine/pipeline/test_batched_face_stage.py): with the same retinaface
options, the same faces, tracks and (within 1 gray level) crops as FaceStage on the demo clip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import FaceSection
from ..cuda_graphs import GraphedForward
from ..errors import ConfigError
from ..plugin import build
from ..registry import ALIGNERS, DETECTORS, TRACKERS
from ..sources.device_frames import nv12_to_bgr  # noqa: F401 - the GPU path's colour conversion, exported here too
from ..types import FaceCrops, Faces, FrameMeta, FramePacket

log = logging.getLogger(__name__)


class BatchedFaceStage:
    """Batched detect → track → align for frames of many streams on one torch device (see the module doc)."""

    placement = "batched"  # one stage in the pipeline's process for every stream

    def __init__(self, cfg: FaceSection, device: str = "cuda") -> None:
        if cfg.detector.name != "retinaface":
            raise ConfigError(f"the batched face stage (face.device) detects with retinaface (torch), not {cfg.detector.name!r}")
        if cfg.align.name != "norm_crop":
            raise ConfigError(f"the batched face stage (face.device) aligns like norm_crop, not {cfg.align.name!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.cfg = cfg
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:  # tensors on it say cuda:N, never bare cuda
            self.device = torch.device("cuda", torch.cuda.current_device())
        # the plugins' batched tensor entries (RetinaFaceDetector.detect_tensors, Aligner.crop_tensors): the engine
        # names them through the registries and imports neither
        self.detector = build(DETECTORS, "retinaface", {**cfg.detector.options, "device": device}, "face.detector")
        self.aligner = build(ALIGNERS, cfg.align.name, cfg.align.options, "face.align")
        self.size, self.scale = self.aligner.config.size, self.aligner.config.scale
        self._trackers: dict[str, tuple[str, Any]] = {}  # cam → (sid, tracker)
        self._net: GraphedForward | None = None  # the detector's forward from CUDA graphs (face.cuda_graphs)

    def start(self) -> None:
        """Load the detector and pay, here, what the first frame would otherwise wait for (a live stream's
        first second piling up behind it): the tracker library's import (~0.5 s) and the device's first
        detector kernels."""
        if self.cfg.context is not None:
            log.info("face.context: the batched face stage cuts no context crops; mediapipe_au places its landmark "
                     "ROI from each frame's 5 landmarks (no tracked ROI)")
        self.detector.start()
        spare = build(TRACKERS, self.cfg.tracker.name, self.cfg.tracker.options, "face.tracker")
        spare.start()
        spare.stop()
        x = torch.zeros((1, 3, 64, 64), dtype=torch.uint8, device=self.device)
        small, sx, sy = self.detector.downscale_tensors(x)
        self.detector.detect_tensors(small, torch.tensor([[sx, sy]], dtype=torch.float32))
        if self.cfg.cuda_graphs and self.device.type == "cuda":
            # recorded per (batch bucket, network input size) when a batch first needs it: the input size
            # follows the streams' resolution, which only the frames tell
            self._net = GraphedForward(self.detector.network, self.device, self.cfg.batch, name="retinaface")
        self._sync()

    def _tracker(self, meta: FrameMeta):
        sid, tracker = self._trackers.get(meta.cam, (None, None))
        if tracker is None:
            tracker = build(TRACKERS, self.cfg.tracker.name, self.cfg.tracker.options, "face.tracker")
            tracker.start()
        elif sid != meta.sid:
            tracker.reset()  # a new session of that camera
        self._trackers[meta.cam] = (meta.sid, tracker)
        return tracker

    def on_stream_end(self, cam: str) -> None:
        entry = self._trackers.pop(cam, None)
        if entry is not None:
            entry[1].stop()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def process_batch(self, packets: Sequence[FramePacket]) -> list[FaceCrops]:
        """The placement contract's entry: FramePackets of any streams (each stream's in frame order) whose image
        is a host (H, W, 3) BGR array, uploaded here, or already a (3, H, W) tensor on this stage's device."""
        def tensor(img) -> torch.Tensor:
            return img if isinstance(img, torch.Tensor) else torch.from_numpy(img).to(self.device, non_blocking=True).permute(2, 0, 1)

        return self.process([(p.meta, tensor(p.image)) for p in packets], [p.latency_ms for p in packets])

    def process(self, frames: Sequence[tuple[FrameMeta, torch.Tensor]],
                latency_ms: Sequence[dict[str, float]] | None = None) -> list[FaceCrops]:
        """One batch: ``frames`` as (meta, (3, H, W) uint8 BGR tensor on this stage's device) of any streams.

        Frames of one stream must come in frame order. Returns one FaceCrops (crops on the device) per frame, in order;
        its latency_ms adds detect/track/align, each the batch's time (every frame waited for the batch).
        """
        if self.detector.network is None:
            self.start()
        n = len(frames)
        t0 = time.perf_counter()
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (meta, img) in enumerate(frames):
            if img.ndim != 3 or img.shape[0] != 3 or img.dtype != torch.uint8 or img.device != self.device:
                raise ValueError(f"frame {i}: expected a (3, H, W) uint8 tensor on {self.device}, "
                                 f"got {img.dtype} {tuple(img.shape)} on {img.device}")
            groups.setdefault(tuple(img.shape[1:]), []).append(i)
        stacked: dict[tuple[int, int], torch.Tensor] = {}
        detected: list[Faces | None] = [None] * n
        for hw, idx in groups.items():
            x = stacked[hw] = torch.stack([frames[i][1] for i in idx])
            small, sx, sy = self.detector.downscale_tensors(x)
            scale = torch.tensor([[sx, sy]], dtype=torch.float32).expand(len(idx), 2)
            for i, faces in zip(idx, self.detector.detect_tensors(small, scale, self._net)):
                if len(faces) > self.cfg.max_faces:
                    faces = faces[np.argsort(-faces.score)[: self.cfg.max_faces]]
                detected[i] = faces
        t1 = time.perf_counter()
        tracked = [self._tracker(meta).update(detected[i], meta.frame) for i, (meta, _) in enumerate(frames)]
        t2 = time.perf_counter()
        crops: list[torch.Tensor | None] = [None] * n
        for hw, idx in groups.items():
            counts = [len(tracked[i]) for i in idx]
            kps = np.concatenate([tracked[i].kps for i in idx]).reshape(-1, 5, 2)
            where = np.repeat(np.arange(len(idx)), counts)
            out = self.aligner.crop_tensors(stacked[hw], torch.from_numpy(kps), frame_index=where)
            for i, part in zip(idx, torch.split(out, counts)):
                crops[i] = part
        self._sync()
        t3 = time.perf_counter()
        stamp = {"detect": (t1 - t0) * 1e3, "track": (t2 - t1) * 1e3, "align": (t3 - t2) * 1e3}
        lat_in = latency_ms or [{}] * n
        return [FaceCrops(meta, tracked[i], crops[i], {**lat_in[i], **stamp}) for i, (meta, _) in enumerate(frames)]

    def stop(self) -> None:
        for cam in list(self._trackers):
            self.on_stream_end(cam)
        self.detector.stop()
