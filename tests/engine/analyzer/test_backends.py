"""Every backend gives what eager gives, on real crops, for every analyzer model of the default config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auflow.engine.analyzer.backends import load_backend
from auflow.engine.analyzer.backends.core import export_onnx
from auflow.engine.errors import ConfigError, ModelError
from auflow.models import create_model

MODELS = [("fer", {}), ("me_graphau", {"backbone": "mobilenet_v2", "input_size": 112})]


def inputs(card, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, card.input_channels, card.input_size, card.input_size, generator=g)


@pytest.mark.parametrize("name, kw", MODELS)
def test_onnx_matches_eager(name, kw, tmp_path, monkeypatch):
    monkeypatch.setenv("AUFLOW_CACHE", str(tmp_path))
    model = create_model(name, **kw)
    x = inputs(model.card)
    ref = load_backend("eager", model, model.card)(x)
    got = load_backend("onnx", model, model.card, batch=8)(x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4
    assert list((tmp_path / "onnx").glob("*.onnx"))  # cached for the next run


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own machinery
@pytest.mark.parametrize("name, kw", MODELS[:1])
def test_compile_matches_eager(name, kw):
    model = create_model(name, **kw)
    x = inputs(model.card)
    ref = load_backend("eager", model, model.card)(x)
    got = load_backend("compile", model, model.card)(x)
    assert np.abs(got - ref).max() <= 1e-4


def test_export_writes_card(tmp_path):
    model = create_model("fer")
    path = export_onnx(model, model.card, tmp_path / "fer.onnx")
    assert path.is_file() and (tmp_path / "fer.onnx.card.json").read_text().count('"happiness"') == 1


def test_errors_are_clear():
    model = create_model("fer")
    with pytest.raises(ConfigError, match="unknown backend"):
        load_backend("nope", model, model.card)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        load_backend("eager", model, model.card, precision="fp16")
    with pytest.raises(ModelError, match="torch-tensorrt"):
        load_backend("tensorrt", model, model.card, device="cuda")
