from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from helpers import box_iou

from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.plugin import build
from auflow.engine.registry import DETECTORS
from auflow.engine.types import Faces

yuface = pytest.importorskip("yuface", reason="yuface has wheels for CPython 3.10/3.11 only")

from auflow.plugins.detectors.yunet import YuNetDetector  # noqa: E402


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    det = build(DETECTORS, "yunet")
    det.start()
    return det


def assert_plausible_face(faces: Faces, frame_shape) -> None:
    """One upright frontal-ish face: landmarks in arcface order, inside the box."""
    assert len(faces) == 1
    box, kps = faces.bbox[0], faces.kps[0]
    assert 0.6 < faces.score[0] <= 1.0
    assert box[2] > box[0] + 50 and box[3] > box[1] + 50
    le, re, nose, lm, rm = kps
    assert le[0] < re[0] and lm[0] < rm[0], "arcface order: image-left eye / mouth corner first"
    assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1]), "eyes above nose above mouth"
    assert np.all(kps[:, 0] > box[0]) and np.all(kps[:, 0] < box[2])
    assert np.all(kps[:, 1] > box[1]) and np.all(kps[:, 1] < box[3])
    assert faces.track.tolist() == [-1]


def test_registered_with_validated_config():
    assert "yunet" in DETECTORS.names()
    assert DETECTORS.get("yunet") is YuNetDetector
    with pytest.raises(ConfigError, match="unknown key .*score_treshold.*valid keys: score_threshold, max_side, min_face, threads"):
        build(DETECTORS, "yunet", {"score_treshold": 0.5})
    with pytest.raises(ConfigError, match="max_side"):
        build(DETECTORS, "yunet", {"max_side": 1920})  # yuface degrades above 960


def test_raw_yuface_output_format(demo_sample):
    """What the detector relies on: int16 rows of conf 0–100, xywh, 5 (x, y) in arcface order."""
    raw = yuface.c_detect(np.ascontiguousarray(demo_sample[4]))
    assert raw.dtype == np.int16 and raw.shape == (1, 16)
    conf, (x, y, w, h), kps = raw[0, 0], raw[0, 1:5], raw[0, 5:15].reshape(5, 2)
    assert 60 < conf <= 100  # a percentage, not 0–1
    assert w > 100 and h > 100
    assert kps[0, 0] < kps[1, 0] and kps[3, 0] < kps[4, 0]
    mirrored = yuface.c_detect(np.ascontiguousarray(demo_sample[4][:, ::-1]))[0, 5:15].reshape(5, 2)
    assert mirrored[0, 0] < mirrored[1, 0], "order is by image side, not by the subject's eye"


def test_one_face_on_sampled_frames(yunet, demo_sample):
    for frame in demo_sample:
        assert_plausible_face(yunet.detect(frame), frame.shape)


def test_strided_views_are_handled(yunet, demo_sample):
    """yuface ignores strides; the detector must copy a view such as a mirrored frame."""
    view = demo_sample[3][:, ::-1]
    a, b = yunet.detect(view), yunet.detect(np.ascontiguousarray(view))
    np.testing.assert_array_equal(a.bbox, b.bbox)
    assert_plausible_face(a, view.shape)


def test_downscaled_detection_maps_back_to_frame_pixels(demo_sample):
    full = YuNetDetector(YuNetDetector.Config(max_side=640))
    half = YuNetDetector(YuNetDetector.Config(max_side=320))
    for frame in demo_sample[::4]:
        a, b = full.detect(frame), half.detect(frame)
        assert len(a) == len(b) == 1
        assert box_iou(a.bbox[0], b.bbox[0]) > 0.8
        iod = np.linalg.norm(a.kps[0, 0] - a.kps[0, 1])
        assert np.linalg.norm(a.kps[0] - b.kps[0], axis=1).max() < 0.35 * iod


_THREADS_PROBE = """
import resource, sys, time
import cv2
import numpy as np
if sys.argv[1] == "torch_first":
    import torch  # then yuface's OpenMP calls bind to torch's libgomp
from auflow.plugins.detectors.yunet import YuNetDetector
import torch
det = YuNetDetector(YuNetDetector.Config(threads=1))
frame = np.ascontiguousarray(np.load(sys.argv[2]))
det.detect(frame)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(8):
    det.detect(frame)
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
print(round(cpu / wall, 2), torch.get_num_threads())
"""


@pytest.mark.parametrize("order", ["yuface_first", "torch_first"])
def test_threads_1_runs_single_threaded_whoever_loaded_openmp_first(demo_sample, tmp_path, order):
    """One thread can never use more than one core-second per second; yuface's default uses ~2 here."""
    import os
    import subprocess

    frame = tmp_path / "frame.npy"
    np.save(frame, demo_sample[0])
    out = subprocess.run([sys.executable, "-c", _THREADS_PROBE, order, str(frame)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": str(max(2, os.cpu_count() or 2))})
    ratio, torch_threads = out.stdout.split()
    assert float(ratio) < 1.25
    assert int(torch_threads) == max(2, os.cpu_count() or 2), "torch's thread count is restored after each call"


def test_min_face_and_threshold_filter(demo_sample):
    frame = demo_sample[0]
    assert len(YuNetDetector(YuNetDetector.Config(min_face=1000)).detect(frame)) == 0
    assert len(YuNetDetector(YuNetDetector.Config(min_face=100)).detect(frame)) == 1
    assert len(YuNetDetector(YuNetDetector.Config(score_threshold=0.99)).detect(frame)) == 0


def test_rejects_non_bgr_input(yunet):
    with pytest.raises(ValueError, match="BGR uint8"):
        yunet.detect(np.zeros((64, 64), np.uint8))
    assert len(yunet.detect(np.zeros((120, 160, 3), np.uint8))) == 0


def test_no_face_clip(yunet, no_face_video, frames_of):
    counts = [len(yunet.detect(f)) for f in frames_of(no_face_video)]
    assert len(counts) == 95
    assert sum(counts) == 0


def test_missing_yuface_is_a_model_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "yuface", None)  # what Python 3.12 sees: no wheel installed
    with pytest.raises(ModelError, match="retinaface"):
        YuNetDetector().start()


@pytest.mark.slow
def test_whole_demo_clip(yunet, demo_video, frames_of):
    counts = [len(yunet.detect(f)) for f in frames_of(demo_video)]
    assert len(counts) == 472
    assert sum(c == 1 for c in counts) >= 0.99 * len(counts)


def test_detect_does_not_leak_and_matches_yuface():
    """yuface.c_detect leaks its 36 kB result buffer on every call (0.9 MB/s for one 25 fps camera): the
    detector calls libfacedetection with a reused buffer instead. Same rows as c_detect, flat memory."""
    import yuface
    from auflow.plugins.detectors.yunet import YuNetDetector, _FaceDetectCnn
    from helpers import astronaut_bgr

    det = YuNetDetector()
    det.start()
    assert isinstance(det._detect, _FaceDetectCnn)
    img = np.ascontiguousarray(cv2.resize(astronaut_bgr(), (320, 320)))
    assert np.array_equal(det._detect(img)[:, :15], yuface.c_detect(img)[:, :15])

    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    for _ in range(50):
        det.detect(img)
    before = rss_kb()
    for _ in range(1000):
        det.detect(img)
    assert rss_kb() - before < 4_000, "1000 detections grew RSS by more than 4 MB (the leak was 36 MB)"
