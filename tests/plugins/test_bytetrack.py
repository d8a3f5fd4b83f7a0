from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from auflow.engine.errors import ConfigError
from auflow.engine.plugin import build
from auflow.engine.registry import TRACKERS
from auflow.engine.types import Faces
from auflow.plugins.trackers.bytetrack import ByteTrack


def faces_at(boxes, scores=None) -> Faces:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    scores = np.full(n, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    kps = np.stack([cx, cy], -1)[:, None, :].repeat(5, axis=1)
    return Faces(boxes, scores, kps)


def box(cx: float, cy: float = 200.0, w: float = 100.0, h: float = 120.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_registered_with_validated_config():
    assert TRACKERS.get("bytetrack") is ByteTrack
    with pytest.raises(ConfigError, match="unknown key .*lost_buffer.*lost_track_buffer"):
        build(TRACKERS, "bytetrack", {"lost_buffer": 10})


def test_two_faces_moving_apart_keep_distinct_stable_ids_in_input_order():
    tracker = ByteTrack()
    rng = np.random.default_rng(1)
    seen: dict[str, set[int]] = {"left": set(), "right": set()}
    for i in range(60):
        left, right = box(300 - 3 * i), box(360 + 3 * i)  # overlapping at first (IoU ≈ 0.25), then apart
        names = ["left", "right"]
        order = rng.permutation(2)  # the detector's row order changes from frame to frame
        rows = [[left, right][k] for k in order]
        out = tracker.update(faces_at(rows), frame_index=i)
        np.testing.assert_array_equal(out.bbox, np.asarray(rows, np.float32))  # rows untouched, same order
        for row, k in enumerate(order):
            seen[names[k]].add(int(out.track[row]))
    assert len(seen["left"]) == 1 and len(seen["right"]) == 1
    assert seen["left"] != seen["right"] and -1 not in seen["left"] | seen["right"]


@pytest.mark.parametrize(("min_frames", "first_ids"), [(1, [0, 0, 0]), (2, [-1, 0, 0]), (3, [-1, -1, 0])])
def test_when_a_new_face_gets_its_id(min_frames, first_ids):
    tracker = ByteTrack(ByteTrack.Config(minimum_consecutive_frames=min_frames))
    ids = [int(tracker.update(faces_at([box(300 + i)]), frame_index=i).track[0]) for i in range(3)]
    assert ids == first_ids


def test_a_face_joining_later_gets_the_next_id_at_once():
    tracker = ByteTrack()
    for i in range(5):
        tracker.update(faces_at([box(150 + i)]), frame_index=i)
    out = tracker.update(faces_at([box(500), box(155)]), frame_index=5)
    assert out.track.tolist() == [1, 0]


def test_low_score_faces_extend_tracks_but_do_not_start_them():
    tracker = ByteTrack()  # high_conf_det_threshold = track_activation_threshold = 0.7
    tracker.update(faces_at([box(200)], [0.9]), frame_index=0)
    out = tracker.update(faces_at([box(202), box(500)], [0.65, 0.65]), frame_index=1)
    assert out.track.tolist() == [0, -1]


def test_short_gaps_keep_the_id_long_gaps_start_a_new_one():
    tracker = ByteTrack(ByteTrack.Config(lost_track_buffer=10, frame_rate=30))
    for i in range(5):
        assert tracker.update(faces_at([box(200 + i)]), frame_index=i).track.tolist() == [0]
    for i in range(5, 10):  # occluded: no detections for 5 frames
        assert len(tracker.update(Faces.empty(), frame_index=i)) == 0
    assert tracker.update(faces_at([box(210)]), frame_index=10).track.tolist() == [0]
    # frames skipped by decimation: a jump in frame_index counts as lost time
    assert tracker.update(faces_at([box(212)]), frame_index=40).track.tolist() == [1]


def test_ids_are_per_instance_and_reset_restarts_them():
    a, b = ByteTrack(), ByteTrack()
    assert a.update(faces_at([box(100), box(400)]), 0).track.tolist() == [0, 1]
    assert b.update(faces_at([box(400)]), 0).track.tolist() == [0]
    with pytest.raises(ValueError, match="must increase"):
        a.update(faces_at([box(100)]), 0)
    a.reset()
    assert a.update(faces_at([box(400), box(100)]), 0).track.tolist() == [0, 1]


def test_input_faces_are_not_modified():
    faces = faces_at([box(100)])
    out = ByteTrack().update(faces, 0)
    assert faces.track.tolist() == [-1] and out.track.tolist() == [0]


@pytest.mark.slow
def test_one_id_covers_the_demo_clip(demo_video, frames_of):
    pytest.importorskip("yuface")
    from auflow.plugins.detectors.yunet import YuNetDetector

    detector, tracker = YuNetDetector(), ByteTrack(ByteTrack.Config(frame_rate=23.976))
    ids = []
    for i, frame in enumerate(frames_of(demo_video)):
        ids.extend(tracker.update(detector.detect(frame), frame_index=i).track.tolist())
    assert len(ids) >= 0.99 * 472
    (best, count), = Counter(ids).most_common(1)
    assert best != -1 and count >= 0.95 * len(ids)
