"""ME-GraphAU losses against hand-computed values (Eq. 6, 7, 8)."""

from __future__ import annotations

import math

import pytest
import torch

from auflow.models.losses import (
    PAPER_LAMBDA,
    au_class_weights,
    edge_cooccurrence_loss,
    edge_cooccurrence_targets,
    me_graphau_loss,
    weighted_asymmetric_loss,
)


def test_weighted_asymmetric_loss_hand_computed():
    p = torch.tensor([[0.8, 0.3], [0.4, 0.9]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([0.5, 1.5])
    # Eq. (6), per sample -(1/N) Σ w_i [...], then the batch mean
    s0 = 0.5 * math.log(0.8) + 1.5 * 0.3 * math.log(0.7)
    s1 = 0.5 * 0.4 * math.log(0.6) + 1.5 * math.log(0.9)
    want = -(s0 / 2 + s1 / 2) / 2
    assert weighted_asymmetric_loss(p, y, w).item() == pytest.approx(want, rel=1e-6)
    unweighted = -((math.log(0.8) + 0.3 * math.log(0.7)) / 2 + (0.4 * math.log(0.6) + math.log(0.9)) / 2) / 2
    assert weighted_asymmetric_loss(p, y).item() == pytest.approx(unweighted, rel=1e-6)


def test_negative_term_is_down_weighted_by_p():
    y = torch.zeros(1, 1)
    easy, hard = torch.tensor([[0.05]]), torch.tensor([[0.6]])
    # an easy negative weighs p·(-log(1-p)), far below plain BCE
    assert weighted_asymmetric_loss(easy, y).item() == pytest.approx(-0.05 * math.log(0.95), rel=1e-6)
    assert weighted_asymmetric_loss(hard, y).item() == pytest.approx(-0.6 * math.log(0.4), rel=1e-6)


@pytest.mark.parametrize(("detach", "grad"), [(True, 0.3 / 0.7), (False, 0.3 / 0.7 - math.log(0.7))])
def test_focus_weight_gradient(detach, grad):
    p = torch.tensor([[0.3]], requires_grad=True)
    weighted_asymmetric_loss(p, torch.zeros(1, 1), detach_focus=detach).backward()
    assert p.grad.item() == pytest.approx(grad, rel=1e-5)  # d/dp of -p·log(1-p), p held or not


def test_class_weights_favour_rare_aus():
    w = au_class_weights([0.5, 0.25, 0.1])
    # (1/r) / Σ(1/r) = (2, 4, 10) / 16, times N = 3
    torch.testing.assert_close(w, torch.tensor([6 / 16, 12 / 16, 30 / 16]))
    assert w.mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="never occurs"):
        au_class_weights([0.5, 0.0])


def test_edge_targets_follow_the_papers_class_order():
    y = torch.tensor([[1.0, 0.0, 1.0]])
    classes = edge_cooccurrence_targets(y).argmax(-1)[0]
    # class = 2·y_i + y_j: (1,1)→3, (1,0)→2, (0,1)→1, (0,0)→0
    assert classes.tolist() == [[3, 2, 3], [1, 0, 1], [3, 2, 3]]
    assert (edge_cooccurrence_targets(y).sum(-1) == 1).all()


def test_edge_loss_hand_computed():
    y = torch.tensor([[1.0, 0.0]])
    logits = torch.zeros(1, 2, 2, 4)
    assert edge_cooccurrence_loss(logits, y).item() == pytest.approx(math.log(4), rel=1e-6)
    logits[0, 0, 1, 2] = 2.0  # edge (0, 1): AU0 on, AU1 off → class 2, now favoured
    want = (3 * math.log(4) + -math.log(math.e**2 / (math.e**2 + 3))) / 4
    assert edge_cooccurrence_loss(logits, y).item() == pytest.approx(want, rel=1e-6)


def test_soft_targets_reduce_to_hard_ones():
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    logits, p = torch.randn(2, 3, 3, 4), torch.rand(2, 3)
    hard = torch.nn.functional.cross_entropy(logits.reshape(-1, 4), edge_cooccurrence_targets(y).argmax(-1).reshape(-1))
    torch.testing.assert_close(edge_cooccurrence_loss(logits, y), hard)
    assert weighted_asymmetric_loss(p, torch.full_like(p, 0.5)).item() > 0


def test_two_stage_totals():
    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 1.0]])
    out = {"probs": torch.rand(1, 3), "fgg_probs": torch.rand(1, 3), "edge_logits": torch.randn(1, 3, 3, 4)}
    s1 = me_graphau_loss(out, y, stage=1)
    assert s1["loss"].item() == pytest.approx(weighted_asymmetric_loss(out["fgg_probs"], y).item())
    s2 = me_graphau_loss(out, y, stage=2)
    want = weighted_asymmetric_loss(out["probs"], y) + PAPER_LAMBDA * edge_cooccurrence_loss(out["edge_logits"], y)
    assert s2["loss"].item() == pytest.approx(want.item())  # Eq. (8)
    with pytest.raises(ValueError, match="stage"):
        me_graphau_loss(out, y, stage=3)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        weighted_asymmetric_loss(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="one per AU"):
        weighted_asymmetric_loss(torch.rand(2, 3), torch.rand(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match="edge_logits"):
        edge_cooccurrence_loss(torch.rand(2, 3, 3, 2), torch.rand(2, 3))
