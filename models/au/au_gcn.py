"""AU-GCN: relation modeling with graph convolutional networks for facial AU detection
(Liu, Dong, Zhang, Wang, Dang; MMM 2020).

Pipeline (paper Sec. 3, Fig. 1), dense with static shapes so torch.export and ONNX take it:

    crop → R ROIs (B, R, 3, n, n)      AU regions from landmarks (Sec. 3.2; :mod:`.au_gcn_rois`)
    R auto-encoders → Z0 (B, R, d0)     latent per ROI; decoders and ROI heads train it (Eq. 1-3)
    GCN  Z_{l+1} = ReLU(Dropout(Ĝ Z_l W_l)), l = 0, 1          Eq. (6)   (B, R, d2)
    FC on flatten(Z2) → C logits → sigmoid                     Sec. 3.6  AU probabilities

ROIs: by default from a mean face placed in auflow's aligned crop (fixed sampling grid, one input);
``forward(x, landmarks)`` places them from per-face 68-point landmarks, as the paper does.
ROI crops are bilinear ``grid_sample`` reads, so both paths have static shapes and export.

The graph (Sec. 3.4): M_ij = P(AU j = 1 | AU i = 1) on the training labels
(:func:`cooccurrence_prior`), M_sym = M + Mᵀ (Eq. 4), M_bool = [M_sym ≥ h] (Eq. 5); then over
the R ROIs: every node to itself, each ROI to its symmetric partner, all ROIs of AU i to all ROIs
of AU j where M_bool_ij = 1, and the whole-face node to every node. By default the model carries
the paper's own M_bool (Table 1) for BP4D and DISFA; another AU set starts from a uniform prior
(every AU pair related) until :meth:`AUGCN.set_cooccurrence_prior` is given one from its labels.
Ĝ = D^-1/2 G D^-1/2: Eq. (6) writes G, but the paper applies the GCN of Kipf & Welling ([9]),
whose propagation is renormalised so that a node's scale does not grow with its degree (the
face node has R − 1 neighbours).

The auto-encoders are not specified beyond Fig. 2(b); here each is three stride-2 3×3
convolutions (3 → 16 → 32 → 16 channels, 25 → 13 → 7 → 4 pixels) and an FC to d0, mirrored by
transposed convolutions. All R run as grouped convolutions (one op for all ROIs, weights not
shared). BP4D's model has 1.9 M parameters (the paper: "about 2.3 million").

Training (Sec. 4.1): stage 1, the auto-encoders with L_ROI (Eq. 3) for 12 epochs; stage 2, all
modules with L_au (Eq. 9) for 40; see :func:`auflow.models.au.losses_topo_gcn.au_gcn_loss`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auflow.engine.errors import ModelError
from auflow.models import register_model
from auflow.models.au.au_gcn_rois import (
    INNER_EYE_CORNERS,
    NUM_LANDMARKS,
    PAPER_ROI_RATIO,
    RoiLayout,
    mean_face_in_crop,
    roi_layout,
    to_normalized,
)
from auflow.models.au.me_graphau import AU_SETS, resolve_au_names
from auflow.models.card import ModelCard

log = logging.getLogger(__name__)

#: Table 1 of the paper: M_bool for BP4D and DISFA, rows and columns in AU_SETS order
PAPER_RELATIONS: dict[str, tuple[str, ...]] = {
    "bp4d": (
        "110001000000", "110001100000", "001010000000", "000111111100", "001111111110", "110111111110",
        "010111111110", "000111111111", "000111111100", "000111111111", "000011110110", "000000010101",
    ),
    "disfa": ("11000000", "11000000", "00101000", "00010110", "00101000", "00010110", "00010111", "00000011"),
}
#: h of Eq. (5). The paper does not give it; 1.0 connects i and j when P(j|i) + P(i|j) ≥ 1, i.e.
#: when the two conditionals average at least 1/2
DEFAULT_THRESHOLD = 1.0
#: d0, d1, d2 and n of Sec. 4.1
PAPER_LATENT_DIM = 150
PAPER_GCN_DIMS = (30, 12)
PAPER_ROI_SIZE = 25
AE_CHANNELS = (16, 32, 16)


def paper_relation(dataset: str) -> torch.Tensor:
    """M_bool of Table 1 for ``"bp4d"`` or ``"disfa"``: (C, C) float 0/1."""
    rows = PAPER_RELATIONS[dataset]
    return torch.tensor([[float(c) for c in row] for row in rows])


def cooccurrence_prior(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """M_ij = P(AU j = 1 | AU i = 1) over the training labels (M, C) → (C, C) (Sec. 3.4).

    Counts are Σ_m y_mi y_mj / Σ_m y_mi, so soft labels in [0, 1] (a teacher's probabilities) give
    the expected co-occurrence. A row of an AU that never occurs is 0 (its condition is empty),
    with a warning: it then relates to no other AU.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    if y.ndim != 2 or y.shape[0] == 0 or y.shape[1] == 0:
        raise ValueError(f"labels must be (M, C) with M, C > 0, got shape {tuple(y.shape)}")
    if not bool(((y >= 0) & (y <= 1)).all()):
        raise ValueError("labels must lie in [0, 1] (0/1 occurrence, or probabilities)")
    joint = y.T @ y  # [i, j] = Σ y_i y_j
    count = y.sum(dim=0)  # Σ y_i
    never = count <= 0
    if bool(never.any()):
        log.warning("AUs %s never occur in these labels: their rows of P(j|i) are 0", never.nonzero().flatten().tolist())
    return (joint / count.clamp(min=1e-12).unsqueeze(1)).masked_fill(never.unsqueeze(1), 0.0).float()


def relation_matrix(prior: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Eq. (4)-(5): M_sym = M + Mᵀ, M_bool = [M_sym ≥ h], (C, C) float 0/1."""
    m = torch.as_tensor(prior, dtype=torch.float32)
    return ((m + m.T) >= threshold).float()


def roi_adjacency(relation: torch.Tensor, layout: RoiLayout) -> torch.Tensor:
    """The ROI graph G (R, R) 0/1 from the AU relations M_bool (C, C), by the rules of Sec. 3.4."""
    member = torch.as_tensor(layout.membership[:-1], dtype=torch.float32)  # landmark ROIs × AUs
    r = layout.num_rois
    g = torch.zeros(r, r)
    # all ROIs of AU i to all ROIs of AU j where M_bool_ij = 1 (the diagonal joins an AU's own ROIs)
    g[:-1, :-1] = ((member @ torch.as_tensor(relation, dtype=torch.float32) @ member.T) > 0).float()
    for a, b in layout.pairs:  # each ROI to its symmetric partner (left/right, up/down)
        g[a, b] = g[b, a] = 1.0
    g[-1, :] = g[:, -1] = 1.0  # the whole face to every node
    g.fill_diagonal_(1.0)  # every node to itself
    return g


def normalized_adjacency(g: torch.Tensor) -> torch.Tensor:
    """Ĝ = D^-1/2 G D^-1/2 (Kipf & Welling 2017; G has its self loops)."""
    d = g.sum(dim=-1).rsqrt()
    return d.unsqueeze(-1) * g * d.unsqueeze(-2)


class GroupedLinear(nn.Module):
    """G independent linear layers on (B, G, Cin) → (B, G, Cout), one matmul (nn.Linear's init)."""

    def __init__(self, groups: int, cin: int, cout: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(cin)
        self.weight = nn.Parameter(torch.empty(groups, cin, cout).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, cout).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a batched matmul over the groups, (G, B, Cin) @ (G, Cin, Cout); broadcasting (B, G, 1, Cin)
        # against the weights instead would copy them once per sample (5x slower on CPU)
        return (x.transpose(0, 1) @ self.weight).transpose(0, 1) + self.bias


def _down(n: int) -> int:
    return (n - 1) // 2 + 1  # a 3×3 convolution, stride 2, padding 1


class RoiAutoEncoders(nn.Module):
    """R auto-encoders, one per ROI, as grouped convolutions: (B, R, 3, n, n) ↔ latents (B, R, d0)."""

    def __init__(self, rois: int, size: int, latent: int, channels: tuple[int, int, int] = AE_CHANNELS) -> None:
        super().__init__()
        self.rois, self.size = rois, size
        sizes = [size]
        for _ in channels:
            sizes.append(_down(sizes[-1]))
        self.code_shape = (channels[-1], sizes[-1], sizes[-1])
        flat = channels[-1] * sizes[-1] ** 2
        ins = (3, *channels[:-1])
        self.encoder = nn.ModuleList(
            nn.Conv2d(rois * cin, rois * cout, 3, stride=2, padding=1, groups=rois) for cin, cout in zip(ins, channels)
        )
        self.to_latent = GroupedLinear(rois, flat, latent)
        self.from_latent = GroupedLinear(rois, latent, flat)
        # transposed convolutions retrace the sizes: out = 2·in − 1 + output_padding
        outs = (*reversed(ins),)
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(rois * cin, rois * cout, 3, stride=2, padding=1,
                               output_padding=sizes[i] - (2 * sizes[i + 1] - 1), groups=rois)
            for i, cin, cout in zip(reversed(range(len(channels))), reversed(channels), outs)
        )

    def encode(self, rois: torch.Tensor) -> torch.Tensor:
        b = rois.shape[0]
        h = rois.reshape(b, self.rois * 3, self.size, self.size)
        for conv in self.encoder:
            h = F.relu(conv(h))
        return self.to_latent(h.reshape(b, self.rois, -1))  # a linear bottleneck: the GCN's input

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        b = latent.shape[0]
        c, s, _ = self.code_shape
        h = F.relu(self.from_latent(latent)).reshape(b, self.rois * c, s, s)
        for i, deconv in enumerate(self.decoder):
            h = deconv(h)
            h = F.relu(h) if i < len(self.decoder) - 1 else h  # linear output: ROIs are normalised pixels
        return h.reshape(b, self.rois, 3, self.size, self.size)


class AUGCN(nn.Module):
    """AU-GCN. ``forward(x[, landmarks])`` → AU probabilities (B, C); ``forward_aux`` → training dict."""

    cooccurrence_prior = staticmethod(cooccurrence_prior)

    def __init__(self, layout: RoiLayout, roi_size: int, roi_ratio: float, crop_scale: float, latent_dim: int,
                 gcn_dims: Sequence[int], dropout: float) -> None:  # defaults and checks: the au_gcn factory
        super().__init__()
        self.layout = layout
        self.num_aus, self.num_rois, self.roi_size = len(layout.au_names), layout.num_rois, roi_size
        r, c, n = self.num_rois, self.num_aus, roi_size
        # ROI geometry (derived from the config, so not saved in checkpoints)
        self.register_buffer("center_weights", torch.tensor(layout.center_weights, dtype=torch.float32), persistent=False)
        self.register_buffer("center_offsets", torch.tensor(layout.center_offsets, dtype=torch.float32), persistent=False)
        sides = torch.full((r,), 2.0 * roi_ratio / crop_scale)  # in normalised units, the crop is 2 wide
        sides[-1] = 2.0  # the whole face: the full crop
        self.register_buffer("roi_sides", sides, persistent=False)
        ticks = (torch.arange(n, dtype=torch.float32) + 0.5) / n - 0.5  # pixel centres of an n×n patch, in sides
        self.register_buffer("patch_unit", torch.stack(torch.meshgrid(ticks, ticks, indexing="xy"), dim=-1), persistent=False)
        mean_face = torch.tensor(to_normalized(mean_face_in_crop(crop_scale=crop_scale), 112), dtype=torch.float32)
        self.register_buffer("fixed_grid", self._grid(mean_face.unsqueeze(0)), persistent=False)
        self.register_buffer("membership", torch.tensor(layout.membership, dtype=torch.float32), persistent=False)
        # the graph: P(j|i), M_bool and G are data, set before training and saved with the weights
        self.register_buffer("prior", torch.zeros(c, c))
        self.register_buffer("relation", torch.zeros(c, c))
        self.register_buffer("adjacency", torch.eye(r))
        self.autoencoders = RoiAutoEncoders(r, n, latent_dim)
        self.roi_heads = GroupedLinear(r, latent_dim, c)  # Ŷ^ROI of Eq. (2), one head per ROI
        dims = (latent_dim, *gcn_dims)
        self.gcn = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))  # W_l of Eq. (6)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(r * dims[-1], c)  # the FCN of Sec. 3.6

    # -- ROIs -----------------------------------------------------------------------------------
    def _grid(self, landmarks: torch.Tensor) -> torch.Tensor:
        """Normalised 68-point landmarks (B, 68, 2) → grid_sample grid (B, R·n, n, 2)."""
        a, b_ = INNER_EYE_CORNERS
        scale = (landmarks[:, a] - landmarks[:, b_]).pow(2).sum(dim=-1).sqrt()  # EAC-Net's scale
        centers = self.center_weights @ landmarks + self.center_offsets * scale.view(-1, 1, 1)
        centers = torch.cat((centers, torch.zeros_like(centers[:, :1])), dim=1)  # the whole face
        grid = centers[:, :, None, None, :] + self.patch_unit * self.roi_sides.view(1, -1, 1, 1, 1)
        return grid.reshape(landmarks.shape[0], -1, self.roi_size, 2)

    def extract_rois(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, H, W) → ROIs (B, R, 3, n, n). ``landmarks`` (B, 68, 2): pixel (x, y) in x's frame."""
        b, _, h, w = x.shape
        if landmarks is None:
            grid = self.fixed_grid.expand(b, -1, -1, -1)
        else:
            # (the ONNX tracer records shapes as tensors: checked in eager mode, trusted when traced)
            if not torch.jit.is_tracing() and tuple(landmarks.shape[1:]) != (NUM_LANDMARKS, 2):
                raise ModelError(f"landmarks must be (B, {NUM_LANDMARKS}, 2) pixel coordinates, got {tuple(landmarks.shape)}")
            lm = landmarks.to(x.dtype)
            grid = self._grid(torch.stack(((2.0 * lm[..., 0] + 1.0) / w - 1.0, (2.0 * lm[..., 1] + 1.0) / h - 1.0), dim=-1))
        patches = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        n = self.roi_size
        return patches.view(b, 3, self.num_rois, n, n).transpose(1, 2)

    # -- graph ----------------------------------------------------------------------------------
    def set_cooccurrence_prior(
        self, prior: torch.Tensor | np.ndarray, threshold: float = DEFAULT_THRESHOLD, source: str = "training labels"
    ) -> None:
        """Set P(j|i) (C, C) (from :func:`cooccurrence_prior`), and with it M_bool (Eq. 4-5) and G."""
        p = torch.as_tensor(np.asarray(prior), dtype=torch.float32)
        c = self.num_aus
        if p.shape != (c, c):
            raise ModelError(f"prior must be ({c}, {c}) for AUs {self.layout.au_names}, got {tuple(p.shape)}")
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise ModelError("prior holds conditional probabilities P(j|i): every entry must lie in [0, 1]")
        relation = relation_matrix(p, threshold)
        with torch.no_grad():
            self.prior.copy_(p)
            self.relation.copy_(relation)
            self.adjacency.copy_(roi_adjacency(relation, self.layout))
        card = getattr(self, "card", None)
        if card is not None:
            card.training["graph"] = {"source": source, "threshold": threshold}

    # -- network --------------------------------------------------------------------------------
    def _predict(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = normalized_adjacency(self.adjacency)
        z = latent
        for w in self.gcn:
            z = F.relu(self.dropout(g @ w(z)))  # Eq. (6), then Dropout and ReLU (Sec. 3.5)
        return self.classifier(z.flatten(1)), z

    def forward(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3, H, W) aligned crops normalised as ``card.mean/std`` → AU probabilities (B, C)."""
        logits, _ = self._predict(self.autoencoders.encode(self.extract_rois(x, landmarks)))
        return torch.sigmoid(logits)

    def forward_aux(self, x: torch.Tensor, landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything training needs, from one pass:

        - ``probs``, ``logits`` (B, C): the AU prediction (L_au, Eq. 7-9); ``probs`` = ``forward``
        - ``roi_logits`` (B, R, C): each ROI's own AU prediction Ŷ^ROI (Eq. 2)
        - ``rois``, ``recon`` (B, R, 3, n, n): the ROI crops and their reconstructions (Eq. 1)
        - ``membership`` (R, C): which AUs each ROI holds (the support of Y^ROI)
        - ``latents`` (B, R, d0), ``nodes`` (B, R, d2): Z0 and Z2
        """
        rois = self.extract_rois(x, landmarks)
        latent = self.autoencoders.encode(rois)
        logits, nodes = self._predict(latent)
        return {
            "probs": torch.sigmoid(logits),
            "logits": logits,
            "roi_logits": self.roi_heads(latent),
            "rois": rois,
            "recon": self.autoencoders.decode(latent),
            "membership": self.membership,
            "latents": latent,
            "nodes": nodes,
        }


@register_model("au_gcn")
def au_gcn(
    dataset: str | None = None,
    au_names: tuple[str, ...] | list[str] | None = None,
    num_classes: int | None = None,
    input_size: int = 224,
    roi_size: int = PAPER_ROI_SIZE,
    roi_ratio: float = PAPER_ROI_RATIO,
    crop_scale: float = 1.0,
    latent_dim: int = PAPER_LATENT_DIM,
    gcn_dims: Sequence[int] = PAPER_GCN_DIMS,
    dropout: float = 0.5,
    relation: str = "paper",
) -> AUGCN:
    """Build AU-GCN, randomly initialised (``card.kind == "untrained"``).

    - labels: ``dataset="bp4d"`` (12 AUs, default, R = 19 ROIs) / ``"disfa"`` (8, R = 14),
      ``au_names`` (any AUs with an ROI rule, see :data:`.au_gcn_rois.AU_REGION`), or ``num_classes``.
    - ``input_size``: side of the aligned crop it reads ROIs from (any; the ROIs scale with it).
      ``crop_scale``: the aligner's ``scale`` (1.0 = norm_crop), so the mean face lands right.
    - ``roi_size`` n, ``roi_ratio`` (ROI side / face side), ``latent_dim`` d0, ``gcn_dims``
      (d1, d2), ``dropout``: the paper's 25, 25/200, 150, (30, 12); dropout is not given (0.5, Kipf's).
    - ``relation``: ``"paper"`` starts from Table 1's graph for BP4D/DISFA (uniform for other AU
      sets, with a warning); ``"uniform"`` relates every AU pair. Either way
      :meth:`AUGCN.set_cooccurrence_prior` replaces it before training.
    """
    names, found = resolve_au_names(au_names, dataset, num_classes)
    if relation not in ("paper", "uniform"):
        raise ModelError(f"relation must be 'paper' or 'uniform', got {relation!r}")
    if roi_size < 8 or input_size < 16:
        raise ModelError(f"roi_size={roi_size} and input_size={input_size} are too small (need >= 8 and >= 16)")
    if not 0 < roi_ratio <= 1 or crop_scale <= 0:
        raise ModelError(f"roi_ratio must be in (0, 1] and crop_scale > 0, got {roi_ratio}, {crop_scale}")
    if latent_dim < 1 or len(gcn_dims) < 1 or min(gcn_dims) < 1 or not 0 <= dropout < 1:
        raise ModelError(f"bad sizes: latent_dim={latent_dim}, gcn_dims={tuple(gcn_dims)}, dropout={dropout}")
    layout = roi_layout(names)
    model = AUGCN(layout, roi_size, roi_ratio, crop_scale, latent_dim, gcn_dims, dropout)
    config = {
        "au_names": list(names), "input_size": input_size, "roi_size": roi_size, "roi_ratio": roi_ratio,
        "crop_scale": crop_scale, "latent_dim": latent_dim, "gcn_dims": list(gcn_dims), "dropout": dropout,
        "relation": relation,
    }
    model.card = ModelCard("au_gcn", "au", names, config, input_size,
                           paper="AU-GCN: relation modeling with GCNs for facial AU detection (Liu et al., MMM 2020)")
    if relation == "paper" and found in PAPER_RELATIONS and names == AU_SETS[found]:
        rel = paper_relation(found)
        # Table 1 is M_bool; as a prior it gives back the same M_bool for any h in (0, 2]
        model.set_cooccurrence_prior(rel, DEFAULT_THRESHOLD, source=f"paper Table 1 ({found})")
    else:
        if relation == "paper":
            log.warning(
                "au_gcn: no published AU graph for %s; the AU relations start uniform (every pair related). "
                "Call model.set_cooccurrence_prior(cooccurrence_prior(train_labels)) before training.", names)
        uniform = torch.full((len(names), len(names)), 0.5).fill_diagonal_(1.0)  # P(j|i) = 1/2: no information
        model.set_cooccurrence_prior(uniform, DEFAULT_THRESHOLD, source="uniform (no prior given)")
    return model
