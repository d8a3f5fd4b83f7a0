"""Training losses of ME-GraphAU (Luo et al., IJCAI 2022, Sec. 2.3).

- :func:`weighted_asymmetric_loss` — L_WA, Eq. (6), on AU probabilities.
- :func:`edge_cooccurrence_loss` — L_E, Eq. (7), 4-way co-occurrence of every AU pair.
- :func:`me_graphau_loss` — stage 1: L_WA on the FGG prediction; stage 2: Eq. (8),
  L = L_WA + λ L_E on the GatedGCN prediction and its edges.

Targets are (B, N) in [0, 1]: hard labels as the paper's, or soft teacher probabilities for
distillation (both losses reduce to the paper's form on 0/1 labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_LAMBDA",
    "au_class_weights",
    "edge_cooccurrence_loss",
    "edge_cooccurrence_targets",
    "me_graphau_loss",
    "weighted_asymmetric_loss",
]

#: λ of Eq. (8), Sec. 3.1: 0.05 for ResNet backbones (0.01 for Swin Transformer)
PAPER_LAMBDA = 0.05


def au_class_weights(occurrence_rates: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """w_i of Eq. (6) from each AU's occurrence rate r_i in the training set, scaled to mean 1.

    The paper writes w_i = (1/r_i) / Σ_j (1/r_j), which sums to 1; these are N times that, as in
    the authors' released code (``AU_weight / AU_weight.sum() * N``). The relative weights are
    the paper's; the scale keeps L_WA comparable to a plain BCE, the scale at which λ = 0.05 of
    Eq. (8) was tuned.
    """
    r = torch.as_tensor(occurrence_rates, dtype=torch.float32)
    if r.ndim != 1 or r.numel() == 0:
        raise ValueError(f"occurrence_rates must be a non-empty 1-D sequence, got shape {tuple(r.shape)}")
    if not bool(((r > 0) & (r <= 1)).all()):
        raise ValueError(f"occurrence rates must lie in (0, 1], got {r.tolist()}: an AU that never occurs cannot be weighted by 1/r")
    inv = 1.0 / r
    return inv / inv.sum() * r.numel()


def weighted_asymmetric_loss(
    probs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    eps: float = 1e-8,
    detach_focus: bool = True,
) -> torch.Tensor:
    """Eq. (6): L_WA = -(1/N) Σ_i w_i [y_i log p_i + (1 - y_i) p_i log(1 - p_i)], mean over the batch.

    ``probs``, ``targets``: (B, N); ``weights``: (N,) or None for w_i = 1 (see
    :func:`au_class_weights`). The factor p_i of the negative term down-weights easy negatives;
    with ``detach_focus`` (default, as the authors' code) it is a weight and carries no gradient.
    """
    if probs.shape != targets.shape or probs.ndim != 2:
        raise ValueError(f"probs and targets must both be (B, N), got {tuple(probs.shape)} and {tuple(targets.shape)}")
    y = targets.to(probs.dtype)
    focus = probs.detach() if detach_focus else probs
    pos = y * torch.log(probs.clamp(min=eps))
    neg = (1.0 - y) * focus * torch.log((1.0 - probs).clamp(min=eps))
    per_au = pos + neg  # (B, N)
    if weights is not None:
        if weights.shape != (probs.shape[1],):
            raise ValueError(f"weights must be ({probs.shape[1]},), one per AU, got {tuple(weights.shape)}")
        per_au = per_au * weights.to(per_au)
    return -per_au.mean(dim=1).mean()


def edge_cooccurrence_targets(targets: torch.Tensor) -> torch.Tensor:
    """Class distribution (B, N, N, 4) of each pair (i, j), classes in the paper's order (Sec. 2.3):
    0 both inactive, 1 i inactive & j active, 2 i active & j inactive, 3 both active
    (class = 2·y_i + y_j). One-hot for 0/1 labels; for soft labels, the product of the two AUs'
    Bernoulli distributions."""
    y = targets.to(torch.float32)
    yi, yj = y.unsqueeze(2), y.unsqueeze(1)  # (B, N, 1), (B, 1, N)
    return torch.stack(((1 - yi) * (1 - yj), (1 - yi) * yj, yi * (1 - yj), yi * yj), dim=-1)


def edge_cooccurrence_loss(edge_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (7): L_E = -(1/|E|) Σ_e Σ_c y^e_c log softmax(p^e)_c over all N×N directed edges (mean
    over the batch too). ``edge_logits`` (B, N, N, 4) from the shared FC on e^L_ij; ``targets`` (B, N)."""
    b, n = targets.shape
    if edge_logits.shape != (b, n, n, 4):
        raise ValueError(f"edge_logits must be ({b}, {n}, {n}, 4) for targets {tuple(targets.shape)}, got {tuple(edge_logits.shape)}")
    y_e = edge_cooccurrence_targets(targets).to(edge_logits.dtype)
    return -(y_e * F.log_softmax(edge_logits, dim=-1)).sum(dim=-1).mean()


def me_graphau_loss(
    outputs: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    stage: int,
    weights: torch.Tensor | None = None,
    lam: float = PAPER_LAMBDA,
) -> dict[str, torch.Tensor]:
    """The paper's two-stage objective on ``model(x, return_aux=True)``'s outputs.

    - stage 1 (backbone + ANFL): L = L_WA(fgg_probs, y), Eq. (6)
    - stage 2 (MEFL + GatedGCN): L = L_WA(probs, y) + λ L_E(edge_logits, y), Eq. (8)

    Returns ``{"loss", "wa"}`` plus ``"edge"`` in stage 2.
    """
    if stage == 1:
        wa = weighted_asymmetric_loss(outputs["fgg_probs"], targets, weights)
        return {"loss": wa, "wa": wa}
    if stage == 2:
        wa = weighted_asymmetric_loss(outputs["probs"], targets, weights)
        edge = edge_cooccurrence_loss(outputs["edge_logits"], targets)
        return {"loss": wa + lam * edge, "wa": wa, "edge": edge}  # Eq. (8)
    raise ValueError(f"stage must be 1 (ANFL) or 2 (MEFL + GatedGCN), got {stage!r}")
