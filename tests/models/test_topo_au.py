"""Topo-AU (paper 000): modules against the paper's equations, shapes, gradients, card, export, loss."""

from __future__ import annotations

import math

import pytest
import torch
from model_checks import assert_batch_independent, randomise_bn

from auflow.engine.errors import ModelError
from auflow.models import create_model, list_models, save_checkpoint
from auflow.models.au.losses_topo_gcn import topo_au_loss
from auflow.models.au.topo_au import AU_SETS, CCFG, MAFG, AUGraphLayer, topo_au
from auflow.models.losses import au_class_weights, weighted_asymmetric_loss

SIZE = 112


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomise_bn(topo_au(backbone="resnet18", input_size=SIZE).eval(), affine=True)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(4, 3, SIZE, SIZE)


def test_eval_output_is_au_probabilities(model, images):
    with torch.no_grad():
        p = model(images)
    assert p.shape == (4, 8)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert p.std() > 0


def test_aux_outputs(model, images):
    with torch.no_grad():
        out = model.forward_aux(images)
        plain = model(images)
    b, n, c = 4, 8, model.dim
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "probs": (b, n), "logits": (b, n), "nodes": (b, n, c), "gnn_nodes": (b, n, c),
        "ccfg_nodes": (b, n, c), "fused": (b, n, c), "adjacency": (b, n, n)}
    torch.testing.assert_close(out["probs"], plain)
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["probs"], atol=1e-5, rtol=0)
    assert (out["adjacency"].sum(-1) == 3).all()  # K = 3 on DISFA


def test_batch_of_one_equals_the_same_sample_in_a_batch(model, images):
    assert_batch_independent(model, images, atol=1e-5)


def test_every_parameter_gets_a_finite_grad():
    torch.manual_seed(0)
    m = topo_au(backbone="resnet18", input_size=64, dataset="emotionet").train()
    y = (torch.rand(3, 12) > 0.5).float()
    loss = topo_au_loss(m.forward_aux(torch.randn(3, 3, 64, 64)), y, au_class_weights(torch.full((12,), 0.3)))["loss"]
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for name in ("sc", "post.fc.weight", "ccfg.phi.weight", "ccfg.alpha1.weight", "ccfg.conv_f.weight",
                 "mafg.conv_y.2.weight", "mafg.conv_x.0.weight", "mafg.mix.weight", "gnn.0.V.weight"):
        assert m.get_parameter(name).grad.abs().sum() > 0, name


# -- MAFG, Eq. (1)-(4) -----------------------------------------------------------------------------
def test_mafg_attention_is_the_sum_of_separable_multiscale_strips():
    """Eq. (1)-(3) with the 5×5 conv and the 1×1 mix set to identities: an impulse answers with
    itself plus, per scale, the outer product of its y-strip and x-strip kernels (y first, then x)."""
    torch.manual_seed(0)
    mafg = MAFG(dim=2, num_aus=3)
    with torch.no_grad():
        mafg.stem.weight.zero_()
        mafg.stem.weight[:, 0, 2, 2] = 1.0
        mafg.mix.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        for conv in (mafg.stem, mafg.mix, *mafg.conv_y, *mafg.conv_x):
            conv.bias.zero_()
        x = torch.zeros(1, 2, 31, 31)
        x[0, :, 15, 15] = 1.0
        attn = mafg.attention(x)
    want = x.clone()
    for conv_y, conv_x, k in zip(mafg.conv_y, mafg.conv_x, (7, 11, 21)):
        assert conv_y.weight.shape == (2, 1, k, 1) and conv_x.weight.shape == (2, 1, 1, k)  # depth-wise strips
        for ch in range(2):
            ky, kx = conv_y.weight[ch, 0, :, 0], conv_x.weight[ch, 0, 0, :]
            # cross-correlation of an impulse: the kernel appears flipped around the impulse
            want[0, ch, 15 - k // 2 : 15 + k // 2 + 1, 15 - k // 2 : 15 + k // 2 + 1] += torch.outer(ky.flip(0), kx.flip(0))
    torch.testing.assert_close(attn, want, atol=1e-6, rtol=0)


def test_mafg_nodes_are_eq4_per_au_linear_blocks_then_gap():
    torch.manual_seed(0)
    mafg = MAFG(dim=4, num_aus=3).eval()
    randomise_bn(mafg, affine=True)
    x = torch.randn(2, 4, 3, 5)
    with torch.no_grad():
        v = mafg(x)
        tokens = (mafg.attention(x) * x).flatten(2).transpose(1, 2)  # Attn ⊙ X
        fc, bn = mafg.class_linears.fc, mafg.class_linears.bn
        for i in range(3):
            rows = slice(4 * i, 4 * i + 4)  # φ_i: its own FC rows and BN channels
            h = tokens @ fc.weight[rows].T + fc.bias[rows]
            h = (h - bn.running_mean[rows]) / torch.sqrt(bn.running_var[rows] + bn.eps) * bn.weight[rows] + bn.bias[rows]
            torch.testing.assert_close(v[:, i], torch.relu(h).mean(dim=1), atol=1e-5, rtol=0)


# -- GNN, Eq. (5)-(9) ------------------------------------------------------------------------------
def test_gnn_layer_is_eq5_to_eq9_with_per_node_batchnorm():
    torch.manual_seed(0)
    layer = AUGraphLayer(dim=6, num_aus=5, k=2).eval()
    randomise_bn(layer, affine=True)
    v = torch.randn(2, 5, 6)
    with torch.no_grad():
        out, adj = layer(v)
        for b in range(2):
            s = v[b] @ v[b].T  # Eq. (5) with ρ the identity
            for i in range(5):
                top = set(s[i].argsort(descending=True)[:2].tolist())  # Eq. (6)
                assert set(adj[b, i].nonzero().flatten().tolist()) == top
                # Eq. (7)-(8): every degree is K = 2, so A' = A / 2
                msg = sum(adj[b, i, j] / 2 * layer.V(v[b, j]) for j in range(5))
                h = layer.U(v[b, i]) + msg
                bn = layer.bn  # statistics of node i (one BN channel per AU)
                h = (h - bn.running_mean[i]) / torch.sqrt(bn.running_var[i] + bn.eps) * bn.weight[i] + bn.bias[i]
                torch.testing.assert_close(out[b, i], torch.relu(v[b, i] + h), atol=1e-5, rtol=0)  # Eq. (9)


# -- CCFG, Eq. (10)-(12) ---------------------------------------------------------------------------
def test_ccfg_topology_is_eq10_eq11():
    torch.manual_seed(0)
    ccfg = CCFG(dim=8, num_aus=3, reduction=4, lam=0.7).eval()
    x = torch.randn(1, 8, 3, 4)  # h = 3 rows, w = 4 columns (the topology's vertices)
    with torch.no_grad():
        e = ccfg.topology(x)
        a1, a2, beta = ccfg.alpha1(x).mean(2)[0], ccfg.alpha2(x).mean(2)[0], ccfg.beta(x)[0]  # (2, 4), (2, 4), (8, 3, 4)
        for u in range(4):
            want_u = torch.zeros(8, 3)
            for v in range(4):
                rel = torch.tanh(a1[:, u] - a2[:, v])  # Eq. (10), 2 relation channels
                topo = 0.7 * (ccfg.conv_f.weight[:, :, 0, 0] @ rel + ccfg.conv_f.bias)  # λ Conv_f, 8 channels
                want_u += topo[:, None] * beta[:, :, v]  # Eq. (11): Σ_v over the vertices
            torch.testing.assert_close(e[0, :, :, u], want_u, atol=1e-5, rtol=0)


def test_ccfg_gives_each_au_its_own_features():
    """Eq. (12) has a φ_i per AU; the released code's shared block would give N equal rows."""
    torch.manual_seed(0)
    ccfg = CCFG(dim=8, num_aus=3, reduction=4).eval()
    randomise_bn(ccfg, affine=True)
    with torch.no_grad():
        v = ccfg(torch.randn(2, 8, 3, 4))
    assert v.shape == (2, 3, 8)
    assert not torch.allclose(v[:, 0], v[:, 1]) and not torch.allclose(v[:, 1], v[:, 2])


def test_fusion_feeds_both_branches_into_eq13(model, images):
    """f depends on v^GNN and on v^CCFG: zeroing the CCFG's φ changes the prediction."""
    with torch.no_grad():
        before = model(images)
        saved = model.ccfg.phi_bn.bias.clone(), model.ccfg.phi_bn.weight.clone()
        model.ccfg.phi_bn.weight.zero_()
        model.ccfg.phi_bn.bias.zero_()
        after = model(images)
        model.ccfg.phi_bn.bias.copy_(saved[0])
        model.ccfg.phi_bn.weight.copy_(saved[1])
    assert (before - after).abs().max() > 1e-4


# -- factory and card ------------------------------------------------------------------------------
def test_card_and_registry(model):
    assert "topo_au" in list_models()
    card = model.card
    assert card.name == "topo_au" and card.task == "au" and card.kind == "untrained" and card.multilabel
    assert card.labels == AU_SETS["disfa"] and card.input_size == SIZE and card.config["k"] == 3
    rebuilt = create_model("topo_au", **card.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_checkpoint_round_trip(model, images, tmp_path):
    loaded = create_model("topo_au", checkpoint=save_checkpoint(model, tmp_path / "m.pt")).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


@pytest.mark.parametrize(
    ("kw", "labels", "k"),
    [
        ({}, AU_SETS["disfa"], 3),
        ({"dataset": "emotionet"}, AU_SETS["emotionet"], 4),
        ({"num_classes": 12}, AU_SETS["emotionet"], 4),
        ({"au_names": ["AU06", "AU12", "AU25"], "k": 2}, ("AU06", "AU12", "AU25"), 2),
    ],
)
def test_label_sets(kw, labels, k):
    m = topo_au(backbone="mobilenet_v2", input_size=64, backbone_kw={"width_mult": 0.35}, dim=16, **kw).eval()
    assert m.card.labels == labels and m.k == k
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, len(labels))


def test_emotionet_labels_are_the_papers_table3():
    assert AU_SETS["emotionet"] == tuple(f"AU{n:02d}" for n in (1, 2, 4, 5, 6, 9, 12, 17, 20, 25, 26, 43))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num_classes": 5}, "matches no known AU set"),
        ({"dataset": "bp4d"}, "unknown AU dataset"),
        ({"dataset": "disfa", "au_names": AU_SETS["emotionet"]}, "differ from dataset"),
        ({"k": 9}, "k=9"),
        ({"gnn_layers": 0}, "gnn_layers"),
        ({"backbone": "vgg"}, "unknown backbone"),
    ],
)
def test_bad_configs_are_model_errors(kw, match):
    with pytest.raises(ModelError, match=match):
        topo_au(**{"backbone": "resnet18", "input_size": 64, **kw})


class _Aux(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_aux(x)


def test_torch_export_takes_the_aux_outputs(model, images):
    with torch.no_grad():
        want = model.forward_aux(images)
    got = torch.export.export(_Aux(model), (images,)).module()(images)
    for key in ("probs", "adjacency", "ccfg_nodes"):
        torch.testing.assert_close(got[key], want[key])


# -- loss, Eq. (15)-(17) ---------------------------------------------------------------------------
def test_topo_au_loss_is_eq15_hand_computed():
    p = torch.tensor([[0.8, 0.3], [0.4, 0.9]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = au_class_weights([0.5, 0.25])  # Eq. (16): Num·(1/r_i)/Σ(1/r_j) = 2·(2, 4)/6
    torch.testing.assert_close(w, torch.tensor([2 / 3, 4 / 3]))
    s0 = w[0] * math.log(0.8) + w[1] * 0.3 * math.log(0.7)  # y=1: log p; y=0: p·log(1-p)
    s1 = w[0] * 0.4 * math.log(0.6) + w[1] * math.log(0.9)
    want = -(s0 / 2 + s1 / 2) / 2  # -(1/Num) Σ_i, then the batch mean
    out = topo_au_loss({"probs": p}, y, w)
    assert out["loss"].item() == pytest.approx(float(want), rel=1e-6)
    assert out["loss"].item() == pytest.approx(weighted_asymmetric_loss(p, y, w).item())  # Eq. (17): L = L_WA


@pytest.mark.parametrize(("name", "options", "message"), [
    ("me_graphau", {"dim": 1}, "me_graphau: dim=1 must be >= 2"),  # the cross attention's keys are dim / 2 wide
    ("me_graphau", {"gcn_layers": 0}, "gcn_layers must be >= 1"),
    ("me_graphau", {"edge_grid": 0}, "edge_grid must be >= 1"),
    ("topo_au", {"dim": 0}, "topo_au: dim=0 must be >= 1"),
    ("topo_au", {"gnn_layers": 0}, "gnn_layers must be >= 1"),
    ("topo_au", {"ccfg_reduction": 0}, "ccfg_reduction must be >= 1"),
])
def test_graph_models_name_an_option_out_of_range(name, options, message):
    with pytest.raises(ModelError, match=message):
        create_model(name, backbone="mobilenet_v2", input_size=64, **options)
