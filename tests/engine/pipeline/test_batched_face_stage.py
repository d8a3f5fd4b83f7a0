"""BatchedFaceStage (the all-GPU path's face stage) on the CPU against the CPU FaceStage with retinaface.

Crops are compared with the warp bound of tests/plugins/test_align_torch.py: max |diff| ≤ 1 gray
level, mean < 0.01 (max ≤ 2 in the cuda variant, marker ``gpu``, which runs the stage on the GPU against
the CPU FaceStage).
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
from auflow.engine.assets import asset_path, expected_path
from auflow.engine.config import FaceSection
from auflow.engine.errors import ConfigError
from auflow.engine.pipeline.face_stage import FaceStage
from auflow.engine.pipeline.batched_face_stage import BatchedFaceStage
from auflow.engine.types import FrameMeta, FramePacket
from auflow.plugins.detectors.yunet import fit_max_side

FRAMES = 20
#: the second (mirrored) camera joins for the first frames only: the test stays ~10 s on one CPU thread
FRAMES_B = 6


@pytest.fixture(scope="module")
def demo_frames() -> list[np.ndarray]:
    """The demo clip's first 20 frames (BGR)."""
    import av

    if expected_path("demo_video") is None:
        pytest.skip("asset demo_video is not installed (run `make assets`)")
    with av.open(str(asset_path("demo_video"))) as c:
        return [f.to_ndarray(format="bgr24") for f in itertools.islice(c.decode(video=0), FRAMES)]


def _cfg(size: int = 112, scale: float = 1.0, max_side: int = 640) -> FaceSection:
    return FaceSection.model_validate({
        "detector": {"name": "retinaface", "max_side": max_side},
        "align": {"name": "norm_crop", "size": size, "scale": scale, "impl": "numpy"},
        "tracker": {"name": "bytetrack"},
    })


def _meta(cam: str, i: int, img: np.ndarray) -> FrameMeta:
    return FrameMeta(cam, f"{cam}-s1", i, i, (1, 25), 0, img.shape[1], img.shape[0])


def _cpu_run(cfg: FaceSection, cam: str, frames: list[np.ndarray]):
    stage = FaceStage(cfg)
    stage.start()
    return [stage.process(FramePacket(_meta(cam, i, f), f)) for i, f in enumerate(frames)]


def _assert_same(gpu_out, cpu_out, max_diff):
    assert gpu_out.meta == cpu_out.meta
    g, c = gpu_out.faces, cpu_out.faces
    assert len(g) == len(c)
    np.testing.assert_allclose(g.bbox, c.bbox, atol=1e-2)
    np.testing.assert_allclose(g.kps, c.kps, atol=1e-2)
    np.testing.assert_array_equal(g.track, c.track)
    host = gpu_out.to_host()
    assert host.crops.shape == cpu_out.crops.shape and host.crops.dtype == np.uint8
    diff = np.abs(host.crops.astype(np.int16) - cpu_out.crops)
    if diff.size:
        assert diff.max() <= max_diff and diff.mean() < 0.01
    assert {"detect", "track", "align"} <= set(gpu_out.latency_ms)


def _two_streams_match(demo_frames, device: str):
    """Two cameras (the clip, and the clip mirrored) interleaved in batches of 8 frames: each equals its own CPU run."""
    cfg = _cfg()
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in demo_frames[:FRAMES_B]]
    ref = {"a": _cpu_run(cfg, "a", demo_frames), "b": _cpu_run(cfg, "b", mirrored)}
    stage = BatchedFaceStage(cfg, device=device)
    stage.start()
    items = [(cam, i, f) for i in range(FRAMES) for cam, f in (("a", demo_frames[i]), ("b", mirrored[i] if i < FRAMES_B else None))
             if f is not None]
    outs = {"a": [], "b": []}
    for start in range(0, len(items), 8):
        batch = items[start:start + 8]
        frames = [(_meta(cam, i, f), torch.from_numpy(f).permute(2, 0, 1).to(device)) for cam, i, f in batch]
        for (cam, _, _), out in zip(batch, stage.process(frames)):
            assert out.crops.device.type == torch.device(device).type
            outs[cam].append(out)
    faces = 0
    for cam in ("a", "b"):
        assert len(outs[cam]) == len(ref[cam])
        for g, c in zip(outs[cam], ref[cam]):
            _assert_same(g, c, 1 if device == "cpu" else 2)
            faces += len(c.faces)
    assert faces >= FRAMES + FRAMES_B  # the face is found in every frame of both streams
    assert outs["a"][-1].faces.track[0] >= 0
    stage.stop()


@pytest.mark.slow
def test_two_streams_batched_equal_the_cpu_face_stage(demo_frames):
    _two_streams_match(demo_frames, "cpu")


@pytest.mark.gpu
def test_two_streams_batched_on_cuda_equal_the_cpu_face_stage(demo_frames, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 convolutions move boxes by up to ~0.5 px
    _two_streams_match(demo_frames, "cuda")


@pytest.mark.gpu
def test_a_bare_cuda_device_takes_frames_on_the_current_cuda_device(demo_frames):
    """``device="cuda"`` (the gpu profile's face.device) takes tensors made on ``cuda:0``.

    The first GPU run (2026-12-04, H200) refused every frame: torch.device("cuda") != device("cuda:0").
    """
    stage = BatchedFaceStage(_cfg(), device="cuda")
    img = torch.from_numpy(demo_frames[0]).permute(2, 0, 1).contiguous().to(torch.device("cuda", 0))
    out = stage.process([(_meta("a", 0, demo_frames[0]), img)])
    assert len(out) == 1 and len(out[0].faces) == 1
    stage.stop()


def test_the_detector_through_graphed_buckets_gives_the_same_faces(demo_frames):
    """face.cuda_graphs' path (the network behind GraphedForward, batches padded to buckets) on the CPU, where
    the buckets run eagerly: the same faces as the plain call, for batches of 3 (bucket 4) and 1."""
    from auflow.engine.cuda_graphs import GraphedForward

    plain, graphed = BatchedFaceStage(_cfg(), device="cpu"), BatchedFaceStage(_cfg(), device="cpu")
    graphed.start()
    graphed._net = GraphedForward(graphed.detector.network, "cpu", 4)
    for first, frames in ((0, demo_frames[:3]), (3, demo_frames[3:4])):
        batch = [(_meta("a", first + i, f), torch.from_numpy(f).permute(2, 0, 1)) for i, f in enumerate(frames)]
        for p, g in zip(plain.process(batch), graphed.process(batch)):
            assert len(p.faces) == len(g.faces) == 1
            np.testing.assert_allclose(g.faces.bbox, p.faces.bbox, atol=1e-3)
            np.testing.assert_allclose(g.faces.kps, p.faces.kps, atol=1e-3)
    assert {k[0] for k in graphed._net._entries} == {4, 1}


def test_large_frames_are_downscaled_like_the_cpu_detector(demo_frames):
    """1280×720 frames (over max_side): the device area downscale gives cv2's pixels and the same faces and crops."""
    big = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in demo_frames[:3]]
    det = BatchedFaceStage(_cfg(), device="cpu").detector  # its downscale_tensors: the batched entry's first step
    small, sx, sy = det.downscale_tensors(torch.from_numpy(np.stack(big)).permute(0, 3, 1, 2))
    ref, rx, ry = fit_max_side(big[0], 640)
    assert (sx, sy) == (rx, ry)
    assert np.abs(small[0].permute(1, 2, 0).numpy().astype(np.int16) - ref).max() <= 1
    cfg = _cfg(size=224, scale=1.3)
    cpu = _cpu_run(cfg, "a", big)
    stage = BatchedFaceStage(cfg, device="cpu")
    outs = stage.process([(_meta("a", i, f), torch.from_numpy(f).permute(2, 0, 1)) for i, f in enumerate(big)])
    for g, c in zip(outs, cpu):
        assert len(g.faces) == len(c.faces) >= 1
        np.testing.assert_allclose(g.faces.bbox, c.faces.bbox, atol=1.0)  # downscale may differ by 1 level
        diff = np.abs(g.to_host().crops.astype(np.int16) - c.crops)
        assert diff.mean() < 1.0


def test_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="retinaface"):
        BatchedFaceStage(FaceSection.model_validate({"detector": {"name": "yunet"}}), device="cpu")
    stage = BatchedFaceStage(_cfg(), device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        stage.process([(_meta("a", 0, np.zeros((8, 8, 3))), torch.zeros(3, 8, 8))])


def test_nv12_planes_by_dlpack_give_the_bgr_frame():
    """The NVDEC hand-over's colour step, on CPU planes: PyAV's NV12 planes → torch.from_dlpack → BGR ≈ swscale's bgr24."""
    import av
    from auflow.engine.pipeline.batched_face_stage import nv12_to_bgr

    if expected_path("demo_video") is None:
        pytest.skip("asset demo_video is not installed (run `make assets`)")
    with av.open(str(asset_path("demo_video"))) as c:
        frame = next(c.decode(video=0))
    ref = frame.to_ndarray(format="bgr24").astype(np.int16)
    y, uv = (torch.from_dlpack(p) for p in frame.reformat(format="nv12").planes)
    assert y.shape == ref.shape[:2] and uv.shape == (ref.shape[0] // 2, ref.shape[1] // 2, 2)
    out = nv12_to_bgr(y, uv, "bt601").permute(1, 2, 0).numpy().astype(np.int16)
    diff = np.abs(out - ref)
    assert diff.mean() < 1.5 and diff.max() <= 4  # measured: mean 1.23, max 3 (swscale's fixed point)
    wrong = np.abs(nv12_to_bgr(y, uv, "bt709").permute(1, 2, 0).numpy().astype(np.int16) - ref)
    assert wrong.mean() > diff.mean()  # the clip is BT.601: the other matrix is further off


def test_both_placements_keep_one_contract_and_give_the_same_faces_on_the_cpu(demo_frames):
    """FacePlacement (engine/contracts.py): the per-worker and the batched stage take the same ``face`` config and
    the same calls; on the CPU, the same frames give the same faces and tracks, crops within 1 gray level."""
    from auflow.engine.contracts import FacePlacement

    cfg = _cfg()
    worker, batched = FaceStage(cfg), BatchedFaceStage(cfg, device="cpu")
    assert isinstance(worker, FacePlacement) and isinstance(batched, FacePlacement)
    assert (worker.placement, batched.placement) == ("worker", "batched")
    frames = demo_frames[:4]
    pkts = [FramePacket(_meta("a", i, f), f) for i, f in enumerate(frames)]
    worker.start()
    batched.start()
    a, b = worker.process_batch(pkts), batched.process_batch(pkts)
    assert len(a) == len(b) == 4 and sum(len(x.faces) for x in a) > 0
    for x, y in zip(a, b):
        y = y.to_host()
        assert x.faces.track.tolist() == y.faces.track.tolist()
        np.testing.assert_allclose(x.faces.bbox, y.faces.bbox, atol=0.5)
        assert np.abs(x.crops.astype(int) - y.crops.astype(int)).max() <= 1
    worker.on_stream_end("a")
    batched.on_stream_end("a")
    worker.stop()
    batched.stop()
