"""Every registered model, timm-style (``tests/test_models.py`` there): card, forward, backward,
batch independence, torch.export and ONNX Runtime parity, over ``auflow.models.list_models()``.

A model joins these tests by registering. Each is built small — only the options its factory
takes are passed: a MobileNetV2 (width 0.35) backbone, 112² crops, no weight files, 4-frame windows
— and fed what its card says it takes: ``input_channels`` × ``input_size``², and clips of
``config["num_frames"]`` frames for a temporal model. The ResNet-50 variant of every model with
a ``backbone`` option (the papers' configuration) runs forward and both exports under ``slow``.
"""

from __future__ import annotations

import copy
import inspect
import io
import warnings

import numpy as np
import pytest
import torch
from model_checks import assert_batch_independent, randomise_bn

from auflow.engine.registry import MODELS
from auflow.models import create_model, list_models

FAST = {"backbone": "mobilenet_v2", "backbone_kw": {"width_mult": 0.35}, "input_size": 112, "weights": None, "num_frames": 4}
PAPER_BACKBONE = {"backbone": "resnet50", "input_size": 112, "weights": None, "num_frames": 4}
BATCH = 3
ONNX_ATOL = 1e-4


def _options(name: str, wanted: dict) -> dict:
    """The subset of ``wanted`` that the model's factory accepts."""
    params = inspect.signature(MODELS.get(name)).parameters
    return {k: v for k, v in wanted.items() if k in params}


def _build(name: str, wanted: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomise_bn(create_model(name, **_options(name, wanted)).eval())


def _inputs(model: torch.nn.Module, batch: int = BATCH, seed: int = 1) -> torch.Tensor:
    """What the card says the model takes: crops (B, C, S, S), or clips (B, T, C, S, S) for a
    temporal model, whose card config carries its window ``num_frames``."""
    card = model.card
    g = torch.Generator().manual_seed(seed)
    frames = card.config.get("num_frames")
    lead = (batch,) if frames is None else (batch, frames)
    return torch.randn(*lead, card.input_channels, card.input_size, card.input_size, generator=g)


def _onnx_outputs(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False, asked for here) warns that it is deprecated
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # an exporter optimisation skipped (fer's strided slices), not an error: parity is checked below
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["image"], output_names=["probs"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x.numpy()})[0]


@pytest.fixture(scope="module", params=list_models())
def built(request) -> tuple[str, torch.nn.Module]:
    return request.param, _build(request.param, FAST)


def test_every_model_registers_with_a_card_that_rebuilds_it(built):
    name, model = built
    card = model.card
    assert card.name == name and card.task in ("au", "expr") and len(card.labels) == len(set(card.labels)) > 0
    assert card.kind == "untrained"  # built without weights, and says so
    assert len(card.mean) == len(card.std) == card.input_channels
    rebuilt = create_model(name, **card.config)
    assert rebuilt.card.config == card.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_forward_gives_probabilities_per_label(built):
    _, model = built
    with torch.no_grad():
        p = model(_inputs(model))
    assert p.shape == (BATCH, len(model.card.labels))
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    if not model.card.multilabel:  # one distribution over the labels
        torch.testing.assert_close(p.sum(dim=1), torch.ones(BATCH), atol=1e-5, rtol=0)
    assert p.std() > 0


def test_backward_reaches_every_parameter(built):
    _, model = built
    model = copy.deepcopy(model).train()
    x = _inputs(model)
    out = model.forward_aux(x) if hasattr(model, "forward_aux") else {"probs": model(x)}
    g = torch.Generator().manual_seed(2)
    # a random weighting of every output: a plain sum would be constant for a softmax
    loss = sum((v * torch.randn(v.shape, generator=g)).mean() for v in out.values() if v.requires_grad)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


def test_batch_of_one_equals_the_same_sample_in_a_batch(built):
    _, model = built
    assert_batch_independent(model, _inputs(model), atol=1e-5)


def test_torch_export_matches_eager(built):
    _, model = built
    x = _inputs(model)
    with torch.no_grad():
        want = model(x)
    got = torch.export.export(model, (x,)).module()(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_onnx_runtime_matches_eager(built):
    _, model = built
    x = _inputs(model)
    with torch.no_grad():
        want = model(x).numpy()
    got = _onnx_outputs(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=ONNX_ATOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if "backbone" in inspect.signature(MODELS.get(n)).parameters])
def test_paper_backbone_forward_and_export(name):
    model = _build(name, PAPER_BACKBONE)
    x = _inputs(model, batch=2)
    with torch.no_grad():
        want = model(x)
    assert want.shape == (2, len(model.card.labels)) and torch.isfinite(want).all()
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(_onnx_outputs(model, x), want.numpy(), atol=ONNX_ATOL, rtol=0)
