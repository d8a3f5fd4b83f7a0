"""ME-GraphAU: shapes, ranges, graph ops, gradients, batch independence, card, export."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from model_checks import assert_batch_independent, randomise_bn

from auflow.engine.errors import ModelError
from auflow.models import create_model, list_models, save_checkpoint
from auflow.models.au.me_graphau import (
    AU_SETS,
    CrossAttention,
    FGGConv,
    GatedGCNLayer,
    knn_adjacency,
    me_graphau,
    similarity_head,
)
from auflow.models.losses import me_graphau_loss

SIZE = 112


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomise_bn(me_graphau(backbone="resnet18", input_size=SIZE).eval())


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(4, 3, SIZE, SIZE)


def test_eval_output_is_au_probabilities(model, images):
    with torch.no_grad():
        p = model(images)
    assert p.shape == (4, 12)
    assert torch.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    assert p.std() > 0  # not a constant


def test_aux_outputs(model, images):
    with torch.no_grad():
        out = model.forward_aux(images)
        plain = model(images)
    b, n, c = 4, 12, model.dim
    shapes = {"probs": (b, n), "logits": (b, n), "fgg_probs": (b, n), "edge_logits": (b, n, n, 4),
              "adjacency": (b, n, n), "nodes": (b, n, c), "edges": (b, n, n, c)}
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    torch.testing.assert_close(out["probs"], plain)
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["probs"], atol=1e-5, rtol=0)
    assert ((out["fgg_probs"] >= 0) & (out["fgg_probs"] <= 1)).all()
    assert (out["adjacency"].sum(-1) == model.k).all()


def test_batch_of_one_equals_the_same_sample_in_a_batch(model, images):
    # 1e-4: float32 convolutions take other kernels for a batch of 1 (1.3e-5 apart on an AMX Xeon)
    assert_batch_independent(model, images, atol=1e-4)


def test_every_parameter_gets_a_finite_grad():
    torch.manual_seed(0)
    m = me_graphau(backbone="resnet18", input_size=64, dataset="disfa").train()
    y = torch.tensor([[1, 0, 1, 0, 0, 1, 1, 0], [0, 1, 0, 0, 1, 0, 1, 1], [1, 1, 0, 1, 0, 0, 0, 0]], dtype=torch.float32)
    out = m.forward_aux(torch.randn(3, 3, 64, 64))
    loss = me_graphau_loss(out, y, stage=1)["loss"] + me_graphau_loss(out, y, stage=2)["loss"]
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # the heads are wired to the losses (a grad of exactly zero everywhere would mean a dead path)
    for name in ("sc", "edge_fc.weight", "fgg.U.weight", "arm.q.weight", "fam.v.weight", "gnn.1.E.weight", "afg.fc.weight"):
        assert m.get_parameter(name).grad.abs().sum() > 0, name


# -- graph ops -------------------------------------------------------------------------------------
def test_knn_adjacency_has_exactly_k_ones_per_row_even_with_ties():
    torch.manual_seed(0)
    v = torch.rand(5, 12, 16)
    tied = torch.zeros(2, 12, 16)  # all similarities equal: a threshold rule would pick all 12
    for feats in (v, tied):
        for k in (1, 3, 12):
            adj = knn_adjacency(feats, k)
            assert adj.shape == (len(feats), 12, 12)
            assert set(adj.unique().tolist()) <= {0.0, 1.0}
            assert (adj.sum(-1) == k).all()


def test_knn_adjacency_picks_the_most_similar_nodes():
    torch.manual_seed(0)
    v = torch.randn(3, 8, 5)
    adj = knn_adjacency(v, 3)
    for b in range(3):
        sim = v[b] @ v[b].T
        for i in range(8):
            want = set(sim[i].argsort(descending=True)[:3].tolist())
            assert set(torch.nonzero(adj[b, i]).flatten().tolist()) == want


def test_fgg_gcn_is_eq1_with_symmetric_normalisation():
    torch.manual_seed(0)
    gcn = FGGConv(6).eval()
    v, adj = torch.randn(2, 4, 6), knn_adjacency(torch.randn(2, 4, 6), 2)
    out = gcn(v, adj)
    for b in range(2):
        for i in range(4):
            # every node has k = 2 neighbours, so D^-1/2 A D^-1/2 = A / 2
            m = sum(adj[b, i, j] / 2 * gcn.V(v[b, j]) for j in range(4))
            h = gcn.U(v[b, i]) + m
            h = (h - gcn.bn.running_mean) / torch.sqrt(gcn.bn.running_var + gcn.bn.eps) * gcn.bn.weight + gcn.bn.bias
            torch.testing.assert_close(out[b, i], torch.relu(v[b, i] + h), atol=1e-5, rtol=0)


def test_similarity_head_is_eq2():
    v = torch.tensor([[[3.0, 4.0, -1.0], [1.0, 0.0, 0.0]]])
    s = torch.tensor([[1.0, 0.0, 5.0], [-1.0, 2.0, 0.0]])
    # ReLU(v0)=(3,4,0), ReLU(s0)=(1,0,5): 3/(5·√26); ReLU(s1)=(0,2,0) ⟂ (1,0,0): 0
    torch.testing.assert_close(similarity_head(v, s), torch.tensor([[3 / (5 * math.sqrt(26)), 0.0]]))


def test_cross_attention_is_eq4():
    torch.manual_seed(0)
    attn = CrossAttention(8)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    scores = torch.einsum("bqd,bkd->bqk", attn.q(q), attn.k(kv)) / math.sqrt(4)  # d_k = C / 2
    torch.testing.assert_close(attn(q, kv), torch.softmax(scores, -1) @ attn.v(kv))


def test_pairwise_pooled_attention_is_gap_of_every_pair():
    torch.manual_seed(0)
    attn = CrossAttention(8)
    f = torch.randn(2, 4, 5, 8)
    got = attn.pairwise_pooled(f)
    assert got.shape == (2, 4, 4, 8)
    for i in range(4):
        for j in range(4):
            # [:, i, j]: F_j queries, F_i is key and value, then GAP over the query positions
            torch.testing.assert_close(got[:, i, j], attn(f[:, j], f[:, i]).mean(1), atol=1e-6, rtol=0)


def test_mefl_edges_follow_eq3_to_eq5(model):
    torch.manual_seed(0)
    n, d, c = 12, 6, model.dim
    u, x = torch.randn(1, n, d, c), torch.randn(1, d, c)
    with torch.no_grad():
        e = model._mefl(u, x)
        f = torch.stack([model.fam(u[:, i], x)[0] for i in range(n)])  # Eq. (3): F_i = FAM(U_i, X)
        for i, j in [(0, 1), (1, 0), (3, 7), (5, 5)]:
            want = model.arm(f[j : j + 1], f[i : i + 1])[0].mean(0)  # Eq. (5): GAP(ARM(F_j → F_i))
            torch.testing.assert_close(e[0, i, j], want, atol=1e-5, rtol=0)


def test_edge_grid_pools_each_fam_map_before_arm():
    """edge_grid: ARM sees each F_i average-pooled to g×g; a map no larger than g is left as it is."""
    torch.manual_seed(0)
    m = me_graphau(backbone="resnet18", input_size=64, edge_grid=2).eval()
    assert m.card.config["edge_grid"] == 2 and "edge_grid" not in me_graphau(backbone="resnet18", input_size=64).card.config
    n, c = m.num_aus, m.dim
    u, x = torch.randn(1, n, 16, c), torch.randn(1, 16, c)  # a 4×4 map
    with torch.no_grad():
        e = m._mefl(u, x, (4, 4))
        f = torch.stack([m.fam(u[:, i], x)[0] for i in range(n)])  # (N, 16, C)
        pooled = f.view(n, 2, 2, 2, 2, c).mean(dim=(2, 4)).reshape(n, 4, c)  # 2×2 blocks of the 4×4 map
        for i, j in [(0, 1), (3, 7), (5, 5)]:
            torch.testing.assert_close(e[0, i, j], m.arm(pooled[j:j + 1], pooled[i:i + 1])[0].mean(0), atol=1e-5, rtol=0)
        torch.testing.assert_close(m._mefl(u[:, :, :4], x[:, :4], (2, 2)), m._mefl(u[:, :, :4], x[:, :4]))  # 2×2 ≤ g
        images = torch.randn(2, 3, 64, 64)
        want = m(images).numpy()
    (got,) = _onnx_run(m, (images,), input_names=["image"], output_names=["probs"])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_gated_gcn_is_equivariant_to_relabelling_the_aus():
    torch.manual_seed(0)
    layer = GatedGCNLayer(6).eval()
    h, e = torch.randn(2, 5, 6), torch.randn(2, 5, 5, 6)
    perm = torch.tensor([3, 0, 4, 1, 2])
    h1, e1 = layer(h, e)
    h2, e2 = layer(h[:, perm], e[:, perm][:, :, perm])
    torch.testing.assert_close(h2, h1[:, perm])
    torch.testing.assert_close(e2, e1[:, perm][:, :, perm])


# -- factory and card ------------------------------------------------------------------------------
def test_card_and_registry(model):
    assert "me_graphau" in list_models()
    card = model.card
    assert card.name == "me_graphau" and card.task == "au" and card.kind == "untrained" and card.multilabel
    assert card.labels == AU_SETS["bp4d"] and card.input_size == SIZE and card.config["k"] == 3
    rebuilt = create_model("me_graphau", **card.config)
    assert rebuilt.card.config == card.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_checkpoint_round_trip(model, images, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.pt")
    loaded = create_model("me_graphau", checkpoint=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


@pytest.mark.parametrize(
    ("kw", "labels", "k"),
    [
        ({}, AU_SETS["bp4d"], 3),
        ({"dataset": "disfa"}, AU_SETS["disfa"], 4),
        ({"num_classes": 8}, AU_SETS["disfa"], 4),
        ({"au_names": ["AU06", "AU12"], "k": 1}, ("AU06", "AU12"), 1),
    ],
)
def test_label_sets(kw, labels, k):
    m = me_graphau(backbone="mobilenet_v2", input_size=64, backbone_kw={"width_mult": 0.35}, dim=16, **kw).eval()
    assert m.card.labels == labels and m.k == k
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, len(labels))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"num_classes": 5}, "matches no known AU set"),
        ({"dataset": "ck+"}, "unknown AU dataset"),
        ({"dataset": "disfa", "num_classes": 12}, "num_classes=12"),
        ({"au_names": ["AU01", "AU01"]}, "unique"),
        ({"k": 13}, "k=13"),
        ({"backbone": "vgg"}, "unknown backbone"),
        ({"edge_grid": 0}, "edge_grid"),
    ],
)
def test_bad_configs_are_model_errors(kw, match):
    with pytest.raises(ModelError, match=match):
        me_graphau(**{"backbone": "resnet18", "input_size": 64, **kw})


# -- export ----------------------------------------------------------------------------------------
def _onnx_run(module, inputs, **kw):
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False, asked for here) warns that it is deprecated
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(module, inputs, buf, dynamo=False, opset_version=17, **kw)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)


def test_onnx_export_gives_the_same_probabilities(model, images):
    with torch.no_grad():
        want = model(images).numpy()
    (got,) = _onnx_run(model, (images,), input_names=["image"], output_names=["probs"])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


class _FGGBranch(torch.nn.Module):
    def __init__(self, gcn, k):
        super().__init__()
        self.gcn, self.k = gcn, k

    def forward(self, v):
        adj = knn_adjacency(v, self.k)
        return adj, self.gcn(v, adj)


def test_onnx_export_of_the_knn_graph():
    torch.manual_seed(0)
    branch, v = _FGGBranch(FGGConv(8).eval(), 3), torch.randn(2, 12, 8)
    with torch.no_grad():
        adj, out = branch(v)
    got_adj, got_out = _onnx_run(branch, (v,))
    np.testing.assert_array_equal(got_adj, adj.numpy())
    np.testing.assert_allclose(got_out, out.numpy(), atol=1e-5, rtol=0)


class _Aux(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_aux(x)


def test_torch_export_takes_the_model_and_its_aux_outputs(model, images):
    with torch.no_grad():
        want = model.forward_aux(images)
    torch.testing.assert_close(torch.export.export(model, (images,)).module()(images), want["probs"])
    got = torch.export.export(_Aux(model), (images,)).module()(images)
    for key in ("probs", "fgg_probs", "edge_logits", "adjacency"):
        torch.testing.assert_close(got[key], want[key])
