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

Every frame is still detected (nothing is interpolated); what changes is where. The detector keeps
the previous frame's faces, so one instance serves one stream (the face stage builds one per stream
worker); ``reset()`` forgets them. The parity with full-frame detection is measured on the demo clip
in tests/plugins/test_yunet_roi.py.
"""

from __future__ import annotations

import numpy as np
from auflow.engine.plugin import Plugin
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


@DETECTORS.register("yunet_roi")
class YuNetROIDetector(Plugin):
    """YuNet on a region around the previous frame's faces, the whole frame every ``full_every`` frames."""

    name = "yunet_roi"

    class Config(YuNetDetector.Config):
        roi_max_side: int = Field(160, ge=32, le=YUNET_MAX_SIDE,
                                  description="downscale the region around the previous faces so its longest side is ≤ this")
        roi_margin: float = Field(0.5, ge=0.0, le=4.0,
                                  description="each previous box grows by this fraction of its width/height on every side")
        full_every: int = Field(10, ge=1, description="search the whole frame every this many frames (new faces); 1 = always")
        min_roi: int = Field(48, ge=8, description="a region smaller than this (px, either side) grows to it")

    def __init__(self, config=None) -> None:
        super().__init__(config)
        base = self.config.model_dump(include=set(YuNetDetector.Config.model_fields))
        self.full = YuNetDetector(YuNetDetector.Config(**base))
        self.roi = YuNetDetector(YuNetDetector.Config(**{**base, "max_side": self.config.roi_max_side}))
        self.stats = {"full": 0, "roi": 0, "roi_miss": 0}
        self.reset()

    def start(self) -> None:
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

    def detect(self, image_bgr: np.ndarray) -> Faces:
        cfg = self.config
        h, w = image_bgr.shape[:2]
        due = (self._prev is None or len(self._prev) == 0 or self._shape != image_bgr.shape
               or self._since_full >= cfg.full_every - 1)
        faces = None
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
        self._prev, self._shape = faces, image_bgr.shape
        return faces

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
