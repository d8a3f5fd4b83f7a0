"""The validated types every stage shares: frames in, faces through, results out.

Dataclasses of parallel numpy arrays (supervision's ``Detections`` style): validated on
construction with errors that give the expected and the actual shape, indexable by a mask or
indices to give a new object of the same type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np

#: canonical expression labels, in the order auflow's outputs use (DESIGN.md)
EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
#: kinds of model provenance a result may carry (wire format v1 `models`)
ModelKind = Literal["trained", "teacher", "distilled", "user", "untrained"]
MODEL_KINDS: tuple[str, ...] = ("trained", "teacher", "distilled", "user", "untrained")


def _check(name: str, arr: np.ndarray, shape: tuple, dtype_kind: str | None = None) -> None:
    """``shape`` may hold ints or None (any size). Raises ValueError naming expected vs actual."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if dtype_kind and arr.dtype.kind not in dtype_kind:
        raise ValueError(f"{name} must have dtype kind {dtype_kind!r}, got {arr.dtype}")


@dataclass(frozen=True)
class ModelInfo:
    """Where an output came from: wire-format ``models[output]``.

    ``unsupported``: labels of the output this model cannot measure (its values are null, not 0): e.g.
    the teacher mediapipe_au's AU05, AU06, AU09 and AU14, whose blendshapes do not move on faces that show them.
    """

    name: str
    kind: ModelKind
    unsupported: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {self.kind!r}")

    def to_wire(self) -> dict:
        d = {"name": self.name, "kind": self.kind}
        if self.unsupported:
            d["unsupported"] = list(self.unsupported)
        return d


@dataclass(frozen=True)
class FrameMeta:
    """Identity and timing of one decoded frame (carried by every per-frame type)."""

    cam: str
    sid: str
    frame: int  # index of the decoded frame in the session
    pts: int | None
    time_base: tuple[int, int]
    t_capture_ns: int  # wall clock (time.time_ns) when the frame left the decoder (source.realtime: when it was due)
    width: int
    height: int

    @property
    def timestamp(self) -> float | None:
        """Presentation time in seconds, or None when the container gives no pts."""
        if self.pts is None:
            return None
        return self.pts * self.time_base[0] / self.time_base[1]


@dataclass(frozen=True)
class FramePacket:
    """A decoded frame: BGR uint8 (H, W, 3) plus its identity and timing; or, decoded into GPU memory
    (``source.device_frames``), a (3, H, W) uint8 BGR torch tensor on that device."""

    meta: FrameMeta
    image: np.ndarray  # or torch.Tensor (3, H, W): torch is not imported here
    latency_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if type(img).__module__ == "torch":  # a frame left on the GPU (source.device_frames): (3, H, W) uint8
            if tuple(img.shape) != (3, self.meta.height, self.meta.width) or str(img.dtype) != "torch.uint8":
                raise ValueError(f"FramePacket.image on a device must be a (3, {self.meta.height}, {self.meta.width}) "
                                 f"uint8 tensor, got {img.dtype} {tuple(img.shape)}")
            return
        _check("FramePacket.image", img, (self.meta.height, self.meta.width, 3), "u")


@dataclass(frozen=True)
class Faces:
    """Detected faces in one frame, as parallel arrays.

    bbox (N, 4) float32 x1, y1, x2, y2 in frame pixels; score (N,) float32; kps (N, 5, 2) float32
    in InsightFace/arcface order (left eye, right eye, nose, left mouth corner, right mouth corner);
    track (N,) int64, -1 where no tracker has confirmed the face.
    """

    bbox: np.ndarray
    score: np.ndarray
    kps: np.ndarray
    track: np.ndarray | None = None

    def __post_init__(self) -> None:  # frozen: the normalised arrays are set once, here
        bbox = np.asarray(self.bbox, dtype=np.float32).reshape(-1, 4)
        n = len(bbox)
        kps = np.asarray(self.kps, dtype=np.float32)
        if kps.size == 0:
            kps = kps.reshape(0, 5, 2)
        object.__setattr__(self, "bbox", bbox)
        object.__setattr__(self, "score", np.asarray(self.score, dtype=np.float32))
        object.__setattr__(self, "kps", kps)
        object.__setattr__(self, "track", np.full(n, -1, np.int64) if self.track is None else np.asarray(self.track, np.int64))
        _check("Faces.score", self.score, (n,))
        _check("Faces.kps", self.kps, (n, 5, 2))
        _check("Faces.track", self.track, (n,))

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.bbox)

    def __getitem__(self, idx) -> Faces:
        idx = np.atleast_1d(np.arange(len(self))[idx])
        return Faces(self.bbox[idx], self.score[idx], self.kps[idx], self.track[idx])

    def with_track(self, track: np.ndarray) -> Faces:
        return replace(self, track=np.asarray(track, np.int64))


@dataclass(frozen=True)
class ContextCrops:
    """``face.context``: a second, looser crop of each face, for analyzers that look beyond the aligned crop
    (mediapipe_au's landmark ROI). ``crops`` (N, C, C, 3) BGR uint8; ``transforms`` (N, 2, 3) float, the frame →
    context-crop affine of each; ``scale``, the ``face.context.scale`` they were cut at (the ArcFace template's
    looseness: with it, an analyzer places a region in these crops exactly as in an aligned crop of that
    geometry, without reading it back from a transform)."""

    crops: np.ndarray
    transforms: np.ndarray
    scale: float

    def __post_init__(self) -> None:
        n = len(self.crops) if isinstance(self.crops, np.ndarray) and self.crops.ndim else 0
        size = self.crops.shape[1] if isinstance(self.crops, np.ndarray) and self.crops.ndim == 4 else None
        _check("ContextCrops.crops", self.crops, (n, size, size, 3), "u")
        _check("ContextCrops.transforms", self.transforms, (n, 2, 3), "f")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"ContextCrops.scale must be a positive number, got {self.scale!r}")

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, idx) -> ContextCrops:
        """The context crops of faces ``idx`` (a slice, index array or mask, as :class:`Faces`)."""
        idx = np.atleast_1d(np.arange(len(self))[idx])
        return ContextCrops(self.crops[idx], self.transforms[idx], self.scale)


@dataclass(frozen=True)
class FaceCrops:
    """Aligned face crops of one frame: what leaves the face stage, in either placement.

    ``crops``: (N, S, S, 3) BGR uint8 numpy array (the per-worker stage), or a (N, 3, S, S) uint8 torch
    tensor left on the device of the batched stage (engine/pipeline/batched_face_stage.py); :meth:`to_host`
    gives the array form."""

    meta: FrameMeta
    faces: Faces
    crops: Any  # np.ndarray, or a torch.Tensor on a device
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: ``face.context``: a second, looser crop of each face (:class:`ContextCrops`); None when not configured
    context: ContextCrops | None = None

    def __post_init__(self) -> None:
        n = len(self.faces)
        if self.context is not None:
            if not isinstance(self.context, ContextCrops):
                raise TypeError(f"FaceCrops.context must be ContextCrops or None, got {type(self.context).__name__}")
            if len(self.context) != n:
                raise ValueError(f"FaceCrops.context must hold one crop per face ({n}), got {len(self.context)}")
        if isinstance(self.crops, np.ndarray):
            size = self.crops.shape[1] if self.crops.ndim == 4 else None
            _check("FaceCrops.crops", self.crops, (n, size, size, 3), "u")
            return
        shape = tuple(getattr(self.crops, "shape", ()))
        if len(shape) != 4 or shape[0] != n or shape[1] != 3 or shape[2] != shape[3]:
            raise ValueError(f"FaceCrops.crops as a tensor must have shape ({n}, 3, S, S), got {shape}")

    @property
    def on_device(self) -> bool:
        """The crops are a tensor (on the batched face stage's device), not a host array."""
        return not isinstance(self.crops, np.ndarray)

    def to_host(self) -> FaceCrops:
        """These crops as a (N, S, S, 3) host array (a copy from the device; ``self`` when already there)."""
        if not self.on_device:
            return self
        return replace(self, crops=self.crops.permute(0, 2, 3, 1).contiguous().cpu().numpy())


@dataclass(frozen=True)
class FaceResults:
    """Per-face model outputs for one frame.

    ``outputs[name]`` is (N, C) float32 probabilities whose column labels are ``labels[name]``
    (``au``: AU names such as "AU01"; ``expr``: canonical expression names). ``models[name]`` says
    which model produced each output and whether it is trained. ``features``: (N, D) float32 per-face
    features of the temporal stage's encoder (engine/temporal.py), or None; never published.
    """

    meta: FrameMeta
    faces: Faces
    outputs: dict[str, np.ndarray]
    labels: dict[str, tuple[str, ...]]
    models: dict[str, ModelInfo]
    latency_ms: dict[str, float] = field(default_factory=dict)
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.faces)
        for name, arr in self.outputs.items():
            if name not in self.labels:
                raise ValueError(f"FaceResults output {name!r} has no labels")
            if name not in self.models:
                raise ValueError(f"FaceResults output {name!r} has no model provenance")
            _check(f"FaceResults.outputs[{name!r}]", arr, (n, len(self.labels[name])))
        if self.features is not None:
            _check("FaceResults.features", self.features, (n, None))


# -- streams and sessions: what a stream worker tells the pipeline ---------------------------------------
#: a live session's states, as status messages carry them
SessionState = Literal["connecting", "live", "reconnecting"]
#: why a session ended (wire: eos.reason)
EndReason = Literal["end", "disconnected", "error", "interrupted"]


@dataclass
class SessionCounters:
    """What happened in one session ``sid`` of one stream; sent with every worker message.

    ``frames`` counts decoded frames (the ``frame`` index of the next one), ``dropped`` frames
    the live queue discarded because downstream was slower, ``decimated`` frames skipped on purpose
    by ``analyze_fps``, ``decode_errors`` damaged packets/frames and early ends, ``queue`` the
    decoded frames waiting for the face stage. Mutable on purpose: the worker's frame buffer counts
    into the one object of its session (:meth:`reset` starts the next); what travels is a :meth:`copy`.
    """

    sid: str = ""
    frames: int = 0
    dropped: int = 0
    decimated: int = 0
    decode_errors: int = 0
    queue: int = 0

    def reset(self, sid: str) -> None:
        """Start counting a new session (in place: the worker's buffer holds this object)."""
        self.sid, self.frames, self.dropped, self.decimated, self.decode_errors, self.queue = sid, 0, 0, 0, 0, 0

    def copy(self) -> SessionCounters:
        return SessionCounters(self.sid, self.frames, self.dropped, self.decimated, self.decode_errors, self.queue)


@dataclass(frozen=True)
class StateChange:
    """A live session moved to ``state``."""

    sid: str
    state: SessionState


@dataclass(frozen=True)
class SessionEnd:
    """A session ended; ``final``: the stream is over (otherwise a live source reconnects under a new sid)."""

    sid: str
    reason: EndReason
    error: str | None = None
    final: bool = True


@dataclass(frozen=True)
class EndOfStream:
    """Travels behind a session's last frame through every queue.

    ``final``: the stream is over (otherwise a live source reconnects under a new sid);
    ``counters``: the session's counts, reported in its ``eos``."""

    cam: str
    sid: str  # "" when the stream never had a session (its worker could not start)
    reason: EndReason
    error: str | None = None
    final: bool = True
    counters: SessionCounters = field(default_factory=SessionCounters)


#: what a stream worker sends its parent: log (level, logger, text), frame (a FramePacket: the shared face stage
#: runs in the parent), crops (FaceCrops), state (StateChange), end (SessionEnd), fatal (why, str), done (None);
#: the parent adds crashed (the dead process's exit code)
WorkerKind = Literal["log", "frame", "crops", "state", "end", "fatal", "done", "crashed"]


class WorkerMessage(NamedTuple):
    """One message from a stream worker to the pipeline (a tuple on the queue: it pickles as one)."""

    kind: WorkerKind
    payload: Any
    counters: SessionCounters | None

