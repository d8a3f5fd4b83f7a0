"""Frames kept in GPU memory (source.device_frames): when they are asked for, how an NVDEC frame becomes a
BGR tensor, and what happens when the on-device open fails. The NVDEC hand-over itself runs only on a
GPU (the ``gpu`` test at the end); on the CPU, software NV12 planes stand in for NVDEC's.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from auflow.engine.assets import asset_path, expected_path
from auflow.engine.config import FaceSection, SourceSection
from auflow.engine.sources import hwaccel, make_source
from auflow.engine.sources.device_frames import frame_to_bgr_tensor
from auflow.engine.pipeline.worker import frames_device


@pytest.fixture(scope="module")
def demo_path() -> str:
    if expected_path("demo_video") is None:
        pytest.skip("asset demo_video is not installed (run `make assets`)")
    return str(asset_path("demo_video"))


def test_frames_stay_on_the_device_only_for_thread_workers_feeding_a_cuda_face_stage():
    gpu = FaceSection(device="cuda")
    assert frames_device(SourceSection(workers="thread"), gpu) == "cuda"
    assert frames_device(SourceSection(workers="thread"), FaceSection(device="cuda:1")) == "cuda:1"
    assert frames_device(SourceSection(workers="process"), gpu) is None  # frames cross processes via the host
    assert frames_device(SourceSection(workers="thread", device_frames=False), gpu) is None
    assert frames_device(SourceSection(workers="thread"), FaceSection(device="cpu")) is None
    assert frames_device(SourceSection(workers="thread"), FaceSection()) is None  # per-worker CPU face stage


def _as_nvdec(frame) -> SimpleNamespace:
    """A software frame dressed as an NVDEC one (format cuda, sw_format nv12): its NV12 planes on the CPU."""
    nv12 = frame.reformat(format="nv12")
    return SimpleNamespace(format=SimpleNamespace(name="cuda"), sw_format=SimpleNamespace(name="nv12"),
                           planes=nv12.planes, colorspace=frame.colorspace, color_range=frame.color_range,
                           keep=nv12)


def test_an_nv12_frame_becomes_the_bgr_tensor_swscale_would_give(demo_path):
    with av.open(demo_path) as c:
        frames = [f for _, f in zip(range(3), c.decode(video=0))]
    for f in frames:
        ref = f.to_ndarray(format="bgr24").astype(np.int16)
        out = frame_to_bgr_tensor(_as_nvdec(f))
        assert out.dtype == torch.uint8 and out.shape == (3, f.height, f.width)
        diff = np.abs(out.permute(1, 2, 0).numpy().astype(np.int16) - ref)
        assert diff.mean() < 1.5 and diff.max() <= 4  # swscale's fixed point vs float (nv12_to_bgr's docstring)


def test_a_frame_that_is_not_nv12_is_refused_with_the_way_out(demo_path):
    with av.open(demo_path) as c:
        f = next(c.decode(video=0))
    ten_bit = SimpleNamespace(format=SimpleNamespace(name="cuda"), sw_format=SimpleNamespace(name="p010le"))
    with pytest.raises(ValueError, match="device_frames: false"):
        frame_to_bgr_tensor(ten_bit)
    with pytest.raises(ValueError, match="yuv420p"):
        frame_to_bgr_tensor(f)  # a software yuv420p frame is the host path's


def test_when_frames_cannot_stay_on_the_device_they_are_downloaded(monkeypatch, caplog, demo_path):
    """The on-device open fails (no driver context, an FFmpeg refusal): a warning says why and NVDEC's frames
    are downloaded as without device_frames; the stream does not fail."""
    monkeypatch.setattr(hwaccel, "resolve", lambda mode: "cuda")

    def no_context(index):
        raise RuntimeError("CUDA driver cuCtxSetCurrent failed with CUresult 201")

    monkeypatch.setattr(hwaccel, "make_torch_context_current", no_context)
    monkeypatch.setattr(hwaccel, "device_index", lambda device: 0)
    opened = []
    real_open = av.open

    def fake_open(url, hwaccel=None, **kw):  # the download path: NVDEC stood in for by the CPU decoder
        opened.append(hwaccel)
        return real_open(url, **kw)

    monkeypatch.setattr(hwaccel.av, "open", fake_open)
    with caplog.at_level(logging.WARNING):
        container, decoder = hwaccel.open_container(demo_path, "auto", "cuda")
    container.close()
    assert decoder == "cuda"
    assert len(opened) == 1 and opened[0] is not None and not opened[0].is_hw_owned
    assert "cannot stay on cuda" in caplog.text and "CUresult 201" in caplog.text


def test_on_device_hwaccel_uses_the_current_context_not_the_primary_one():
    """The first GPU run: PyAV's default for is_hw_owned (primary_ctx) failed with 'Operation not supported'
    once torch held the primary context."""
    hw = hwaccel.on_device_hwaccel(0)
    assert hw.is_hw_owned
    assert hw.options == {"primary_ctx": "0", "current_ctx": "1"}


@pytest.mark.gpu
def test_nvdec_frames_stay_on_the_gpu_and_match_the_cpu_decoder(demo_path):
    if not torch.cuda.is_available() or hwaccel.resolve("auto") != "cuda":
        pytest.skip("no NVDEC here")
    src = make_source(demo_path, SourceSection(hwaccel="cuda"), frames_device="cuda")
    src.open()
    got = [p.image for _, p in zip(range(8), src.frames())]
    assert src.decoder == "cuda-device"
    src.close()
    with av.open(demo_path) as c:
        ref = [f.to_ndarray(format="bgr24") for _, f in zip(range(8), c.decode(video=0))]
    for g, r in zip(got, ref):
        assert isinstance(g, torch.Tensor) and g.is_cuda and g.shape == (3, *r.shape[:2])
        diff = np.abs(g.permute(1, 2, 0).cpu().numpy().astype(np.int16) - r.astype(np.int16))
        assert diff.mean() < 2.0 and diff.max() <= 8  # NVDEC's decode + the float conversion vs swscale
