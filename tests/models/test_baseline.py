"""The no-graph control model ``baseline_au``: backbone → GAP → linear → sigmoid."""

from __future__ import annotations

import pytest
import torch

import auflow.models.au.baseline  # noqa: F401 - registers baseline_au
from auflow.engine.errors import ModelError
from auflow.models import create_model
from auflow.models.data import AU_SETS


def small(**kw):
    torch.manual_seed(0)
    return create_model("baseline_au", backbone="mobilenet_v2", backbone_kw={"width_mult": 0.25}, input_size=64, **kw)


def test_outputs_are_per_au_sigmoids_of_a_linear_head_on_pooled_features():
    m = small(dataset="disfa").eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        p, aux = m(x), m.forward_aux(x)
    assert p.shape == (3, 8) and m.card.labels == AU_SETS["disfa"]
    torch.testing.assert_close(aux["probs"], p)
    torch.testing.assert_close(torch.sigmoid(aux["logits"]), p)
    feats = m.backbone(x).mean(dim=(2, 3))
    torch.testing.assert_close(aux["features"], feats)
    torch.testing.assert_close(aux["logits"], feats @ m.head.weight.T + m.head.bias)
    with torch.no_grad():  # batch independence in eval: one sample alone gives the same output
        torch.testing.assert_close(m(x[1:2]), p[1:2], atol=1e-5, rtol=0)


def test_trains_every_parameter_and_card_rebuilds_it():
    m = small(au_names=["AU01", "AU12"]).train()
    m.forward_aux(torch.randn(4, 3, 64, 64))["probs"].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert m.card.kind == "untrained" and m.card.name == "baseline_au"
    again = create_model("baseline_au", **m.card.config)
    assert again.load_state_dict(m.state_dict()) is not None and again.card.labels == ("AU01", "AU12")


def test_bad_options_are_model_errors():
    with pytest.raises(ModelError, match="choose one of bp4d, disfa, emotionet"):
        small(dataset="ck+")
    with pytest.raises(ModelError, match="differ from dataset"):
        small(dataset="disfa", au_names=["AU01"])
    with pytest.raises(ModelError, match="dropout"):
        small(dropout=1.0)
