"""Training losses of Topo-AU (paper 000) and AU-GCN (paper 002).

Topo-AU (Sec. 3.2.2): L = L_WA (Eq. 17). Its weighted asymmetric loss, Eq. (15), is term for term
ME-GraphAU's Eq. (6), and its weights, Eq. (16) w_i = Num·(1/r_i) / Σ_j (1/r_j), are exactly what
:func:`auflow.models.losses.au_class_weights` returns; the authors' released code for both papers
uses the same ``WeightedAsymmetricLoss`` (focus weight p_i detached). So :func:`topo_au_loss`
reuses :func:`auflow.models.losses.weighted_asymmetric_loss` rather than restating it.

AU-GCN:
- :func:`reconstruction_l1_loss` — L_R, Eq. (1)
- :func:`roi_multilabel_loss` — L_ROI_softmax, Eq. (2), on each ROI's own AU prediction
- :func:`roi_loss` — L_ROI = L_ROI_softmax + λ1 L_R, Eq. (3) (stage 1, the auto-encoders)
- :func:`weighted_multilabel_softmax_loss` — L_softmax, Eq. (7): the paper's name for a weighted
  binary cross-entropy over the C AUs (a sigmoid per AU, not a softmax over them)
- :func:`dice_loss` — L_dice, Eq. (8)
- :func:`au_detection_loss` — L_au = L_softmax + λ2 L_dice, Eq. (9) (stage 2, all modules)
- :func:`au_gcn_loss` — the two stages on ``model.forward_aux(x)``

Targets are (B, C) in [0, 1]: 0/1 labels as the papers', or soft teacher probabilities for
distillation (every loss here reduces to the paper's form on 0/1 labels). Class weights w_i are
:func:`auflow.models.losses.au_class_weights` (both papers define them the same way), or None.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from auflow.models.losses import weighted_asymmetric_loss

__all__ = [
    "PAPER_LAMBDA1",
    "PAPER_LAMBDA2",
    "au_detection_loss",
    "au_gcn_loss",
    "dice_loss",
    "reconstruction_l1_loss",
    "roi_loss",
    "roi_multilabel_loss",
    "topo_au_loss",
    "weighted_multilabel_softmax_loss",
]

#: λ1 of Eq. (3) and λ2 of Eq. (9), AU-GCN Sec. 4.1 (chosen there by cross validation)
PAPER_LAMBDA1 = 3.0
PAPER_LAMBDA2 = 4.0


def _check_pair(a: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if a.shape != y.shape or a.ndim != 2:
        raise ValueError(f"{what} and targets must both be (B, C), got {tuple(a.shape)} and {tuple(y.shape)}")


def _weighted(per_au: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_au
    if weights.shape != (per_au.shape[-1],):
        raise ValueError(f"weights must be ({per_au.shape[-1]},), one per AU, got {tuple(weights.shape)}")
    return per_au * weights.to(per_au)


# -- Topo-AU ----------------------------------------------------------------------------------------
def topo_au_loss(
    outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Eq. (17): L = L_WA (Eq. 15, weights of Eq. 16) on ``forward_aux(x)["probs"]``.

    Returns ``{"loss", "wa"}`` (equal: the paper has no other term).
    """
    wa = weighted_asymmetric_loss(outputs["probs"], targets, weights)
    return {"loss": wa, "wa": wa}


# -- AU-GCN, stage 1 --------------------------------------------------------------------------------
def reconstruction_l1_loss(recon: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Eq. (1): L_R = (1/n²) Σ_ij |I^GT_ij − I^R_ij| per ROI; averaged over colour channels, ROIs
    and batch. ``recon``, ``rois``: (B, R, 3, n, n). The ROIs are targets: no gradient flows into
    them (they are crops of the input)."""
    if recon.shape != rois.shape:
        raise ValueError(f"recon and rois must have one shape, got {tuple(recon.shape)} and {tuple(rois.shape)}")
    return (recon - rois.detach()).abs().mean()


def roi_multilabel_loss(roi_logits: torch.Tensor, targets: torch.Tensor, membership: torch.Tensor) -> torch.Tensor:
    """Eq. (2): L_ROI_softmax = −(1/C) Σ_c [Y^ROI_rc log Ŷ^ROI_rc + (1 − Y^ROI_rc) log(1 − Ŷ^ROI_rc)],
    averaged over the R ROIs and the batch.

    Y^ROI_rc = y_c where AU c belongs to ROI r (``membership`` (R, C), 1 for the whole face), else
    0, as the paper's constraint requires. ``roi_logits`` (B, R, C): Ŷ^ROI = σ(logits).
    """
    b, r, c = roi_logits.shape
    if targets.shape != (b, c) or membership.shape != (r, c):
        raise ValueError(f"roi_logits {tuple(roi_logits.shape)} need targets ({b}, {c}) and membership ({r}, {c}), "
                         f"got {tuple(targets.shape)} and {tuple(membership.shape)}")
    y_roi = targets.to(roi_logits.dtype).unsqueeze(1) * membership.to(roi_logits)
    return F.binary_cross_entropy_with_logits(roi_logits, y_roi)


def roi_loss(outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, lambda1: float = PAPER_LAMBDA1) -> dict[str, torch.Tensor]:
    """Eq. (3): L_ROI = L_ROI_softmax + λ1 L_R. Returns ``{"loss", "roi", "recon"}``."""
    roi = roi_multilabel_loss(outputs["roi_logits"], targets, outputs["membership"])
    recon = reconstruction_l1_loss(outputs["recon"], outputs["rois"])
    return {"loss": roi + lambda1 * recon, "roi": roi, "recon": recon}


# -- AU-GCN, stage 2 --------------------------------------------------------------------------------
def weighted_multilabel_softmax_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. (7): L_softmax = −(1/C) Σ_i w_i [Y_i log Ŷ_i + (1 − Y_i) log(1 − Ŷ_i)], Ŷ = σ(logits),
    mean over the batch. Computed from logits (the same value, without log(0) at saturation)."""
    _check_pair(logits, targets, "logits")
    per_au = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return _weighted(per_au, weights).mean(dim=1).mean()


def dice_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    eps: float = 1.0,
    over_batch: bool = False,
) -> torch.Tensor:
    """Eq. (8): L_dice = (1/C) Σ_i w_i (1 − (2 Y_i Ŷ_i + ε) / (Y_i² + Ŷ_i² + ε)).

    As written, per sample (then the batch mean). ``over_batch=True`` sums numerator and
    denominator over the batch first — the form of JAA-Net's released ``au_dice_loss`` that AU
    works often use, closer to a dataset-level F1. ε ("the smooth term", not given) defaults to 1,
    JAA-Net's ``smooth``.
    """
    _check_pair(probs, targets, "probs")
    y = targets.to(probs.dtype)
    if over_batch:
        dice = (2 * (y * probs).sum(0) + eps) / ((y * y).sum(0) + (probs * probs).sum(0) + eps)
        return _weighted(1 - dice, weights).mean()
    dice = (2 * y * probs + eps) / (y * y + probs * probs + eps)
    return _weighted(1 - dice, weights).mean(dim=1).mean()


def au_detection_loss(
    outputs: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    lambda2: float = PAPER_LAMBDA2,
    eps: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Eq. (9): L_au = L_softmax + λ2 L_dice. Returns ``{"loss", "softmax", "dice"}``."""
    softmax = weighted_multilabel_softmax_loss(outputs["logits"], targets, weights)
    dice = dice_loss(torch.sigmoid(outputs["logits"]), targets, weights, eps)
    return {"loss": softmax + lambda2 * dice, "softmax": softmax, "dice": dice}


def au_gcn_loss(outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, stage: int, weights: torch.Tensor | None = None,
                lambda1: float = PAPER_LAMBDA1, lambda2: float = PAPER_LAMBDA2) -> dict[str, torch.Tensor]:
    """The paper's two stages (Sec. 4.1) on ``model.forward_aux(x)``:

    - stage 1 (auto-encoders, 12 epochs): L_ROI, Eq. (3)
    - stage 2 (all modules, 40 epochs): L_au, Eq. (9)
    """
    if stage == 1:
        return roi_loss(outputs, targets, lambda1)
    if stage == 2:
        return au_detection_loss(outputs, targets, weights, lambda2)
    raise ValueError(f"stage must be 1 (auto-encoders, L_ROI) or 2 (all modules, L_au), got {stage!r}")
