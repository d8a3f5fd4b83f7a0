"""MediaPipe's video mode for ``mediapipe_au``: each person's landmark ROI placed from their own landmarks.

The landmark model's output moves with where its 256 × 256 ROI sits on the face. Placed from the 5
detector landmarks (``mediapipe_au.roi_transform``), the ROI inherits their jitter, and so do the AUs:
measured on the study videos (bench/study_videos.py), the fast profile's ROI detector against the
accurate profile's full-frame one gave AU Pearson r as low as 0.60 with the same teacher, though both
saw the same faces. MediaPipe itself places the ROI from the previous frame's 478 landmarks when it
tracks (``face_landmarks_detector_graph.cc``: the landmarks' bounding box, squared on its long side and
scaled 1.5, turned by the eye line 33 → 263). That is what this module does, per tracked person (with
the scale at 1.35: :data:`ROI_SCALE`):

1. the ROI comes from the person's previous landmarks (if seen within ``max_gap`` frames), else from
   the 5 detector landmarks (a new person);
2. the landmark model runs on it; the ROI its landmarks give is compared with the one used: when the
   centre moved more than ``tol`` of the side, the side changed more than ``tol``, or the angle more than
   ``2 * tol`` radians, the model runs once more on the new ROI (a new person, a fast move);
3. the last ROI is kept for the person's next frame.

The ROI is cut from the face stage's context crop (``face.context``: looser than the aligned crop, so
the ROI fits) through its frame → crop affine; state is kept in frame coordinates. On the study videos
(2-core VM, 2026-12-05) the second run was needed on 1.0 % of the demo clip's faces, 18 % of the group
pan's and 82 % of the shaky clip's (frames that jump up to ±10 % of their width).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

#: the landmark model's input side (as mediapipe_au.ROI_SIZE)
ROI_SIZE = 256
#: the ROI side: the landmarks' box side × this. MediaPipe's tracking graph scales by 1.5
#: (face_landmarks_detector_graph.cc, RectTransformation); here 1.35, the side mediapipe_au's parity grid
#: against MediaPipe's IMAGE-mode outputs found best (125 in the 112 ArcFace frame, where the landmark box
#: side averages 138.8 / 1.5 = 92.5 on the demo clip: 125 / 92.5 = 1.35). At 1.5 the brow AUs read lower
#: (demo clip, the surprised seconds: AU01 0.19 vs 0.31; 0.36 with the per-frame ROI), and the AUs of the
#: per-frame ROI, which the parity tests and docs/au_agreement.md measured, are what 1.35 keeps.
ROI_SCALE = 1.35
#: the eye-line landmarks that set the ROI's angle (left and right outer eye corners)
EYE_LINE = (33, 263)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine (2, 3) that applies ``b`` then ``a``."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def warp_landmarks(lms: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Landmarks (..., 478, 3) through the affine ``m`` (2, 3), in place: x, y mapped, z scaled by ``m``'s scale
    (computed in the landmarks' own float type). Returns ``lms``."""
    scale = np.hypot(m[0, 0], m[1, 0])
    m = m.astype(lms.dtype)
    lms[..., :2] = lms[..., :2] @ m[:, :2].T + m[:, 2]
    lms[..., 2] *= lms.dtype.type(scale)
    return lms


def roi_from_landmarks(xy: np.ndarray) -> np.ndarray:
    """Frame → ROI affine (2, 3) from 478 landmarks (478, 2) in frame pixels: MediaPipe's tracking ROI."""
    lo, hi = xy.min(0), xy.max(0)
    centre = (lo + hi) / 2.0
    side = ROI_SCALE * float(max(hi - lo))
    d = xy[EYE_LINE[1]] - xy[EYE_LINE[0]]
    angle = float(np.arctan2(d[1], d[0]))
    s = ROI_SIZE / max(side, 1e-6)
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) * s  # turns the eye line level
    c = (ROI_SIZE - 1) / 2.0
    return np.hstack([rot, (np.array([c, c]) - rot @ centre)[:, None]])


def _geometry(m: np.ndarray) -> tuple[np.ndarray, float, float]:
    """An ROI affine's centre (frame pixels), side (frame pixels) and angle (radians)."""
    s = float(np.hypot(m[0, 0], m[1, 0]))
    c = (ROI_SIZE - 1) / 2.0
    centre = np.linalg.solve(m[:, :2], np.array([c, c]) - m[:, 2])
    return centre, ROI_SIZE / s, float(np.arctan2(-m[0, 1], m[0, 0]))


def moved(used: np.ndarray, found: np.ndarray, tol: float) -> bool:
    """Whether the ROI the landmarks give (``found``) is far from the one they came from (``used``)."""
    c0, s0, a0 = _geometry(used)
    c1, s1, a1 = _geometry(found)
    turn = abs((a1 - a0 + np.pi) % (2 * np.pi) - np.pi)
    return bool(np.linalg.norm(c1 - c0) / s0 > tol or abs(s1 / s0 - 1.0) > tol or turn > 2 * tol)


class RoiTracker:
    """Per person (camera, session, track): the frame and ROI (frame → 256 affine) last used."""

    def __init__(self, max_gap: int, tol: float) -> None:
        self.max_gap = max_gap
        self.tol = tol
        self._last: dict[tuple, tuple[int, np.ndarray]] = {}
        self.calls = 0  # landmark-model runs, and faces: their ratio is the cost of tracking
        self.faces = 0

    def landmarks(self, key: tuple | None, frame: int, context: np.ndarray, to_context: np.ndarray,
                  first_roi: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """478 landmarks (478, 3) in frame pixels for one face.

        ``key``: the person (None: untracked, no state); ``context``: the face's context crop and
        ``to_context`` its frame → crop affine; ``first_roi``: the ROI from the detector's landmarks (frame
        → 256); ``run``: the landmark model, (256, 256, 3) BGR uint8 → (478, 3) in ROI pixels."""
        prev = self._last.get(key) if key is not None else None
        roi = prev[1] if prev is not None and 0 < frame - prev[0] <= self.max_gap else first_roi
        lms = self._run(roi, context, to_context, run)
        found = roi_from_landmarks(lms[:, :2])
        if moved(roi, found, self.tol):
            lms = self._run(found, context, to_context, run)
            found = roi_from_landmarks(lms[:, :2])
        if key is not None:
            self._last[key] = (frame, found)
        self.faces += 1
        return lms

    def _run(self, roi: np.ndarray, context: np.ndarray, to_context: np.ndarray, run) -> np.ndarray:
        """The landmark model on ``roi`` (frame → 256), cut from the context crop; landmarks in frame pixels."""
        crop_to_roi = compose(roi, cv2.invertAffineTransform(to_context))
        x = cv2.warpAffine(context, crop_to_roi, (ROI_SIZE, ROI_SIZE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        lms = np.array(run(x), dtype=np.float64)
        lms[:, :2] -= 0.5  # ROI pixel edges → centres
        self.calls += 1
        return warp_landmarks(lms, cv2.invertAffineTransform(roi))  # → frame

    def forget(self, cam: str) -> None:
        """A stream ended: its people's ROIs go."""
        self._last = {k: v for k, v in self._last.items() if k[0] != cam}

    def prune(self, cam: str, sid: str, frame: int) -> None:
        """Drop the stream's people not seen for more than ``max_gap`` frames (bounded state on long streams)."""
        self._last = {k: v for k, v in self._last.items()
                      if k[:2] != (cam, sid) or frame - v[0] <= self.max_gap}
