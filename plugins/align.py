"""Face alignment: 5 landmarks → a similarity transform onto the ArcFace template → a square crop.

``scale == 1.0`` is exactly InsightFace's ``norm_crop`` (the transform every ArcFace-aligned model
was trained with). ``scale != 1.0`` solves the same least-squares similarity against the template
shrunk towards the crop centre by ``1 / scale``: ``scale = 1.25`` shows 25 % more context around
the face (a looser crop), ``scale < 1`` a tighter one.

Sizes: ``norm_crop``'s template is defined for sizes that are multiples of 112 (template × size/112)
or of 128 (the same, shifted right by 8 × size/128). Those sizes warp directly; any other size warps
at the next multiple of 112 and is then area-resized (e.g. 64×64 for fer's model), as DESIGN.md says.

The similarity is the closed-form 2-D least-squares (Umeyama) fit that scikit-image's
``SimilarityTransform.estimate`` computes for ``norm_crop``; written out here in numpy because it
also has to run batched on a GPU later, and skimage ≥ 0.26 deprecates the call ``norm_crop`` makes.
"""

from __future__ import annotations

import warnings
from math import ceil
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import ALIGNERS
from auflow.engine.types import ContextCrops, Faces

#: InsightFace's ArcFace 5-point template for a 112×112 crop (insightface.utils.face_align.arcface_dst):
#: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def warp_size(size: int) -> int:
    """The size the warp runs at: ``size`` itself when norm_crop supports it, else the next multiple of 112."""
    if size % 112 == 0 or size % 128 == 0:
        return size
    return 112 * ceil(size / 112)


def _direct_template(size: int) -> np.ndarray:
    """norm_crop's template for a size that is a multiple of 112 or 128 (estimate_norm, arcface mode)."""
    if size % 112 == 0:
        return ARCFACE_112 * np.float32(size / 112.0)
    if size % 128 == 0:
        ratio = size / 128.0
        return ARCFACE_112 * np.float32(ratio) + np.array([8.0 * ratio, 0.0], np.float32)
    raise ValueError(f"norm_crop has no template for size {size}: use a multiple of 112 or 128")


def arcface_template(size: int = 112, scale: float = 1.0) -> np.ndarray:
    """Where the 5 landmarks land in a ``size``×``size`` aligned crop: (5, 2) float32 pixel coordinates.

    ``scale`` > 1 pulls the points towards the crop centre ((size − 1) / 2, the middle of the pixel
    grid as cv2.warpAffine samples it) by 1/scale: a looser crop. For sizes that are not multiples
    of 112 or 128 it is the template of the warp size mapped through the area resize to ``size``.
    """
    if size <= 0 or scale <= 0:
        raise ValueError(f"size and scale must be positive, got size={size}, scale={scale}")
    work = warp_size(size)
    t = _direct_template(work).astype(np.float64)
    if scale != 1.0:
        c = (work - 1) / 2.0
        t = c + (t - c) / scale
    if work != size:  # cv2.resize maps pixel centres: x_out = (x_in + 0.5) * size / work − 0.5
        t = (t + 0.5) * (size / work) - 0.5
    return t.astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` onto ``dst``.

    src, dst (..., K, 2) → (..., 2, 3) float64 affine matrices [[a, −b, tx], [b, a, ty]], batched over
    leading axes. Equal to skimage's SimilarityTransform.estimate (Umeyama 1991, Eqs. 40–42) in 2-D,
    where the optimum has the closed form a = Σ p·q / Σ|p|², b = Σ p×q / Σ|p|² on centred points.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(axis=-2, keepdims=True), dst.mean(axis=-2, keepdims=True)
    p, q = src - ms, dst - md
    norm = (p ** 2).sum(axis=(-2, -1))
    a = (p * q).sum(axis=(-2, -1)) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(axis=-1) / norm
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)  # (..., 2, 2)
    t = md[..., 0, :] - (rot @ ms[..., 0, :, None])[..., 0]
    return np.concatenate([rot, t[..., None]], axis=-1)


def estimate_transform(kps: np.ndarray, size: int = 112, scale: float = 1.0) -> np.ndarray:
    """Frame → warp-size crop transforms for landmarks (N, 5, 2): (N, 2, 3) float64.

    The matrices map into the ``warp_size(size)`` crop that is warped before any resize.
    """
    work = warp_size(size)
    return similarity_transform(kps, arcface_template(work, scale))


@ALIGNERS.register("norm_crop")
class Aligner(Plugin):
    """Aligned square face crops from 5 landmarks: InsightFace's norm_crop, optionally looser."""

    class Config(PluginConfig):
        size: int = Field(112, ge=16, le=1024, description="crop side in pixels")
        scale: float = Field(1.0, gt=0.0, le=4.0, description=">1 shows more context around the face (looser crop)")
        impl: Literal["insightface", "numpy"] = Field(
            "insightface", description="at scale 1: insightface = norm_crop itself; numpy = the same transform solved "
            "in closed form here (no scikit-image fit: ~10x cheaper per face; crops within 1 gray level of norm_crop's)")

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._norm_crop = None

    def start(self, ctx: StartContext = CPU) -> None:
        if self._norm_crop is None:
            from insightface.utils.face_align import norm_crop  # 0.4 s import: not at module import

            # norm_crop calls SimilarityTransform.estimate, deprecated in scikit-image 0.26. A
            # process-wide filter, installed once: catch_warnings() per call is not thread-safe,
            # and the face stage of each stream runs in its own thread.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")
            self._norm_crop = norm_crop

    def template(self) -> np.ndarray:
        """Where the landmarks land in this aligner's crops, (5, 2) float32."""
        return arcface_template(self.config.size, self.config.scale)

    def crop(self, image_bgr: np.ndarray, faces: Faces) -> np.ndarray:
        """Aligned crops (N, size, size, 3) uint8 BGR, one per face, in the order of ``faces``."""
        size, scale = self.config.size, self.config.scale
        work = warp_size(size)
        if len(faces) == 0:
            return np.zeros((0, size, size, 3), np.uint8)
        if scale == 1.0 and self.config.impl == "insightface":
            self.start()
            crops = [self._norm_crop(image_bgr, k, image_size=work) for k in faces.kps]
        else:
            mats = estimate_transform(faces.kps, size, scale)
            crops = [cv2.warpAffine(image_bgr, m, (work, work), borderValue=0.0) for m in mats]
        if work != size:
            crops = [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops]
        return np.stack(crops)

    def context_crop(self, image_bgr: np.ndarray, faces: Faces, size: int, scale: float,
                     border: str = "replicate") -> ContextCrops:
        """``face.context``: a looser crop of each face, (N, size, size, 3) uint8, warped straight at ``size``
        with the template at ``scale``, with each crop's frame → crop affine (N, 2, 3) float64 and ``scale``.
        Beyond the frame its border pixels are repeated (``border="replicate"``, as MediaPipe's ImageToTensor
        does) or black (``"black"``, as :meth:`crop`)."""
        if len(faces) == 0:
            return ContextCrops(np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 2, 3)), scale)
        mats = similarity_transform(faces.kps, arcface_template(size, scale))
        mode = {"replicate": cv2.BORDER_REPLICATE, "black": cv2.BORDER_CONSTANT}[border]
        crops = [cv2.warpAffine(image_bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=0.0)
                 for m in mats]
        return ContextCrops(np.stack(crops), mats, scale)

    def crop_tensors(self, frames, kps, frame_index=None):
        """The batched entry of the shared face stage: the same crops from frames on a torch device,
        (N, C, H, W) uint8 → (M, C, size, size), one per landmark set ``kps`` (M, 5, 2) in frame ``frame_index``
        (``align_torch.warp_crops``: within 1 gray level of :meth:`crop`)."""
        from .align_torch import warp_crops

        return warp_crops(frames, kps, self.config.size, self.config.scale, frame_index=frame_index)
