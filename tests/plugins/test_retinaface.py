from __future__ import annotations

import subprocess
import sys
from itertools import product
from math import ceil

import cv2
import numpy as np
import pytest
import torch

from helpers import box_iou

from auflow.engine.assets import asset_path
from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.plugin import build
from auflow.engine.registry import DETECTORS
from auflow.plugins.detectors.retinaface import (
    MIN_SIZES,
    STEPS,
    RetinaFaceDetector,
    batched_nms,
    build_network,
    prior_boxes,
)


@pytest.fixture(scope="module")
def retina() -> RetinaFaceDetector:
    det = build(DETECTORS, "retinaface")
    det.start()
    return det


def assert_faces_equal(a, b, atol=1e-3, score_atol=1e-5):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.bbox, b.bbox, atol=atol)
    np.testing.assert_allclose(a.kps, b.kps, atol=atol)
    np.testing.assert_allclose(a.score, b.score, atol=score_atol)


def test_importing_the_registry_imports_neither_torch_nor_yuface():
    code = ("import sys; from auflow.engine.registry import DETECTORS; names = DETECTORS.names(); "
            "print(names, 'torch' in sys.modules, 'yuface' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['retinaface', 'yunet', 'yunet_roi'] False False"


def test_config_is_validated():
    with pytest.raises(ConfigError, match="unknown key .*threshold.*valid keys: score_threshold, nms_threshold, max_side, device"):
        build(DETECTORS, "retinaface", {"threshold": 0.5})


def test_network_matches_the_weights_key_for_key():
    state = torch.load(asset_path("retinaface_mnet025"), map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net_state = build_network().state_dict()
    assert set(net_state) == set(state)
    assert all(net_state[k].shape == state[k].shape for k in state)


def test_priors_match_the_original_loop():
    """biubug6's PriorBox.forward, written as its nested loops, on an odd-sized image."""
    h, w = 75, 130
    ref = []
    for k, step in enumerate(STEPS):
        for i, j in product(range(ceil(h / step)), range(ceil(w / step))):
            for m in MIN_SIZES[k]:
                ref += [(j + 0.5) * step / w, (i + 0.5) * step / h, m / w, m / h]
    np.testing.assert_allclose(prior_boxes(h, w).numpy(), np.array(ref, np.float32).reshape(-1, 4), rtol=1e-6)


def _py_cpu_nms(dets: np.ndarray, thresh: float) -> list[int]:
    """The original's greedy NMS (face-analysis-kit / biubug6 py_cpu_nms)."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


@pytest.mark.parametrize("thresh", [0.3, 0.4, 0.7])
def test_batched_nms_equals_greedy_nms(thresh):
    rng = np.random.default_rng(0)
    b, k = 4, 60
    xy = rng.uniform(0, 200, (b, k, 2))
    wh = rng.uniform(20, 80, (b, k, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    scores = np.sort(rng.uniform(0, 1, (b, k)), axis=1)[:, ::-1].copy()  # rows sorted, as the caller gives them
    valid = scores > 0.2
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(valid), thresh).numpy()
    for r in range(b):
        v = np.flatnonzero(valid[r])
        dets = np.concatenate([boxes[r, v], scores[r, v, None]], 1)
        expected = sorted(v[_py_cpu_nms(dets, thresh)].tolist())
        assert np.flatnonzero(keep[r]).tolist() == expected


def test_same_face_as_yunet(retina, demo_sample):
    """Detectors trained apart agree on the box; landmarks agree to ~0.1 of the eye distance.

    Measured on the demo clip (every 3rd frame): box IoU ≥ 0.82, mean landmark distance ≤ 0.16 of
    the inter-ocular distance (median 0.08); the nose differs most (up to 0.34 IOD with the head
    tilted back: YuNet marks the tip, RetinaFace higher up).
    """
    pytest.importorskip("yuface")
    from auflow.plugins.detectors.yunet import YuNetDetector

    yunet = YuNetDetector()
    norm_dist = []
    for frame in demo_sample:
        a, b = yunet.detect(frame), retina.detect(frame)
        assert len(a) == len(b) == 1
        assert b.score[0] > 0.9
        assert box_iou(a.bbox[0], b.bbox[0]) >= 0.7
        iod = np.linalg.norm(a.kps[0, 0] - a.kps[0, 1])
        d = np.linalg.norm(a.kps[0] - b.kps[0], axis=1) / iod
        assert d[[0, 1, 3, 4]].max() < 0.3, "eyes and mouth corners (same arcface order)"
        norm_dist.append(d.mean())
    assert max(norm_dist) < 0.2
    assert np.median(norm_dist) < 0.12


def test_detect_batch_equals_detect(retina, demo_sample):
    frames = demo_sample[:6]
    singles = [retina.detect(f) for f in frames]
    for batched in (retina.detect_batch(np.stack(frames)), retina.detect_batch(frames)):
        assert len(batched) == len(frames)
        for a, b in zip(singles, batched):
            assert_faces_equal(a, b)


def test_detect_batch_with_mixed_sizes_keeps_order(retina, demo_sample):
    small = cv2.resize(demo_sample[7], (320, 180), interpolation=cv2.INTER_AREA)
    frames = [demo_sample[0], small, demo_sample[1], np.zeros((200, 300, 3), np.uint8)]
    out = retina.detect_batch(frames)
    assert [len(f) for f in out] == [1, 1, 1, 0]
    for f, faces in zip(frames, out):
        assert_faces_equal(retina.detect(f), faces)
    assert out[1].bbox[0, 2] <= 320


def test_downscaled_frame_maps_back_to_frame_pixels(retina, demo_sample):
    frame = demo_sample[5]
    big = cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_CUBIC)  # max_side 640 halves it again
    a, b = retina.detect(frame), retina.detect(big)
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(b.bbox[0] / 2, a.bbox[0], atol=4)
    np.testing.assert_allclose(b.kps[0] / 2, a.kps[0], atol=4)


def test_no_face_clip(retina, no_face_video, frames_of):
    frames = list(frames_of(no_face_video, step=5))
    assert sum(len(f) for f in retina.detect_batch(frames)) == 0


def test_rejects_bad_input(retina):
    with pytest.raises(ValueError, match="BGR uint8"):
        retina.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="use detect"):
        retina.detect_batch(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_model_error():
    with pytest.raises(ModelError, match="no CUDA device"):
        RetinaFaceDetector(RetinaFaceDetector.Config(device="cuda")).start()


@pytest.mark.gpu
def test_cuda_gives_the_same_faces_as_cpu(retina, demo_sample):
    gpu = RetinaFaceDetector(RetinaFaceDetector.Config(device="cuda"))
    for a, b in zip(retina.detect_batch(demo_sample), gpu.detect_batch(demo_sample)):
        assert_faces_equal(a, b, atol=0.5, score_atol=1e-3)  # cuDNN may use TF32
