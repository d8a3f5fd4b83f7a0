"""The per-person AU baseline (engine/au_baseline.py): a resting level subtracted per tracked person and AU."""

from __future__ import annotations

import numpy as np
import pytest
from auflow.engine.analyzer.core import Analyzer
from auflow.engine.au_baseline import CausalBaseline, whole_track
from auflow.engine.config import AnalyzerSection, ModelSpec
from auflow.engine.types import FaceCrops, Faces, FrameMeta


def _person(t: int = 120, rest: float = 0.4, smile_from: int = 80) -> np.ndarray:
    """Columns: an AU resting at ``rest`` that rises by 0.5 from frame ``smile_from``; one at 0; one unmeasured."""
    rng = np.random.default_rng(0)
    a = np.full(t, rest) + rng.normal(0, 0.01, t)
    a[smile_from:] += 0.5
    return np.stack([a, np.zeros(t), np.full(t, np.nan)], axis=1)


def test_whole_track_reads_zero_at_rest_and_keeps_the_expression():
    v = _person()
    out = whole_track(v)
    assert abs(out[:80, 0].mean()) < 0.03  # was 0.4 at rest
    assert abs((out[80:, 0].mean() - out[:80, 0].mean()) - 0.5) < 0.03  # the rise is kept
    assert (out[:, 1] == 0).all() and np.isnan(out[:, 2]).all()
    assert (out[:, :2] >= 0).all() and (out[:, :2] <= 1).all()


def test_causal_passes_through_until_it_has_seen_enough_then_subtracts_what_it_saw():
    v = _person()
    b = CausalBaseline(min_frames=30, window=900)
    out = np.array([b(("cam", "s", 1), row) for row in v])
    np.testing.assert_array_equal(out[:29, :2], v[:29, :2])  # before 30 values: unchanged
    assert abs(out[30:80, 0].mean()) < 0.03 and out[85:, 0].mean() > 0.45
    assert np.isnan(out[:, 2]).all()
    other = b(("cam", "s", 2), v[0])  # another person starts from nothing
    np.testing.assert_array_equal(other[:2], v[0, :2])
    b.forget(("cam",))
    assert b(("cam", "s", 1), v[0])[0] == v[0, 0]  # forgotten: passes through again
    with pytest.raises(ValueError):
        CausalBaseline(min_frames=10, window=5)


def test_the_analyzer_subtracts_per_tracked_person_and_leaves_untracked_faces():
    """analyzer.au_baseline: track on a model's `au`; a face with track -1 (no tracker) is as the model gave it."""
    rng = np.random.default_rng(0)
    models = [ModelSpec(name="me_graphau", options={"input_size": 32, "backbone": "mobilenet_v2", "backbone_kw": {"width_mult": 0.25}})]
    plain = Analyzer(AnalyzerSection(threads=1, models=models))
    based = Analyzer(AnalyzerSection(threads=1, models=models, au_baseline="track"))
    for a in (plain, based):
        a.start()
    crop = rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8)
    for i in range(40):
        faces = Faces(np.array([[10, 10, 60, 70], [70, 10, 120, 70]]), np.ones(2), np.zeros((2, 5, 2)),
                      track=np.array([7, -1]))
        item = FaceCrops(FrameMeta("cam", "sid", i, i, (1, 25), 0, 640, 360), faces, np.concatenate([crop, crop]), {})
        p, b = plain.run([item])[0].outputs["au"], based.run([item])[0].outputs["au"]
        np.testing.assert_allclose(b[1], p[1], atol=1e-6)  # untracked: untouched
        if i < 29:
            np.testing.assert_allclose(b[0], p[0], atol=1e-6)
    # the same crop every frame: from the 30th frame on, tracked person 7 is at his resting level: ~0
    assert np.abs(b[0]).max() < 1e-5 and np.abs(p[0]).max() > 0.01
    for a in (plain, based):
        a.stop()
