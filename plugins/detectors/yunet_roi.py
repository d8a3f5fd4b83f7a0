"""YuNet that looks where the faces were: full-frame detection every few frames, a small ROI between.

Detection cost grows with the pixels YuNet sees, and what matters for the landmarks (and so for
the aligned crops the models get) is how many pixels the *face* has in the detector's input, not
the frame. When the previous frame had faces, this detector runs YuNet on a crop of the frame
around them instead: the union of the previous boxes, each grown by ``roi_margin`` of its size on
every side, clipped to the frame, downscaled so its longest side is at most ``roi_max_side``.
A large face in a 640×360 frame then reaches YuNet at about the resolution that ``max_side: 256``
gives it, from a third fewer pixels; a small face in a 1080p frame keeps its full resolution at
a fraction of the cost.

New faces are still found: the whole frame (at ``max_side``, as ``yunet`` does) is searched
every ``full_every`` frames, on the first frame, after the frame size changes, and on any frame
whose ROI held no face (so a lost face costs one full-frame detection, not ``full_every`` frames).
A face that enters while others are tracked appears at the next full-frame detection, at most
``full_every - 1`` frames late.

With ``detect_every: 1`` (the default) every frame is detected; what changes is where. With
``detect_every: N > 1`` YuNet runs on every Nth frame only, and on the frames between, each face's
five landmarks are *tracked* from the previous frame by pyramidal Lucas-Kanade optical flow
(OpenCV's ``calcOpticalFlowPyrLK``, on the grey region around the faces), checked forward and
backward: a landmark that flow cannot follow back to where it started (more than
``max_flow_error`` of the box width) sends that frame to YuNet instead, so a turn, an occlusion or
a cut costs one detection, not a drifting face. The box follows the landmarks (their mean shift and
their spread's scale); the score stays the last detection's. Tracked faces are marked in ``stats``
(``tracked``); their accuracy cost — how far tracked landmarks fall from detected ones, and what
that does to the models' outputs — is measured in tests/plugins/test_yunet_roi.py and
bench/detect_every_study.py, not assumed.

The detector keeps the previous frame's faces (and, when tracking, its image), so one instance
serves one stream (the face stage builds one per stream worker); ``reset()`` forgets them. The
parity with full-frame detection is measured on the demo clip in tests/plugins/test_yunet_roi.py.
"""

from __future__ import annotations

import cv2
import numpy as np
from auflow.engine.plugin import CPU, Plugin, StartContext
from auflow.engine.registry import DETECTORS
from auflow.engine.types import Faces
from pydantic import Field

from .yunet import YUNET_MAX_SIDE, YuNetDetector


def roi_box(bbox: np.ndarray, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer crop (x0, y0, x1, y1) holding every box of ``bbox`` (N, 4) grown by ``margin``, clipped."""
    w = bbox[:, 2] - bbox[:, 0]
    h = bbox[:, 3] - bbox[:, 1]
    x0 = float(np.min(bbox[:, 0] - margin * w))
    y0 = float(np.min(bbox[:, 1] - margin * h))
    x1 = float(np.max(bbox[:, 2] + margin * w))
    y1 = float(np.max(bbox[:, 3] + margin * h))
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return x0, y0, x1, y1


#: Lucas-Kanade settings: a 21-px window over 3 pyramid levels follows a face's landmarks across
#: one frame of ordinary head motion at interview resolutions (up to ~8x the window per frame)
_LK = {"winSize": (21, 21), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}


@DETECTORS.register("yunet_roi")
class YuNetROIDetector(Plugin):
    """YuNet on a region around the previous frame's faces, the whole frame every ``full_every`` frames."""

    class Config(YuNetDetector.Config):
        roi_max_side: int = Field(160, ge=32, le=YUNET_MAX_SIDE,
                                  description="downscale the region around the previous faces so its longest side is ≤ this")
        roi_margin: float = Field(0.5, ge=0.0, le=4.0,
                                  description="each previous box grows by this fraction of its width/height on every side")
        full_every: int = Field(10, ge=1, description="search the whole frame every this many frames (new faces); 1 = always")
        min_roi: int = Field(48, ge=8, description="a region smaller than this (px, either side) grows to it")
        detect_every: int = Field(1, ge=1, le=30, description=(
            "run YuNet on every this many frames; on the frames between, track the landmarks by optical flow (1 = detect every frame)"))
        max_flow_error: float = Field(0.03, gt=0.0, le=0.5, description=(
            "a tracked landmark whose forward-backward flow error exceeds this fraction of the box width sends the frame to YuNet"))

    def __init__(self, config=None) -> None:
        super().__init__(config)
        base = self.config.model_dump(include=set(YuNetDetector.Config.model_fields))
        self.full = YuNetDetector(YuNetDetector.Config(**base))
        self.roi = YuNetDetector(YuNetDetector.Config(**{**base, "max_side": self.config.roi_max_side}))
        self.stats = {"full": 0, "roi": 0, "roi_miss": 0, "tracked": 0, "track_lost": 0}
        self.reset()

    def start(self, ctx: StartContext = CPU) -> None:
        self.full.start()
        self.roi.start()

    def stop(self) -> None:
        self.full.stop()
        self.roi.stop()

    def reset(self) -> None:
        """Forget the previous faces: the next frame is searched whole."""
        self._prev: Faces | None = None
        self._shape: tuple[int, ...] | None = None
        self._since_full = 0
        self._since_detect = 0
        self._prev_image: np.ndarray | None = None

    def detect(self, image_bgr: np.ndarray) -> Faces:
        cfg = self.config
        h, w = image_bgr.shape[:2]
        due = (self._prev is None or len(self._prev) == 0 or self._shape != image_bgr.shape
               or self._since_full >= cfg.full_every - 1)
        faces = None
        if not due and self._since_detect < cfg.detect_every - 1:
            faces = self._track(self._prev_image, image_bgr, self._prev, w, h)
            if faces is not None:
                self.stats["tracked"] += 1
                self._since_detect += 1
                self._since_full += 1
                self._keep(faces, image_bgr)
                return faces
            self.stats["track_lost"] += 1
        if not due:
            faces = self._detect_roi(image_bgr, self._prev.bbox, w, h)
            if faces is None:
                self.stats["roi_miss"] += 1
            else:
                self.stats["roi"] += 1
                self._since_full += 1
        if faces is None:
            faces = self.full.detect(image_bgr)
            self.stats["full"] += 1
            self._since_full = 0
        self._since_detect = 0
        self._keep(faces, image_bgr)
        return faces

    def _keep(self, faces: Faces, image_bgr: np.ndarray) -> None:
        self._prev, self._shape = faces, image_bgr.shape
        # the frame is only read again by the next call's optical flow; decoders hand out a new array per frame
        self._prev_image = image_bgr if self.config.detect_every > 1 else None

    def _track(self, prev_bgr: np.ndarray | None, bgr: np.ndarray, prev: Faces, w: int, h: int) -> Faces | None:
        """``prev``'s faces followed into ``bgr`` by Lucas-Kanade flow of their landmarks; None when any is lost."""
        if prev_bgr is None or prev_bgr.shape != bgr.shape:
            return None
        x0, y0, x1, y1 = roi_box(prev.bbox, self.config.roi_margin, w, h)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        g0 = cv2.cvtColor(prev_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        g1 = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        off = np.array([x0, y0], np.float32)
        p0 = (prev.kps.reshape(-1, 1, 2) - off).astype(np.float32)
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, **_LK)
        if p1 is None or not ok1.all():
            return None
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, **_LK)
        if back is None or not ok2.all():
            return None
        width = np.repeat(prev.bbox[:, 2] - prev.bbox[:, 0], 5)
        if np.any(np.linalg.norm((back - p0).reshape(-1, 2), axis=1) > self.config.max_flow_error * width):
            return None
        kps = p1.reshape(-1, 5, 2) + off
        old = prev.kps
        c0, c1 = old.mean(axis=1), kps.mean(axis=1)                     # (N, 2) landmark centroids
        s0 = np.sqrt(((old - c0[:, None]) ** 2).sum(-1).mean(-1))        # (N,) their RMS spread
        s1 = np.sqrt(((kps - c1[:, None]) ** 2).sum(-1).mean(-1))
        scale = (s1 / np.maximum(s0, 1e-6))[:, None]
        corners = prev.bbox.reshape(-1, 2, 2)
        bbox = ((corners - c0[:, None]) * scale[:, None] + c1[:, None]).reshape(-1, 4)
        if np.any(bbox[:, 2] <= 0) or np.any(bbox[:, 3] <= 0) or np.any(bbox[:, 0] >= w) or np.any(bbox[:, 1] >= h):
            return None  # flowed out of the frame: let YuNet decide
        return Faces(bbox, prev.score, kps)

    def _detect_roi(self, image_bgr: np.ndarray, prev_bbox: np.ndarray, w: int, h: int) -> Faces | None:
        """Faces in the region around ``prev_bbox``, in frame coordinates; None when it holds none."""
        cfg = self.config
        x0, y0, x1, y1 = roi_box(prev_bbox, cfg.roi_margin, w, h)
        if x1 - x0 < cfg.min_roi:
            x0, x1 = max(0, (x0 + x1 - cfg.min_roi) // 2), min(w, (x0 + x1 + cfg.min_roi) // 2)
        if y1 - y0 < cfg.min_roi:
            y0, y1 = max(0, (y0 + y1 - cfg.min_roi) // 2), min(h, (y0 + y1 + cfg.min_roi) // 2)
        if x1 <= x0 or y1 <= y0:
            return None
        faces = self.roi.detect(image_bgr[y0:y1, x0:x1])  # YuNetDetector makes the view contiguous
        if len(faces) == 0:
            return None
        off = np.array([x0, y0], np.float32)
        return Faces(faces.bbox + np.tile(off, 2), faces.score, faces.kps + off)
