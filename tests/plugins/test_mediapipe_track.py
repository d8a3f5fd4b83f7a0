"""mediapipe_au's tracked landmark ROI (plugins/analyzers/mediapipe_track.py): the geometry, the rule for a
second landmark-model run, per-person state; and, on the demo clip, that the teacher's AUs no longer follow
the detector's landmark jitter (what made the fast face stage disagree with the accurate one)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from auflow.engine.config import AnalyzerSection, ModelSpec, load_config
from auflow.engine.types import ContextCrops, Faces, FaceCrops, FrameMeta
from auflow.plugins.align import Aligner, arcface_template
from auflow.plugins.analyzers.mediapipe_track import ROI_SCALE, ROI_SIZE, RoiTracker, compose, moved, roi_from_landmarks

# a "face" of 478 landmarks: a 100 × 140 px ellipse of points centred at (300, 200), eye corners level
_t = np.linspace(0, 2 * np.pi, 478, endpoint=False)
FACE = np.stack([300 + 50 * np.cos(_t), 200 + 70 * np.sin(_t)], axis=1)
FACE[33], FACE[263] = (270.0, 180.0), (330.0, 180.0)


def _apply(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:, :2].T + m[:, 2]


def _turned(xy: np.ndarray, deg: float, shift=(0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (xy - (300, 200)) @ r.T + (300, 200) + np.asarray(shift)


def test_the_roi_is_mediapipes_tracking_rect_the_landmarks_box_scaled_and_turned_level():
    m = roi_from_landmarks(FACE)
    # the box (100 × 140, centred at (300, 200)) squared on its long side and scaled 1.35: 189 px on the 256 grid
    assert ROI_SCALE == 1.35
    assert np.allclose(_apply(m, np.array([[300.0, 200.0]])), (ROI_SIZE - 1) / 2)
    assert np.isclose(np.hypot(m[0, 0], m[1, 0]), ROI_SIZE / 189.0, rtol=1e-3)  # the sampled ellipse: ~189
    # a head turned by 20°: the eye line comes out level in the ROI
    turned = _turned(FACE, 20)
    eyes = _apply(roi_from_landmarks(turned), turned[[33, 263]])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6 and eyes[1, 0] > eyes[0, 0]


def test_moved_compares_centre_side_and_angle_with_the_tolerance():
    m = roi_from_landmarks(FACE)
    assert not moved(m, m, 0.03)
    assert not moved(m, roi_from_landmarks(_turned(FACE, 0, (4.0, 0.0))), 0.03)  # 4 px of a 189 px side: 2.1 %
    assert moved(m, roi_from_landmarks(_turned(FACE, 0, (8.0, 0.0))), 0.03)  # 4.2 %
    assert moved(m, roi_from_landmarks(_turned(FACE, 5)), 0.03)  # 0.087 rad > 2 × 0.03
    assert moved(m, roi_from_landmarks((FACE - 300) * 1.05 + 300), 0.03)  # the side 5 % larger


def perfect_model(truth: np.ndarray, calls: list):
    """A landmark model that finds ``truth`` (frame pixels) exactly in whatever ROI it is given: its output
    in ROI pixels (edges: a pixel's centre at +0.5), through the ROI the tracker last warped (read back from
    the context crop's pixels: the crop is the frame itself here, the ROI warp is the tracker's own)."""

    def run(x):
        calls.append(x)
        return np.concatenate([_apply(run.roi, truth[0]) + 0.5, np.zeros((478, 1))], axis=1)

    return run


class _Frame:
    """A face in a frame whose 'context crop' is the frame itself (identity affine)."""

    context = np.zeros((400, 600, 3), np.uint8)
    to_context = np.array([[1.0, 0, 0], [0, 1.0, 0]])


def _track(tracker, key, frame, truth, first_roi, calls):
    run = perfect_model([truth], calls)
    orig = tracker._run

    def spy(roi, context, to_context, fn):
        run.roi = roi
        return orig(roi, context, to_context, fn)

    tracker._run = spy
    try:
        return tracker.landmarks(key, frame, _Frame.context, _Frame.to_context, first_roi, run)
    finally:
        tracker._run = orig


def test_a_new_person_gets_a_second_run_and_a_still_one_only_one():
    tracker, calls = RoiTracker(max_gap=5, tol=0.03), []
    off = compose(np.array([[1.0, 0, 20.0], [0, 1.0, -15.0]]), roi_from_landmarks(FACE))  # the detector's ROI: off
    lms = _track(tracker, ("cam", "s", 0), 10, FACE, off, calls)
    assert len(calls) == 2 and tracker.calls == 2  # its own ROI was far from the detector's: run again there
    assert np.allclose(lms[:, :2], FACE, atol=1e-6)  # back in frame pixels exactly
    calls.clear()
    lms = _track(tracker, ("cam", "s", 0), 11, FACE, off, calls)  # next frame, same place
    assert len(calls) == 1 and np.allclose(lms[:, :2], FACE, atol=1e-6)  # the previous ROI, not the detector's
    calls.clear()
    _track(tracker, ("cam", "s", 0), 12, _turned(FACE, 0, (30.0, 0.0)), off, calls)  # a fast move
    assert len(calls) == 2
    assert (tracker.faces, tracker.calls) == (3, 5)


def test_state_per_person_expires_after_max_gap_and_with_forget_and_prune():
    tracker, calls = RoiTracker(max_gap=2, tol=0.03), []
    off = compose(np.array([[1.0, 0, 20.0], [0, 1.0, 0]]), roi_from_landmarks(FACE))
    _track(tracker, ("cam", "s", 0), 0, FACE, off, calls)
    calls.clear()
    _track(tracker, ("cam", "s", 0), 2, FACE, off, calls)  # 2 frames later: kept
    assert len(calls) == 1
    calls.clear()
    _track(tracker, ("cam", "s", 0), 5, FACE, off, calls)  # 3 frames later: from the detector again
    assert len(calls) == 2
    calls.clear()
    _track(tracker, None, 6, FACE, off, calls)  # an untracked face: no state, the detector's ROI
    _track(tracker, None, 7, FACE, off, calls)
    assert len(calls) == 4
    _track(tracker, ("other", "s", 1), 5, FACE, off, calls)
    tracker.prune("cam", "s", 8)  # cam's person last seen at 5: more than 2 frames ago
    assert set(tracker._last) == {("other", "s", 1)}
    tracker.forget("other")
    assert tracker._last == {}


def test_context_crops_are_checked():
    meta = FrameMeta("c", "s", 0, 0, (1, 25), 0, 64, 64)
    faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)))
    crops = np.zeros((1, 112, 112, 3), np.uint8)
    context = ContextCrops(np.zeros((1, 256, 256, 3), np.uint8), np.zeros((1, 2, 3)), 1.25)
    assert FaceCrops(meta, faces, crops, {}, context).context.scale == 1.25
    with pytest.raises(TypeError, match="ContextCrops"):
        FaceCrops(meta, faces, crops, {}, np.zeros((1, 256, 256, 3), np.uint8))
    with pytest.raises(ValueError, match="one crop per face"):
        FaceCrops(meta, Faces(np.zeros((2, 4)), np.ones(2), np.zeros((2, 5, 2))), np.zeros((2, 112, 112, 3), np.uint8), {},
                  context)
    with pytest.raises(ValueError, match="ContextCrops.transforms"):
        ContextCrops(np.zeros((1, 256, 256, 3), np.uint8), np.zeros((2, 2, 3)), 1.25)
    for bad in (0.0, -1.0, float("nan"), None):
        with pytest.raises(ValueError, match="scale"):
            ContextCrops(np.zeros((1, 256, 256, 3), np.uint8), np.zeros((1, 2, 3)), bad)
    assert len(context[[]]) == 0 and context[0:1].crops.shape == (1, 256, 256, 3)


def test_the_context_crop_is_the_aligned_crop_looser_with_its_transform():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    kps = arcface_template(112, 1.0)[None] * 2.0 + (200.0, 80.0)
    al = Aligner(Aligner.Config(size=112))
    ctx = al.context_crop(img, Faces(np.zeros((1, 4)), np.ones(1), kps.astype(np.float32)), 256, 1.5)
    assert ctx.crops.shape == (1, 256, 256, 3) and ctx.transforms.shape == (1, 2, 3) and ctx.scale == 1.5
    assert np.allclose(_apply(ctx.transforms[0], kps[0]), arcface_template(256, 1.5), atol=1e-4)
    empty = al.context_crop(img, Faces(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))), 256, 1.5)
    assert empty.crops.shape == (0, 256, 256, 3) and empty.transforms.shape == (0, 2, 3)


# -- on real frames: the teacher with and without tracking, through the analyzer --------------------------

def _items(frames, kps, stage_cfg, first=0):
    al = Aligner(Aligner.Config(size=112, impl="numpy"))
    items = []
    for i, (img, k) in enumerate(zip(frames, kps)):
        faces = Faces(np.array([[0, 0, 10, 10]], np.float32), np.ones(1, np.float32), k[None].astype(np.float32),
                      np.zeros(1, np.int64))
        ctx = al.context_crop(img, faces, stage_cfg.size, stage_cfg.scale)
        items.append(FaceCrops(FrameMeta("cam", "s", first + i, first + i, (1, 24), 0, img.shape[1], img.shape[0]), faces,
                               al.crop(img, faces), {}, ctx))
    return items


@pytest.mark.slow
def test_the_tracked_teacher_does_not_follow_the_detectors_landmark_jitter(demo_video, frames_of):
    """The same 80 frames of the demo clip, their YuNet landmarks as found and moved by noise of 5 % of the
    inter-ocular distance (what a coarser detector does): with tracking the AUs move less than half as much as
    with the ROI from the landmarks of each frame (track: false). Measured (2-core Zen 4 VM, 2026-12-05): mean
    |Δ AU| 0.0056 tracked, 0.0180 per frame on the aligned crops (what is left with tracking comes from the
    context crops themselves, resampled on another grid); a second landmark run on 1 of the 80 faces (the first);
    tracked vs per-frame 0.027. Since per-frame also cuts its ROI from the context crop (2026-12-06, 2-core AMD
    EPYC): 0.0056 tracked, 0.0165 per frame, tracked vs per-frame 0.021."""
    pytest.importorskip("ai_edge_litert", reason="mediapipe_au runs TFLite models with ai-edge-litert")
    pytest.importorskip("yuface", reason="yuface has wheels for CPython 3.10/3.11 only")
    from auflow.engine.analyzer.core import Analyzer
    from auflow.plugins.detectors.yunet import YuNetDetector

    det = YuNetDetector()
    det.start()
    frames = list(itertools.islice(frames_of(demo_video), 200, 280))
    kps = np.stack([det.detect(f).kps[0] for f in frames]).astype(np.float64)
    iod = np.linalg.norm(kps[:, 1] - kps[:, 0], axis=1)[:, None, None]
    noisy = kps + np.random.default_rng(0).normal(0, 0.05, kps.shape) * iod
    ctx = load_config(None).face.context

    def aus(points, track, per_call=8):
        a = Analyzer(AnalyzerSection(models=[ModelSpec(name="mediapipe_au", options={"track": track})]))
        a.start()
        out = [r.outputs["au"][0] for k in range(0, len(frames), per_call)
               for r in a.run(_items(frames[k:k + per_call], points[k:k + per_call], ctx, first=k))]
        calls, faces = a.plugins[0]._tracker.calls, a.plugins[0]._tracker.faces
        a.stop()
        return np.array(out), calls, faces

    tracked, calls, faces = aus(kps, True)
    tracked_noisy, _, _ = aus(noisy, True)
    plain, _, _ = aus(kps, False)
    plain_noisy, _, _ = aus(noisy, False)
    assert faces == len(frames) and calls <= 1.2 * faces  # the second run is rare on a steady face
    ok = ~np.isnan(plain).any(axis=0)
    d_tracked = np.abs(tracked - tracked_noisy)[:, ok].mean()
    d_plain = np.abs(plain - plain_noisy)[:, ok].mean()
    assert d_tracked < 0.01 and d_plain > 2 * d_tracked, (d_tracked, d_plain)
    # the same teacher: tracked and per-frame ROIs agree on what the face does
    assert np.abs(tracked - plain)[:, ok].mean() < 0.05
    # the state follows the frames, not the batches: 3 frames per analyzer call give the same values as 8
    np.testing.assert_array_equal(aus(kps, True, per_call=3)[0], tracked)
