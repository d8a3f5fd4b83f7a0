"""The mediapipe_au teacher: parity with MediaPipe's own Tasks API, the AU table, issue 8's acceptance.

Reference values (``data/mediapipe_face_landmarker_ref.npz``) come from mediapipe 1.2.2's Tasks API
run on the demo clip in a throwaway venv by ``data/make_mediapipe_ref.py`` (provenance inside the
file). MediaPipe finds its landmark ROI with BlazeFace, auflow from the 5-point alignment, so the
landmarks and blendshapes differ by what that ROI shift does to the models; the tolerances below
are about twice the worst error measured on these frames (2026-11-24; docs/teachers.md).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from auflow.engine.errors import ConfigError
from auflow.engine.plugin import build
from auflow.engine.registry import ANALYZERS
from auflow.engine.types import FaceCrops, Faces, FrameMeta, ModelInfo
from auflow.plugins.align import Aligner, estimate_transform
from auflow.plugins.analyzers.blendshape_au import AU_LABELS, AU_TABLE, BLENDSHAPES, blendshapes_to_au
from auflow.plugins.analyzers.mediapipe_au import LANDMARKS_SUBSET, PREFERRED_CROP, MediaPipeAUAnalyzer, roi_transform

pytest.importorskip("ai_edge_litert", reason="mediapipe_au runs TFLite models with ai-edge-litert")

REF = Path(__file__).parent / "data" / "mediapipe_face_landmarker_ref.npz"
FPS = 23.98  # the demo clip's frame rate

# measured on the 10 reference frames (2026-11-24): worst per-frame mean landmark error / inter-ocular
# distance (≈ 140 px) 0.019 (112 crop) and 0.016 (256 @ 1.25); worst per-frame mean |Δ blendshape|
# 0.045 / 0.046. The blendshape model alone, fed MediaPipe's landmarks, differs by 0.0.
LANDMARK_TOL_IOD = 0.04
BLENDSHAPE_MEAN_TOL = 0.09


@pytest.fixture(scope="module")
def ref() -> dict:
    with np.load(REF) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="module")
def yunet():
    pytest.importorskip("yuface", reason="yuface has wheels for CPython 3.10/3.11 only")
    from auflow.plugins.detectors.yunet import YuNetDetector

    det = YuNetDetector()
    det.start()
    return det


def analyzer(**options) -> MediaPipeAUAnalyzer:
    a = build(ANALYZERS, "mediapipe_au", options)
    a.start()
    return a


def detect_all(frames, yunet) -> np.ndarray:
    """The one face's 5 landmarks per frame (F, 5, 2)."""
    kps = []
    for img in frames:
        faces = yunet.detect(img)
        assert len(faces) == 1
        kps.append(faces.kps[0])
    return np.stack(kps)


def crops_of(frames, kps, size, scale) -> np.ndarray:
    al = Aligner(Aligner.Config(size=size, scale=scale))
    return np.concatenate([al.crop(img, Faces(np.zeros((1, 4)), np.ones(1), k[None])) for img, k in zip(frames, kps)])


@pytest.fixture(scope="module")
def ref_frames(ref, demo_video, frames_of, yunet):
    wanted = set(ref["frames"].tolist())
    frames = [img for i, img in enumerate(frames_of(demo_video)) if i in wanted]
    assert len(frames) == len(wanted)
    return frames, detect_all(frames, yunet)


# -- the AU table ------------------------------------------------------------------------------------
def test_au_table_names_real_blendshapes_and_keeps_sides():
    for au, (_, names) in AU_TABLE.items():
        assert set(names) <= set(BLENDSHAPES), au
    assert AU_LABELS[:17] == ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                              "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")
    assert {"AU12_L", "AU12_R", "AU45_L", "AU45_R"} <= set(AU_LABELS)
    assert "AU01_L" not in AU_LABELS and "AU26_L" not in AU_LABELS  # one blendshape, no sides


def test_blendshapes_to_au_values():
    bs = np.zeros((3, 52), np.float32)
    i = BLENDSHAPES.index
    bs[0, i("mouthSmileLeft")], bs[0, i("mouthSmileRight")] = 0.8, 0.4  # subject's left smiles more
    bs[1, i("jawOpen")], bs[1, i("mouthClose")] = 0.6, 0.5  # jaw open, lips closed: AU26 but little AU25
    bs[2, i("browInnerUp")] = 0.7
    au = dict(zip(AU_LABELS, blendshapes_to_au(bs).T))
    np.testing.assert_allclose(au["AU12"], [0.6, 0, 0], atol=1e-6)
    np.testing.assert_allclose(au["AU12_L"], [0.8, 0, 0], atol=1e-6)
    np.testing.assert_allclose(au["AU12_R"], [0.4, 0, 0], atol=1e-6)
    np.testing.assert_allclose(au["AU26"], [0, 0.6, 0], atol=1e-6)
    np.testing.assert_allclose(au["AU25"], [0, 0.1, 0], atol=1e-6)
    np.testing.assert_allclose(au["AU01"], [0, 0, 0.7], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 52\)"):
        blendshapes_to_au(np.zeros((2, 51)))


# -- the analyzer contract ---------------------------------------------------------------------------
def test_registered_with_teacher_provenance_and_checked_config():
    a = build(ANALYZERS, "mediapipe_au", {"outputs": ["au", "blendshapes"]})
    assert a.outputs == {"au": AU_LABELS, "blendshapes": BLENDSHAPES}
    dead = tuple(x for x in AU_LABELS if x.split("_")[0] in ("AU05", "AU06", "AU09", "AU14"))  # what it cannot see: null
    assert a.provenance["au"] == ModelInfo("mediapipe_au", "teacher", dead)
    assert a.provenance["blendshapes"] == ModelInfo("mediapipe_au", "teacher")
    with pytest.raises(ConfigError, match="unknown key"):
        build(ANALYZERS, "mediapipe_au", {"scale": 1.6})
    with pytest.raises(ConfigError, match="outputs"):
        build(ANALYZERS, "mediapipe_au", {"outputs": ["landmarks"]})
    with pytest.raises(ConfigError, match="outputs"):
        build(ANALYZERS, "mediapipe_au", {"outputs": []})
    p = build(ANALYZERS, "mediapipe_au", {"outputs": ["au", "presence"], "raw": True})
    assert p.outputs == {"au": AU_LABELS, "presence": ("presence",)}
    assert p.provenance["au"] == ModelInfo("mediapipe_au", "teacher", dead)  # raw values, still flagged


def test_empty_batch_and_bad_input():
    a = analyzer()
    out = a.analyze(np.zeros((0, 112, 112, 3), np.uint8))
    assert out["au"].shape == (0, len(AU_LABELS))
    with pytest.raises(ValueError, match="uint8"):
        a.analyze(np.zeros((1, 112, 112, 3), np.float32))


def test_roi_transform_maps_the_same_face_region_at_any_crop_geometry():
    """The ROI is one region of the face: the 5 template points land on the same ROI pixels."""
    from auflow.plugins.align import arcface_template

    where = [roi_transform(s, k)[:, :2] @ arcface_template(s, k).T.astype(np.float64) + roi_transform(s, k)[:, 2:]
             for s, k in [(112, 1.0), (256, 1.6), (224, 1.25)]]
    np.testing.assert_allclose(where[0], where[1], atol=0.3)
    np.testing.assert_allclose(where[0], where[2], atol=0.3)


# -- parity with MediaPipe's Tasks API ---------------------------------------------------------------
def test_blendshape_model_and_subset_reproduce_mediapipe_exactly(ref):
    """Fed MediaPipe's own landmarks (frame pixels), our subset + model call gives MediaPipe's blendshapes."""
    got = analyzer().blendshapes_from_landmarks(ref["landmarks_px"])
    assert tuple(ref["names"]) == BLENDSHAPES
    np.testing.assert_allclose(got, ref["blendshapes"], atol=1e-5)
    assert len(LANDMARKS_SUBSET) == 146 and len(set(LANDMARKS_SUBSET)) == 146


@pytest.mark.parametrize("size,scale", [(112, 1.0), (PREFERRED_CROP["size"], PREFERRED_CROP["scale"])])
def test_landmarks_and_blendshapes_match_mediapipe(ref, ref_frames, size, scale):
    frames, kps = ref_frames
    a = analyzer(crop_scale=scale, outputs=["au", "blendshapes"])
    out = a.run(crops_of(frames, kps, size, scale))
    assert out.landmarks.shape == (len(frames), 478, 3)
    assert out.presence.min() > 0.8
    # crop pixels → frame pixels through the aligner's own transform
    t = estimate_transform(kps, size, scale)
    inv = np.stack([np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2] for m in t])
    xy = np.einsum("nij,nkj->nki", inv[:, :, :2], out.landmarks[..., :2]) + inv[:, None, :, 2]
    want = ref["landmarks_px"]
    iod = np.linalg.norm(want[:, 33] - want[:, 263], axis=1)
    err = np.linalg.norm(xy - want, axis=2).mean(1) / iod
    assert err.max() < LANDMARK_TOL_IOD, err
    bs_err = np.abs(out.blendshapes - ref["blendshapes"]).mean(1)
    assert bs_err.max() < BLENDSHAPE_MEAN_TOL, bs_err
    # and the AU read-out agrees where the face is clear: laughing frames smile, the surprised one does not
    au12 = out.au[:, AU_LABELS.index("AU12")]
    frames_idx = ref["frames"]
    assert au12[frames_idx >= 336].min() > 0.5, au12
    assert au12[(frames_idx >= 150) & (frames_idx <= 225)].max() < 0.1, au12


# -- issue 8's acceptance on the whole clip ----------------------------------------------------------
@pytest.mark.slow
def test_acceptance_smile_and_brow_windows_on_the_demo_clip(demo_video, frames_of, yunet):
    """AU12 mean over 12.5–19.7 s exceeds 6.3–9.4 s by ≥ 0.5; AU01 over 6.3–8.3 s exceeds 12.5–19.7 s by ≥ 0.15."""
    al = Aligner(Aligner.Config(**PREFERRED_CROP))
    a = analyzer(crop_scale=PREFERRED_CROP["scale"])
    au, times = [], []
    for i, img in enumerate(frames_of(demo_video)):
        faces = yunet.detect(img)
        assert len(faces) >= 1, f"no face in frame {i}"
        au.append(a.analyze(al.crop(img, faces[:1]))["au"][0])
        times.append(i / FPS)
    au, t = np.stack(au), np.asarray(times)

    def mean(label, t0, t1):
        return au[(t >= t0) & (t <= t1), AU_LABELS.index(label)].mean()

    # measured 2026-11-24: 0.856 vs 0.003, and 0.560 vs 0.060 (MediaPipe's own Tasks API: 0.825 vs 0.006, 0.570 vs 0.132)
    assert mean("AU12", 12.5, 19.7) - mean("AU12", 6.3, 9.4) >= 0.5
    assert mean("AU01", 6.3, 8.3) - mean("AU01", 12.5, 19.7) >= 0.15


# -- per frame on the face stage's context crop (the distillation teacher pass) ------------------------
def test_per_frame_on_context_crops_is_the_aligned_crop_of_that_geometry_with_raw_aus_and_presence(ref_frames):
    """``track: false`` with context crops: the ROI from each frame's 5 landmarks, cut from the context crop (its
    scale read back from its transform); on a face whose context crop lies inside the frame that is exactly the
    teacher on an aligned crop of the same geometry. ``raw`` keeps the AUs it cannot measure as computed; ``presence`` is one column in [0, 1]."""
    frames, kps = ref_frames
    frames, kps = frames[:4], kps[:4]
    pad = 200  # the 256 px / 1.25 crop of the demo face reaches past the frame's edge: padded, it does not
    frames = [cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(90, 90, 90)) for f in frames]
    kps = kps + pad
    al = Aligner(Aligner.Config(size=112))
    items = []
    for i, (img, k) in enumerate(zip(frames, kps)):
        faces = Faces(np.array([[0, 0, 10, 10]], np.float32), np.ones(1, np.float32), k[None].astype(np.float32),
                      np.zeros(1, np.int64))
        ctx = al.context_crop(img, faces, 256, 1.25)
        items.append(FaceCrops(FrameMeta("cam", "s", i, i, (1, 24), 0, img.shape[1], img.shape[0]), faces,
                               al.crop(img, faces), {}, ctx))
    a = analyzer(track=False, raw=True, outputs=["au", "presence"])
    got = a.analyze_items(items)
    want = analyzer(crop_scale=1.25, raw=True).analyze(crops_of(frames, kps, 256, 1.25))["au"]
    assert got["au"].shape == want.shape and np.array_equal(got["au"], want)  # the same crops, the same ROI warp
    assert np.isfinite(got["au"]).all() and got["presence"].shape == (4, 1)
    assert ((got["presence"] > 0.5) & (got["presence"] <= 1)).all()
    published = analyzer(track=False).analyze_items(items)["au"]
    dead = [AU_LABELS.index(x) for x in AU_LABELS if x.split("_")[0] in ("AU05", "AU06", "AU09", "AU14")]
    assert np.isnan(published[:, dead]).all() and np.allclose(np.delete(published, dead, 1), np.delete(got["au"], dead, 1))
