"""The torch warp (plugins/align_torch.py) against norm_crop and the numpy/cv2 warp, on real demo-clip faces.

Bound asserted: per crop, max |diff| ≤ 1 gray level and mean |diff| < 0.01 (measured on these
frames, CPU: mean ≈ 1e-4, max 1 — cv2 quantises the sample position to 1/32 px, grid_sample does
not). The same checks run on CUDA where torch sees a device (``gpu`` marker), with max ≤ 2 there
(CUDA's grid_sample rounds differently; not yet measured: the mean bound is the same).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from auflow.engine.types import Faces
from auflow.plugins.align import Aligner
from auflow.plugins.align_torch import estimate_transform_torch, warp_crops


@pytest.fixture(scope="module")
def sample(demo_sample):
    """7 demo frames and RetinaFace's landmarks of their face."""
    from auflow.plugins.detectors.retinaface import RetinaFaceDetector

    frames = demo_sample[::3]
    faces = RetinaFaceDetector().detect_batch(frames)
    assert all(len(f) >= 1 for f in faces)
    return frames, np.stack([f.kps[0] for f in faces])


def _reference(frames, kps, size, scale):
    """Aligner crops: insightface's norm_crop where it applies and is installed, else the numpy transform + cv2.warpAffine."""
    impl = "insightface" if scale == 1.0 and size % 112 == 0 else "numpy"
    try:
        import insightface.utils.face_align  # noqa: F401
    except ImportError:  # the GPU machine has no insightface: the numpy impl, itself within 1 level of norm_crop
        impl = "numpy"
    aligner = Aligner(Aligner.Config(size=size, scale=scale, impl=impl))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return np.stack([aligner.crop(f, Faces(np.zeros((1, 4)), np.ones(1), k[None]))[0] for f, k in zip(frames, kps)])


def _check(frames, kps, size, scale, device, max_diff=1):
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(device)
    out = warp_crops(x, torch.from_numpy(kps).to(device), size, scale)
    assert out.device.type == torch.device(device).type and out.dtype == torch.uint8
    assert out.shape == (len(frames), 3, size, size)
    own = out.permute(0, 2, 3, 1).cpu().numpy().astype(np.int16)
    ref = _reference(frames, kps, size, scale)
    for a, b in zip(own, ref):
        diff = np.abs(a - b)
        assert diff.max() <= max_diff and diff.mean() < 0.01


@pytest.mark.parametrize(("size", "scale"), [(112, 1.0), (224, 1.0), (112, 1.3), (64, 1.0)])
def test_warp_matches_norm_crop_on_cpu(sample, size, scale):
    frames, kps = sample
    _check(frames, kps, size, scale, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize(("size", "scale"), [(112, 1.0), (224, 1.0), (64, 1.0)])
def test_warp_matches_norm_crop_on_cuda(sample, size, scale):
    frames, kps = sample
    _check(frames, kps, size, scale, "cuda", max_diff=2)


def test_several_faces_per_frame_and_frames_without_faces(sample):
    """frame_index routes each face to its frame; the result equals warping each face on its own."""
    frames, kps = sample
    x = torch.from_numpy(np.stack(frames[:4])).permute(0, 3, 1, 2)
    fi = np.array([2, 0, 2, 2, 3])  # frame 1 has no face, frame 2 three (shifted copies)
    shifted = kps[fi] + np.array([0, 0, 9, -6, 0], np.float32)[:, None, None]
    batch = warp_crops(x, shifted, 112, 1.0, frame_index=fi)
    assert batch.shape == (5, 3, 112, 112)
    for j, f in enumerate(fi):
        alone = warp_crops(x[f:f + 1], shifted[j:j + 1], 112, 1.0)[0]
        assert torch.equal(batch[j], alone)
    assert not torch.equal(batch[0], batch[2])  # the shift moved the crop
    empty = warp_crops(x, np.zeros((0, 5, 2), np.float32), 112)
    assert empty.shape == (0, 3, 112, 112) and empty.dtype == torch.uint8


def test_float_frames_keep_their_dtype_and_transform_is_numpys(sample):
    from auflow.plugins.align import estimate_transform

    frames, kps = sample
    np.testing.assert_allclose(estimate_transform_torch(torch.from_numpy(kps), 224, 1.3).numpy(),
                               estimate_transform(kps, 224, 1.3), atol=1e-9)
    x = torch.from_numpy(np.stack(frames[:2])).permute(0, 3, 1, 2)
    as_float = warp_crops(x.float(), kps[:2], 112)
    assert as_float.dtype == torch.float32
    assert (as_float.round() - warp_crops(x, kps[:2], 112).float()).abs().max() == 0
