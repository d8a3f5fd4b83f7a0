"""Generated expression data: determinism, the temporal-only label of the motion set, the label
correlations of the multi-label set."""

from __future__ import annotations

import numpy as np
import pytest

from auflow.models.expr.svml_rgcn import label_cooccurrence, label_relations
from auflow.models.expr.synthetic import (
    FACE_PARAMETERS,
    MOTION_LABELS,
    MULTILABEL_LABELS,
    face_parameter_frames,
    motion_sequences,
    multilabel_faces,
    single_label_faces,
)


def _lip_area(frames: np.ndarray) -> np.ndarray:
    """(…, 3, 48, 48) → lip pixels in the mouth box: the mouth's opening, read off the pixels
    (lips are far redder than skin: R − G > 0.3, skin's is at most 0.2)."""
    box = frames[..., 28:42, 14:34]
    return ((box[..., 0, :, :] - box[..., 1, :, :]) > 0.3).sum(axis=(-1, -2))


def test_motion_sequences_are_deterministic_and_well_formed():
    a, ya = motion_sequences(6, num_frames=5, size=40, seed=3)
    b, yb = motion_sequences(6, num_frames=5, size=40, seed=3)
    c, _ = motion_sequences(6, num_frames=5, size=40, seed=4)
    assert a.shape == (6, 5, 3, 40, 40) and a.dtype == np.float32 and ya.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert set(ya.tolist()) <= {0, 1} and len(MOTION_LABELS) == 2


def test_paired_clips_are_the_same_frames_in_reverse():
    clips, y = motion_sequences(8, num_frames=6, size=48, seed=0, paired=True)
    np.testing.assert_array_equal(y, [0, 1] * 4)
    for i in range(0, 8, 2):
        np.testing.assert_array_equal(clips[i + 1], clips[i][::-1])
        assert not np.array_equal(clips[i + 1], clips[i])  # the clip moves


def test_motion_label_is_in_the_order_of_frames_not_in_any_frame():
    clips, y = motion_sequences(400, num_frames=6, size=48, seed=1)
    area = _lip_area(clips).astype(float)  # (n, T)
    # the direction over time gives the label (mouth opening: the lips grow) …
    direction = (area[:, -1] > area[:, 0]).astype(int)
    assert np.mean(direction == (y == 0)) >= 0.95
    assert 0.4 < y.mean() < 0.6
    # … while order-blind statistics of the frames are the same in both classes
    for stat in (area.mean(1), area.max(1), area.min(1), clips.mean(axis=(1, 2, 3, 4))):
        a, b = stat[y == 0], stat[y == 1]
        pooled = np.sqrt((a.var() + b.var()) / 2)
        assert abs(a.mean() - b.mean()) < 0.25 * pooled  # within sampling noise of 200 vs 200


def test_paired_motion_needs_an_even_count_and_two_frames():
    with pytest.raises(ValueError, match="even"):
        motion_sequences(3, paired=True)
    with pytest.raises(ValueError, match="at least 2 frames"):
        motion_sequences(2, num_frames=1)


def test_multilabel_faces_carry_positive_and_negative_correlations():
    x, y = multilabel_faces(3000, size=32, seed=0)
    assert x.shape == (3000, 3, 32, 32) and y.shape == (3000, 6) and set(np.unique(y)) == {0, 1}
    assert (y.sum(1) >= 1).all() and (y.sum(1) <= 2).all() and 0.3 < (y.sum(1) == 2).mean() < 0.8
    idx = {name: i for i, name in enumerate(MULTILABEL_LABELS)}
    p = label_cooccurrence(y)
    pos, neg = label_relations(p, 0.15, 0.4)  # the paper's RAF-ML thresholds
    for a, b in (("anger", "disgust"), ("disgust", "anger"), ("fear", "surprise"), ("happiness", "surprise")):
        assert pos[idx[a], idx[b]], (a, b)
    for other in ("anger", "disgust", "fear", "sadness"):
        assert p[idx["happiness"], idx[other]] == 0 and neg[idx["happiness"], idx[other]]


def test_multilabel_faces_are_deterministic_and_cues_follow_labels():
    a, ya = multilabel_faces(200, size=48, seed=5)
    b, yb = multilabel_faces(200, size=48, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    # surprise opens the mouth, happiness alone does not
    area = _lip_area(a)
    sur, hap = ya[:, MULTILABEL_LABELS.index("surprise")] == 1, ya[:, MULTILABEL_LABELS.index("happiness")] == 1
    assert area[sur].mean() > 1.5 * area[hap & ~sur].mean()


def test_single_label_and_parameter_frames():
    x, c = single_label_faces(3, size=32, seed=0)
    assert x.shape == (18, 3, 32, 32)
    np.testing.assert_array_equal(c, np.repeat(np.arange(6), 3))
    f, params = face_parameter_frames(50, size=32, seed=0)
    assert f.shape == (50, 3, 32, 32) and params.shape == (50, len(FACE_PARAMETERS))
    for k, (lo, hi) in enumerate(FACE_PARAMETERS.values()):
        assert lo <= params[:, k].min() and params[:, k].max() <= hi and params[:, k].std() > 0.1
