from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from auflow.engine.plugin import format_validation_error
from auflow.engine.types import Faces
from auflow.plugins.align import ARCFACE_112, Aligner, arcface_template, estimate_transform, similarity_transform

face_align = pytest.importorskip("insightface.utils.face_align")


def _norm_crop(image, kps, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # skimage ≥ 0.26 deprecates what norm_crop calls
        return face_align.norm_crop(image, kps, image_size=size)


def _faces(kps: np.ndarray) -> Faces:
    kps = np.asarray(kps, np.float32).reshape(-1, 5, 2)
    lo, hi = kps.min(axis=1), kps.max(axis=1)
    return Faces(np.concatenate([lo - 20, hi + 20], axis=1), np.ones(len(kps), np.float32), kps)


@pytest.fixture(scope="module")
def sample_kps(demo_sample) -> list[np.ndarray]:
    """Real landmarks: RetinaFace on the demo frames (torch; runs on every Python)."""
    from auflow.plugins.detectors.retinaface import RetinaFaceDetector

    det = RetinaFaceDetector()
    return [f.kps[0] for f in det.detect_batch(demo_sample[::3])]


def _random_similarity(rng) -> np.ndarray:
    angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(1.2, 2.5)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, rng.uniform(150, 350)], [s, c, rng.uniform(50, 150)]])


def test_template_is_insightfaces():
    np.testing.assert_array_equal(arcface_template(112), face_align.arcface_dst)
    np.testing.assert_allclose(arcface_template(224), face_align.arcface_dst * 2, rtol=1e-6)
    np.testing.assert_allclose(arcface_template(128), face_align.arcface_dst + [8, 0], rtol=1e-6)
    np.testing.assert_allclose(arcface_template(256), (face_align.arcface_dst + [8, 0]) * 2, rtol=1e-6)


def test_scale_loosens_the_crop_about_its_centre():
    t1, t2 = arcface_template(112, 1.0), arcface_template(112, 2.0)
    c = (112 - 1) / 2
    np.testing.assert_allclose(t2 - c, (t1 - c) / 2, atol=1e-5)
    assert np.ptp(t2[:, 0]) < np.ptp(t1[:, 0])  # the face takes less of the crop
    # sizes norm_crop cannot warp: the 112 template through the area resize's pixel-centre mapping
    np.testing.assert_allclose(arcface_template(64), (ARCFACE_112 + 0.5) * 64 / 112 - 0.5, rtol=1e-6)


def test_similarity_equals_skimage_umeyama(sample_kps):
    from skimage.transform import SimilarityTransform

    for kps in sample_kps:
        tform = SimilarityTransform()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            tform.estimate(kps.astype(np.float64), ARCFACE_112.astype(np.float64))
        np.testing.assert_allclose(similarity_transform(kps, ARCFACE_112), tform.params[:2], atol=1e-9)


@pytest.mark.parametrize("size", [112, 128, 224, 256])
def test_own_warp_at_scale_1_equals_norm_crop(demo_sample, sample_kps, size):
    for frame, kps in zip(demo_sample[::3], sample_kps):
        ref = _norm_crop(frame, kps, size)
        m = estimate_transform(kps[None], size, 1.0)[0]
        own = cv2.warpAffine(frame, m, (size, size), borderValue=0.0)
        assert np.abs(own.astype(np.int16) - ref).max() <= 1


def test_crop_at_scale_1_is_norm_crop(demo_sample, sample_kps):
    aligner = Aligner(Aligner.Config(size=112))
    frame = demo_sample[0]
    crops = aligner.crop(frame, _faces(np.stack([sample_kps[0], sample_kps[1]])))
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], _norm_crop(frame, sample_kps[0], 112))
    np.testing.assert_array_equal(crops[1], _norm_crop(frame, sample_kps[1], 112))


@pytest.mark.parametrize(("size", "scale"), [(112, 1.0), (128, 1.0), (224, 1.3), (64, 1.0), (96, 1.25), (112, 0.8)])
def test_landmarks_land_on_the_template(size, scale):
    """Draw 5 dots where a similarity puts the template in a frame; the crop must put them back."""
    rng = np.random.default_rng(size)
    frame = np.zeros((360, 640, 3), np.uint8)
    sim = _random_similarity(rng)
    kps = ARCFACE_112 @ sim[:, :2].T + sim[:, 2]
    for x, y in kps:
        cv2.circle(frame, (round(x * 16), round(y * 16)), 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    crop = Aligner(Aligner.Config(size=size, scale=scale)).crop(frame, _faces(kps))[0, :, :, 0].astype(np.float64)
    expected = arcface_template(size, scale)
    for ex, ey in expected:
        r = max(3, round(0.06 * size / scale))
        ys, xs = np.mgrid[round(ey) - r:round(ey) + r + 1, round(ex) - r:round(ex) + r + 1]
        w = crop[ys, xs]
        assert w.sum() > 0, f"no dot near ({ex:.1f}, {ey:.1f})"
        cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        assert abs(cx - ex) < 0.75 and abs(cy - ey) < 0.75


def test_real_face_crop_puts_landmarks_on_the_template(demo_sample):
    """A loose crop of a real face, detected again: its landmarks sit near the template."""
    from auflow.plugins.detectors.retinaface import RetinaFaceDetector

    det = RetinaFaceDetector()
    aligner = Aligner(Aligner.Config(size=224, scale=2.0))
    template = aligner.template()
    iod = np.linalg.norm(template[1] - template[0])
    for frame in demo_sample[::5]:
        crop = aligner.crop(frame, det.detect(frame))[0]
        again = det.detect(crop)
        assert len(again) == 1
        err = np.linalg.norm(again.kps[0] - template, axis=1)
        assert err.mean() < 0.25 * iod  # measured ≤ 0.19: 5-point fit residual + detector noise


def test_no_faces_gives_an_empty_batch(demo_sample):
    out = Aligner(Aligner.Config(size=64)).crop(demo_sample[0], Faces.empty())
    assert out.shape == (0, 64, 64, 3) and out.dtype == np.uint8


def test_registered_as_norm_crop():
    from auflow.engine.registry import ALIGNERS

    assert ALIGNERS.get("norm_crop") is Aligner


def test_config_is_validated():
    with pytest.raises(ValidationError) as e:
        Aligner.Config(sise=112)
    assert format_validation_error(e.value, "align", Aligner.Config) == "unknown key 'align.sise' (valid keys: size, scale, impl)"
    with pytest.raises(ValidationError):
        Aligner.Config(scale=0)


def test_numpy_impl_matches_norm_crop_within_one_level(demo_sample, sample_kps):
    aligner = Aligner(Aligner.Config(impl="numpy"))
    for frame, kps in zip(demo_sample[::3], sample_kps):
        crop = aligner.crop(frame, _faces(kps[None]))[0]
        diff = np.abs(crop.astype(np.int16) - _norm_crop(frame, kps, 112))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
