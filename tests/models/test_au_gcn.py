"""AU-GCN (paper 002): ROI rules, the co-occurrence graph, the network, export, and its losses."""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
import pytest
import torch
from model_checks import assert_batch_independent

from auflow.engine.errors import ModelError
from auflow.models import create_model, list_models, save_checkpoint
from auflow.models.au import au_gcn_rois as rois_mod
from auflow.models.au.au_gcn import (
    PAPER_RELATIONS,
    AUGCN,
    au_gcn,
    cooccurrence_prior,
    normalized_adjacency,
    paper_relation,
    relation_matrix,
    roi_adjacency,
)
from auflow.models.au.au_gcn_rois import mean_face_in_crop, roi_layout
from auflow.models.au.losses_topo_gcn import (
    PAPER_LAMBDA1,
    PAPER_LAMBDA2,
    au_gcn_loss,
    dice_loss,
    reconstruction_l1_loss,
    roi_multilabel_loss,
    weighted_multilabel_softmax_loss,
)
from auflow.models.au.me_graphau import AU_SETS

SIZE = 112


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return au_gcn(input_size=SIZE).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(4, 3, SIZE, SIZE)


# -- ROIs (Sec. 3.2) -------------------------------------------------------------------------------
def test_roi_counts_are_the_papers():
    bp4d, disfa = roi_layout(AU_SETS["bp4d"]), roi_layout(AU_SETS["disfa"])
    assert bp4d.num_rois == 19 and disfa.num_rois == 14  # R of Sec. 4.1
    assert bp4d.roi_names[-1] == "face" and bp4d.membership[-1].all()
    # AU12, AU14, AU15 share a ROI pair; AU23 and AU24 share one
    aus = list(AU_SETS["bp4d"])
    share = bp4d.membership[:, [aus.index(a) for a in ("AU12", "AU14", "AU15")]]
    assert (share[:-1].sum(0) == 2).all() and (share == share[:, :1]).all()
    assert (bp4d.membership[:, aus.index("AU23")] == bp4d.membership[:, aus.index("AU24")]).all()
    # DISFA's AU09 has one ROI, every other AU two (plus the face)
    d_aus = list(AU_SETS["disfa"])
    assert disfa.membership[:-1, d_aus.index("AU09")].sum() == 1
    assert len(bp4d.pairs) == 9 and len(disfa.pairs) == 6


def test_unknown_au_has_no_roi_rule():
    with pytest.raises(ModelError, match="no ROI rule for \\['AU43'\\]"):
        au_gcn(au_names=["AU01", "AU43"])


def test_templates_agree_with_the_aligner():
    from auflow.plugins.align import ARCFACE_112, arcface_template, similarity_transform

    np.testing.assert_array_equal(rois_mod.ARCFACE_112.astype(np.float32), ARCFACE_112)
    src = rois_mod.five_points(rois_mod.MEAN_FACE_68)
    np.testing.assert_allclose(rois_mod._similarity(src, ARCFACE_112.astype(np.float64)), similarity_transform(src, ARCFACE_112), atol=1e-9)
    for scale in (1.0, 1.25):
        five = rois_mod.five_points(mean_face_in_crop(112, crop_scale=scale))
        # the mean face's 5 points land on the aligner's template, to within the fit's residual
        assert np.abs(five - arcface_template(112, scale)).max() < 2.0 / scale
    np.testing.assert_allclose(mean_face_in_crop(224), (mean_face_in_crop(112) + 0.5) * 2 - 0.5)


def _roi_centres_px(lm: np.ndarray, layout) -> np.ndarray:
    """EAC-Net's rules written out by hand (y offsets in inner-eye-corner distances)."""
    s = np.linalg.norm(lm[39] - lm[42])
    up = np.array([0.0, -1.0])
    rules = {
        "inner_brow": (lm[21] + up * s / 2, lm[22] + up * s / 2),
        "outer_brow": (lm[18] + up * s / 3, lm[25] + up * s / 3),
        "brow_center": (lm[19] - up * s / 3, lm[24] - up * s / 3),
        "cheek": (lm[41] - up * s, lm[46] - up * s),
        "eye": (lm[38], lm[43]),
        "nose": ((lm[32] + lm[34]) / 2 + up * s / 2,),
        "upper_lip": (lm[61], lm[63]),
        "lip_corner": (lm[48], lm[54]),
        "chin": (lm[58] - up * s / 2, lm[56] - up * s / 2),
        "lip_center": (lm[51], lm[57]),
    }
    seen, out = [], []
    for region in layout.regions[:-1]:
        if region not in seen:
            seen.append(region)
            out.extend(rules[region])
    return np.array(out + [[(SIZE - 1) / 2, (SIZE - 1) / 2]])


@pytest.mark.parametrize("dataset", ["bp4d", "disfa"])
def test_fixed_rois_sit_where_the_rules_put_them(dataset):
    """A ramp image (pixel value = its own coordinate) read through the ROIs: bilinear sampling of a
    ramp is exact, so each patch tells where it was cut from."""
    m = au_gcn(dataset=dataset, input_size=SIZE).eval()
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    ramp = torch.stack([xs, ys, xs]).unsqueeze(0)
    with torch.no_grad():
        patches = m.extract_rois(ramp)  # (1, R, 3, n, n)
    centres = patches[0, :, :2].mean(dim=(-1, -2)).numpy()
    want = _roi_centres_px(mean_face_in_crop(SIZE), m.layout)
    inside = (want > 8) & (want < SIZE - 8)  # the border clamps ROIs that leave the crop (the chin)
    np.testing.assert_allclose(centres[inside], want[inside], atol=1e-3)
    side = SIZE * 25 / 200  # the paper's 25 px on a 200 px face
    x_span = patches[0, 0, 0, 0, -1] - patches[0, 0, 0, 0, 0]  # first and last sample of a row
    assert x_span.item() == pytest.approx(side * (1 - 1 / 25), abs=1e-3)
    face_x = patches[0, -1, 0, 0]
    assert face_x[0].item() == pytest.approx(SIZE / 25 / 2 - 0.5, abs=1e-3)  # the face ROI spans the crop


def test_landmark_rois_equal_fixed_rois_for_the_mean_face_and_follow_the_face(model, images):
    lm = torch.tensor(mean_face_in_crop(SIZE), dtype=torch.float32).expand(4, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(model.extract_rois(images, lm), model.extract_rois(images), atol=1e-4, rtol=0)
        ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij")
        ramp = torch.stack([xs, ys, xs]).unsqueeze(0)
        moved = model.extract_rois(ramp, lm[:1] + torch.tensor([5.0, -3.0]))
        fixed = model.extract_rois(ramp)
    shift = (moved - fixed)[0, :-1, :2].mean(dim=(-1, -2))  # every landmark ROI follows the face …
    torch.testing.assert_close(shift[:4], torch.tensor([[5.0, -3.0]] * 4), atol=1e-3, rtol=0)
    torch.testing.assert_close(moved[0, -1], fixed[0, -1])  # … the whole-face ROI stays the crop
    with pytest.raises(ModelError, match="landmarks must be"):
        model.extract_rois(images, torch.zeros(4, 5, 2))


# -- the graph (Sec. 3.4) --------------------------------------------------------------------------
def test_cooccurrence_prior_and_eq4_eq5_hand_computed():
    labels = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    p = cooccurrence_prior(labels)
    # counts 3, 2, 2; joint (0,1) = 1, (0,2) = 0, (1,2) = 1; row i is P(j | i)
    torch.testing.assert_close(p, torch.tensor([[1, 1 / 3, 0], [1 / 2, 1, 1 / 2], [0, 1 / 2, 1]]))
    # Eq. (4): M_sym(0,1) = 1/3 + 1/2 = 5/6, (1,2) = 1, (0,2) = 0; Eq. (5) at h = 1 and h = 0.8
    torch.testing.assert_close(relation_matrix(p, 1.0), torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 1, 1]]))
    torch.testing.assert_close(relation_matrix(p, 0.8), torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]]))


def test_an_au_that_never_occurs_relates_to_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        p = cooccurrence_prior(np.array([[1, 0], [1, 0]]))
    assert "never occur" in caplog.text
    torch.testing.assert_close(p, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cooccurrence_prior(np.array([[2, 0]]))


@pytest.mark.parametrize("dataset", ["bp4d", "disfa"])
def test_table1_is_a_symmetric_relation_matrix(dataset):
    rel = paper_relation(dataset)
    assert rel.shape == (len(AU_SETS[dataset]),) * 2 and len(PAPER_RELATIONS[dataset]) == rel.shape[0]
    torch.testing.assert_close(rel, rel.T)  # M_sym is symmetric, so its threshold must be
    assert (rel.diagonal() == 1).all()
    torch.testing.assert_close(relation_matrix(rel, 1.0), rel)  # as a prior it gives itself back


def test_roi_graph_follows_the_four_rules():
    layout = roi_layout(AU_SETS["disfa"])
    g = roi_adjacency(paper_relation("disfa"), layout)
    names = layout.roi_names
    idx = {n: i for i, n in enumerate(names)}
    torch.testing.assert_close(g, g.T)
    assert (g.diagonal() == 1).all() and (g[-1] == 1).all()  # self loops; the face node to all
    assert g[idx["inner_brow_left"], idx["inner_brow_right"]] == 1  # symmetric partners
    assert g[idx["lip_center_up"], idx["lip_center_down"]] == 1
    assert g[idx["brow_center_left"], idx["nose_mid"]] == 1  # Table 1: AU4 – AU9
    assert g[idx["cheek_right"], idx["lip_center_up"]] == 1  # AU6 – AU25
    assert g[idx["inner_brow_left"], idx["brow_center_left"]] == 0  # AU1 – AU4: not related
    assert g[idx["lip_corner_left"], idx["nose_mid"]] == 0  # AU12 – AU9: not related


def test_normalized_adjacency_hand_computed():
    g = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])  # degrees 2, 3, 2
    a, b = 1 / 2, 1 / math.sqrt(6)
    torch.testing.assert_close(normalized_adjacency(g), torch.tensor([[a, b, 0], [b, 1 / 3, b], [0, b, a]]))


def test_the_model_uses_its_prior(images):
    torch.manual_seed(0)
    m = au_gcn(input_size=SIZE).eval()
    assert m.card.training["graph"]["source"] == "paper Table 1 (bp4d)"
    torch.testing.assert_close(m.relation, paper_relation("bp4d"))
    with torch.no_grad():
        before = m(images)
        m.set_cooccurrence_prior(torch.eye(12), source="test")
        after = m(images)
    assert (before - after).abs().max() > 1e-6
    assert m.card.training["graph"] == {"source": "test", "threshold": 1.0}
    with pytest.raises(ModelError, match="prior must be"):
        m.set_cooccurrence_prior(torch.eye(3))
    with pytest.raises(ModelError, match=r"\[0, 1\]"):
        m.set_cooccurrence_prior(torch.full((12, 12), 2.0))


def test_a_custom_au_set_starts_uniform_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        m = au_gcn(au_names=["AU06", "AU12", "AU26"], input_size=64)
    assert "set_cooccurrence_prior" in caplog.text
    assert m.card.training["graph"]["source"].startswith("uniform")
    assert (m.adjacency == 1).all()  # every AU pair related: no information, no structure
    assert AUGCN.cooccurrence_prior is cooccurrence_prior


# -- the network -----------------------------------------------------------------------------------
def test_eval_output_is_au_probabilities(model, images):
    with torch.no_grad():
        p = model(images)
    assert p.shape == (4, 12) and torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert p.std() > 0


def test_aux_outputs(model, images):
    with torch.no_grad():
        out = model.forward_aux(images)
        plain = model(images)
    b, r, c = 4, 19, 12
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "probs": (b, c), "logits": (b, c), "roi_logits": (b, r, c), "rois": (b, r, 3, 25, 25),
        "recon": (b, r, 3, 25, 25), "membership": (r, c), "latents": (b, r, 150), "nodes": (b, r, 12)}
    torch.testing.assert_close(out["probs"], plain)


def test_gcn_is_eq6_with_dropout_then_relu(model):
    torch.manual_seed(0)
    z0 = torch.randn(2, 19, 150)
    g = normalized_adjacency(model.adjacency)
    with torch.no_grad():
        logits, z2 = model._predict(z0)
        z1 = torch.relu(g @ z0 @ model.gcn[0].weight.T)  # Z1 = ReLU(Ĝ Z0 W0)
        want = torch.relu(g @ z1 @ model.gcn[1].weight.T)
    torch.testing.assert_close(z2, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, model.classifier(want.flatten(1)), atol=1e-5, rtol=0)


def test_each_roi_has_its_own_auto_encoder(model, images):
    """Changing the pixels of one ROI changes that ROI's latent only (weights are not shared)."""
    with torch.no_grad():
        rois = model.extract_rois(images)
        z = model.autoencoders.encode(rois)
        rois2 = rois.clone()
        rois2[:, 3] += 1.0
        z2 = model.autoencoders.encode(rois2)
    changed = (z2 - z).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [i == 3 for i in range(19)]


def test_batch_of_one_equals_the_same_sample_in_a_batch(model, images):
    assert_batch_independent(model, images, atol=1e-5)


def test_every_parameter_gets_a_finite_grad_over_both_stages():
    torch.manual_seed(0)
    m = au_gcn(dataset="disfa", input_size=64).train()
    y = (torch.rand(3, 8) > 0.5).float()
    out = m.forward_aux(torch.randn(3, 3, 64, 64))
    (au_gcn_loss(out, y, stage=1)["loss"] + au_gcn_loss(out, y, stage=2)["loss"]).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_card_registry_and_checkpoint_keep_the_graph(images, tmp_path):
    assert "au_gcn" in list_models()
    m = au_gcn(dataset="disfa", input_size=SIZE).eval()
    assert m.card.labels == AU_SETS["disfa"] and m.card.kind == "untrained" and m.num_rois == 14
    m.set_cooccurrence_prior(cooccurrence_prior((torch.rand(50, 8) > 0.6).float()), threshold=0.9)
    loaded = create_model("au_gcn", checkpoint=save_checkpoint(m, tmp_path / "g.pt")).eval()
    torch.testing.assert_close(loaded.adjacency, m.adjacency)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), m(images))
    assert "fixed_grid" not in m.state_dict() and "adjacency" in m.state_dict()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"relation": "learned"}, "relation must be"),
        ({"roi_size": 4}, "too small"),
        ({"roi_ratio": 0.0}, "roi_ratio"),
        ({"gcn_dims": []}, "bad sizes"),
        ({"dataset": "emotionet"}, "unknown AU dataset"),
    ],
)
def test_bad_configs_are_model_errors(kw, match):
    with pytest.raises(ModelError, match=match):
        au_gcn(**kw)


# -- export with per-face landmarks ----------------------------------------------------------------
class _WithLandmarks(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, landmarks):
        return self.model(x, landmarks)


def test_landmark_input_exports(model, images):
    import onnxruntime as ort

    torch.manual_seed(2)
    lm = torch.tensor(mean_face_in_crop(SIZE), dtype=torch.float32) + torch.randn(4, 68, 2)
    wrapped = _WithLandmarks(model).eval()
    with torch.no_grad():
        want = model(images, lm)
    torch.testing.assert_close(torch.export.export(wrapped, (images, lm)).module()(images, lm), want)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        torch.onnx.export(wrapped, (images, lm), buf, dynamo=False, opset_version=17, input_names=["image", "landmarks"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"image": images.numpy(), "landmarks": lm.numpy()})
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


# -- losses, Eq. (1)-(3), (7)-(9) ------------------------------------------------------------------
def test_reconstruction_loss_is_eq1():
    rois = torch.zeros(1, 2, 3, 2, 2)
    recon = rois.clone()
    recon[0, 0, 0, 0, 0] = 1.2  # |·| summed over the n² pixels / n², per ROI and channel, then averaged
    recon[0, 1, 2, 1, 1] = -0.6
    assert reconstruction_l1_loss(recon, rois).item() == pytest.approx((1.2 + 0.6) / (2 * 3 * 4), rel=1e-6)


def test_roi_loss_is_eq2_with_the_region_constraint():
    p = torch.tensor([[[0.8, 0.3], [0.4, 0.9]]])  # 1 sample, R = 2 ROIs, C = 2 AUs
    y = torch.tensor([[1.0, 1.0]])
    member = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # AU 1 does not belong to ROI 0: its Y^ROI is 0
    # ROI 0: Y = (1, 0): -(log 0.8 + log 0.7)/2; ROI 1: Y = (1, 1): -(log 0.4 + log 0.9)/2; mean over ROIs
    want = (-(math.log(0.8) + math.log(0.7)) / 2 - (math.log(0.4) + math.log(0.9)) / 2) / 2
    assert roi_multilabel_loss(torch.logit(p), y, member).item() == pytest.approx(want, rel=1e-5)


def test_weighted_multilabel_softmax_loss_is_eq7():
    p = torch.tensor([[0.8, 0.3], [0.4, 0.9]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([0.5, 1.5])
    s0 = 0.5 * math.log(0.8) + 1.5 * math.log(0.7)  # plain cross entropy: no p focus on negatives
    s1 = 0.5 * math.log(0.6) + 1.5 * math.log(0.9)
    want = -(s0 / 2 + s1 / 2) / 2
    assert weighted_multilabel_softmax_loss(torch.logit(p), y, w).item() == pytest.approx(want, rel=1e-5)


def test_dice_loss_is_eq8():
    p = torch.tensor([[0.8, 0.3], [0.4, 0.9]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w, eps = torch.tensor([0.5, 1.5]), 1.0

    def d(yi, pi):
        return 1 - (2 * yi * pi + eps) / (yi**2 + pi**2 + eps)

    want = ((0.5 * d(1, 0.8) + 1.5 * d(0, 0.3)) / 2 + (0.5 * d(0, 0.4) + 1.5 * d(1, 0.9)) / 2) / 2
    assert dice_loss(p, y, w, eps).item() == pytest.approx(want, rel=1e-6)
    # over the batch: sums over samples inside, per AU
    d0 = 1 - (2 * 0.8 + eps) / (1 + 0.8**2 + 0.4**2 + eps)
    d1 = 1 - (2 * 0.9 + eps) / (1 + 0.3**2 + 0.9**2 + eps)
    assert dice_loss(p, y, w, eps, over_batch=True).item() == pytest.approx((0.5 * d0 + 1.5 * d1) / 2, rel=1e-6)
    assert dice_loss(y, y).item() == pytest.approx(0.0, abs=1e-7)  # a perfect prediction costs nothing


def test_two_stage_totals_are_eq3_and_eq9():
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 1.0]])
    out = {"logits": torch.randn(1, 3), "roi_logits": torch.randn(1, 2, 3), "membership": torch.ones(2, 3),
           "rois": torch.randn(1, 2, 3, 4, 4), "recon": torch.randn(1, 2, 3, 4, 4)}
    s1 = au_gcn_loss(out, y, stage=1)
    want1 = roi_multilabel_loss(out["roi_logits"], y, out["membership"]) + PAPER_LAMBDA1 * reconstruction_l1_loss(out["recon"], out["rois"])
    assert s1["loss"].item() == pytest.approx(want1.item(), rel=1e-6)
    s2 = au_gcn_loss(out, y, stage=2)
    want2 = weighted_multilabel_softmax_loss(out["logits"], y) + PAPER_LAMBDA2 * dice_loss(torch.sigmoid(out["logits"]), y)
    assert s2["loss"].item() == pytest.approx(want2.item(), rel=1e-6)
    assert (PAPER_LAMBDA1, PAPER_LAMBDA2) == (3.0, 4.0)
    with pytest.raises(ValueError, match="stage"):
        au_gcn_loss(out, y, stage=3)
