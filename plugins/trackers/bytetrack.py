"""ByteTrack (roboflow ``trackers`` 2.6.1 ``ByteTrackTracker``) giving each face a stable ``track`` id.

How trackers 2.6.1 behaves, read from its source and checked in tests/plugins/test_bytetrack.py:

- ``update`` returns every input detection exactly once but **reordered** (high-confidence
  matches, then low-confidence matches, then unmatched low, then unmatched high), built as
  ``detections[idx]``. We carry each row's input index in ``Detections.data["row"]`` and put the
  ids back in input order: no IoU matching is needed.
- Ids are per tracker instance (``_next_track_id``, from 0); ``reset()`` restarts them at 0.
- A new track is always reported as -1 on the frame that spawns it; the library assigns an id
  when a later frame matches it and its run of consecutive matched frames reaches
  ``minimum_consecutive_frames`` (so with 1 or 2 the id comes on the 2nd frame, with 3 on the
  3rd). With ``minimum_consecutive_frames == 1`` this wrapper confirms new tracks on the frame
  they spawn, so a face has its id from the first frame it is detected (what the original
  ByteTrack does on a video's first frame only).
- Detections scoring below ``high_conf_det_threshold`` can only extend existing tracks (ByteTrack's
  second association stage); new tracks need ``track_activation_threshold``.
- Time: we pass ``timestamp = frame_index / frame_rate``, so a gap in ``frame_index`` (dropped or
  decimated frames) advances the Kalman filter by that many frames and the lost-track budget is
  ``lost_track_buffer / 30`` seconds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field

from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import TRACKERS
from auflow.engine.types import Faces

log = logging.getLogger(__name__)


@TRACKERS.register("bytetrack")
class ByteTrack(Plugin):
    """Stable per-person ids for the faces of one stream. One instance per stream session."""

    #: between start() and stop(): the library's tracker, and the last frame it was given
    _tracker: Any = None
    _last_frame: int | None = None

    class Config(PluginConfig):
        lost_track_buffer: int = Field(30, ge=0, description="frames (at 30 fps) a lost track is kept for re-association")
        frame_rate: float = Field(30.0, gt=0.0, description="the stream's frame rate: turns frame indices into time")
        track_activation_threshold: float = Field(0.7, ge=0.0, le=1.0, description="min detector score that starts a track")
        minimum_consecutive_frames: int = Field(1, ge=1, description="consecutive detected frames before a track gets its id")
        minimum_iou_threshold: float = Field(0.2, ge=0.0, le=1.0, description="min IoU of a detection with a track's predicted box")
        high_conf_det_threshold: float = Field(0.7, ge=0.0, le=1.0,
                                               description="scores below this only extend existing tracks (ByteTrack stage 2)")

    def start(self, ctx: StartContext = CPU) -> None:
        if self._tracker is None:
            from trackers import ByteTrackTracker

            self._tracker = ByteTrackTracker(**self.config.model_dump())  # the Config's fields are its arguments
            self._last_frame = None

    def stop(self) -> None:
        self._tracker = None
        self._last_frame = None

    def reset(self) -> None:
        """Forget all tracks and restart ids at 0 (call when a new stream session starts)."""
        if self._tracker is not None:
            self._tracker.reset()
        self._last_frame = None

    def update(self, faces: Faces, frame_index: int) -> Faces:
        """``faces`` with ``track`` filled, rows in the input order; -1 where not (yet) tracked.

        ``frame_index`` must increase from call to call within a session (gaps are fine).
        """
        import supervision as sv

        if self._tracker is None:
            self.start()
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase within a session (got {frame_index} after "
                             f"{self._last_frame}); call reset() when a new stream session starts")
        self._last_frame = frame_index
        n = len(faces)
        dets = sv.Detections(
            xyxy=faces.bbox.astype(np.float32).reshape(n, 4),
            confidence=faces.score.astype(np.float32),
            data={"row": np.arange(n)},
        )
        out = self._tracker.update(dets, timestamp=frame_index / self.config.frame_rate)
        track = np.full(n, -1, np.int64)
        if len(out):
            ids = np.asarray(out.tracker_id, np.int64)
            if self.config.minimum_consecutive_frames == 1:
                ids = self._confirm_new_tracks(out, ids)
            track[np.asarray(out.data["row"])] = ids
        return faces.with_track(track)

    def _confirm_new_tracks(self, out, ids: np.ndarray) -> np.ndarray:
        """Give the tracks spawned on this frame their ids now instead of on the next frame.

        With minimum_consecutive_frames == 1 every tracklet alive after an update has an id except
        the ones just spawned, one per unmatched high-score detection that cleared the activation
        threshold, appended in the order those detections appear in ``out``. We check that pairing
        (count and box) before touching anything; if the library ever changes, ids simply come a
        frame later.
        """
        tr = self._tracker
        c = self.config
        conf = np.asarray(out.confidence, np.float32)
        spawned_rows = np.flatnonzero((ids == -1) & (conf >= c.high_conf_det_threshold)
                                      & (conf >= c.track_activation_threshold))
        new_tracks = [t for t in tr.tracks if t.tracker_id == -1]
        if len(new_tracks) != len(spawned_rows):
            log.debug("bytetrack: %d new tracklets for %d spawning rows; ids wait a frame", len(new_tracks), len(spawned_rows))
            return ids
        for t, r in zip(new_tracks, spawned_rows):
            if not np.allclose(t.get_state_bbox(), out.xyxy[r], atol=1e-3):
                log.debug("bytetrack: new tracklet box does not match its detection; ids wait a frame")
                return ids
        ids = ids.copy()
        for t, r in zip(new_tracks, spawned_rows):
            t.tracker_id = tr._allocate_tracker_id()
            ids[r] = t.tracker_id
        return ids
