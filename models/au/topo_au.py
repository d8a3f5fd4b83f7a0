"""Topo-AU: AU recognition through topological feature integration and relational learning
(Li, Wan, Zou et al., The Visual Computer 2025; code: github.com/lkq52110/au-recognition).

Pipeline (paper Sec. 3, Fig. 2), dense with static shapes so torch.export and ONNX take it:

    backbone → X (B, C, h, w)         full face representation (FC + BN + ReLU to C channels)
    MAFG  Attn = Conv1x1(DW5x5(X) + Σ_n DW_n^x(DW_n^y(DW5x5(X))))        Eq. (1)-(3)
          V = Cat_i φ_i(Attn ⊙ X), v_i = GAP(φ_i(·))                     Eq. (4)      (B, N, C)
    GNN   S = VᵀV → top-K graph A → A' = D^-1/2 A D^-1/2                 Eq. (5)-(8)
          v_i^GNN = ReLU(v_i + BN(U v_i + Σ_j a'_ij V v_j))               Eq. (9)      (B, N, C)
    CCFG  X_rel = tanh(α1(X) ⊖ α2(X)); E = λ Conv_f(X_rel) ⊛ β(X)         Eq. (10)-(11)
          v_i^CCFG = φ_i(GAP(E))                                         Eq. (12)     (B, N, C)
    fusion f_i = Post(Concat(v_i^GNN, v_i^CCFG)), Post = FC + BN + ReLU   Eq. (13)
    head  p_i = cos(ReLU(f_i), ReLU(s_i))                                Eq. (14)     in [0, 1]

Where the text leaves a choice open, the authors' released code (``model.py``) decides, and the
comment at each place says so. One place departs from that code, on the paper's word: the code
applies one shared linear block to one pooled vector, so its N CCFG outputs are N copies of one
vector; the paper (Eq. 12, "multiple defined linear transformation layers ... creating independent
feature maps for each AU") has one φ_i per AU, and so does this module.

Training (Sec. 3.2.2, Eq. 15-17): L = L_WA on ``forward_aux(x)["probs"]``; see
:func:`auflow.models.au.losses_topo_gcn.topo_au_loss`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auflow.models import register_model
from auflow.models.au import labels
from auflow.models.au.me_graphau import TokenLinear, graph_config, graph_setup, he_linears, knn_adjacency, similarity_head
from auflow.models.card import ModelCard

#: the AU sets of the paper's two benchmarks (Sec. 3.1.1: Num = 8 on DISFA, 12 on EmotioNet;
#: Tables 2 and 3 list them)
AU_SETS: dict[str, tuple[str, ...]] = {k: labels.BENCHMARK_AUS[k] for k in ("disfa", "emotionet")}
#: K nearest neighbours of the AU graph (Sec. 4.2 and 4.4.2): 3 on DISFA, 4 on EmotioNet;
#: 4 for other label sets (the released code's default, and the paper's stated maximum)
PAPER_K: dict[str, int] = {"disfa": 3, "emotionet": 4}
DEFAULT_K = 4
#: MAFG strip-convolution sizes n = 0, 1, 2 (Sec. 3.1.1, after MCANet / SegNeXt) and the
#: depth-wise convolution before them
MAFG_KERNELS = (7, 11, 21)
MAFG_STEM_KERNEL = 5
#: CCFG relation channels = C / 8 (the released code's ``rel_reduction``, after CTR-GC)
CCFG_REDUCTION = 8


class MAFG(nn.Module):
    """Multi-scale attention feature generation, Eq. (1)-(4): X (B, C, h, w) → V (B, N, C).

    Every convolution but the 1x1 channel mix is depth-wise ("deep convolution", as SegNeXt's
    MSCA that the paper follows). Each scale runs the y-axis strip first, then the x-axis one, in
    the order of Eq. (1)-(2) (the released code runs x first; with biases and zero padding the two
    orders differ only at the borders).
    """

    def __init__(self, dim: int, num_aus: int, kernels: tuple[int, ...] = MAFG_KERNELS) -> None:
        super().__init__()
        self.num_aus = num_aus
        self.stem = nn.Conv2d(dim, dim, MAFG_STEM_KERNEL, padding=MAFG_STEM_KERNEL // 2, groups=dim)
        self.conv_y = nn.ModuleList(nn.Conv2d(dim, dim, (k, 1), padding=(k // 2, 0), groups=dim) for k in kernels)
        self.conv_x = nn.ModuleList(nn.Conv2d(dim, dim, (1, k), padding=(0, k // 2), groups=dim) for k in kernels)
        self.mix = nn.Conv2d(dim, dim, 1)
        # φ_i: N linear blocks (FC + BN + ReLU), run as one FC to N·C channels with BN per channel
        self.class_linears = TokenLinear(dim, num_aus * dim)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        base = self.stem(x)  # Conv2D_5x5(X)
        acc = base
        for conv_y, conv_x in zip(self.conv_y, self.conv_x):
            acc = acc + conv_x(conv_y(base))  # Eq. (1): M_yn, Eq. (2): M_xn
        return self.mix(acc)  # Eq. (3): Attn = Conv1x1(Conv5x5(X) + Σ_n M_xn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = (self.attention(x) * x).flatten(2).transpose(1, 2)  # Eq. (4): Attn ⊙ X, as (B, h·w, C)
        u = self.class_linears(tokens).view(b, h * w, self.num_aus, c)
        return u.mean(dim=1)  # v_i = GAP over positions of φ_i(Attn ⊙ X)


class AUGraphLayer(nn.Module):
    """One GNN layer on the K-nearest-neighbour AU graph, Eq. (5)-(9).

    Eq. (9): v_i^GNN = σ[v_i + g(v_i, Σ_j r(v_j, a'_ij))] with r(v_j, a'_ij) = a'_ij V v_j and
    g(v_i, m_i) = BN(U v_i + m_i), σ = ReLU, as in the released code. Its BN normalises each node
    (``BatchNorm1d(num_classes)``: statistics per AU over batch and channels), kept here.
    ρ of Eq. (5) is the identity, as in the released code (``metric='dots'``): the similarities
    only select neighbours and carry no gradient, so a learned ρ could never be trained.
    """

    def __init__(self, dim: int, num_aus: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.U, self.V = he_linears(dim, 2)
        self.bn = nn.BatchNorm1d(num_aus)

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, N, C) → (v^GNN (B, N, C), A (B, N, N))."""
        adj = knn_adjacency(v, self.k)  # Eq. (5)-(6): S = VᵀV, a_ij = 1 for the top-K of row i
        d = adj.sum(dim=-1).rsqrt()  # Eq. (7): D_ii = Σ_j A_ij (= K, never 0)
        a_norm = d.unsqueeze(-1) * adj * d.unsqueeze(-2)  # Eq. (8): A' = D^-1/2 A D^-1/2
        msg = a_norm @ self.V(v)  # Σ_j a'_ij V v_j
        return F.relu(v + self.bn(self.U(v) + msg)), adj  # Eq. (9)


class CCFG(nn.Module):
    """Channel-topology convolution feature generation, Eq. (10)-(12): X (B, C, h, w) → (B, N, C).

    After CTR-GC (Chen et al. 2021, the paper's [32]), as in the released code: the topology's
    vertices are the w columns of the feature map (each 1x1-convolved map is averaged over its
    rows, as CTR-GC averages over time), and every channel gets its own w×w topology:

        X_rel = tanh(α1(X)_u - α2(X)_v)              (B, C/8, w, w)   Eq. (10)
        E[c, t, u] = Σ_v λ Conv_f(X_rel)[c, u, v] β(X)[c, t, v]        Eq. (11)
        v_i^CCFG = φ_i(GAP(E)), φ_i = FC + BN + ReLU per AU            Eq. (12)

    α1, α2, β ("one-dimensional convolutional layers") and Conv_f are 1x1 convolutions; λ is the
    released code's constant 1 (``alpha=1``), a fixed scale rather than a parameter.
    """

    def __init__(self, dim: int, num_aus: int, reduction: int = CCFG_REDUCTION, lam: float = 1.0) -> None:
        super().__init__()
        self.num_aus, self.dim, self.lam = num_aus, dim, lam
        rel = max(1, dim // reduction)
        self.alpha1 = nn.Conv2d(dim, rel, 1)
        self.alpha2 = nn.Conv2d(dim, rel, 1)
        self.beta = nn.Conv2d(dim, dim, 1)
        self.conv_f = nn.Conv2d(rel, dim, 1)
        for conv in (self.alpha1, self.alpha2, self.beta, self.conv_f):  # the released code's conv_init
            nn.init.kaiming_normal_(conv.weight, mode="fan_out")
            nn.init.zeros_(conv.bias)
        # φ_i for i = 1..N: N independent FC + BN + ReLU blocks, run as one FC to N·C features
        self.phi = nn.Linear(dim, num_aus * dim)
        self.phi_bn = nn.BatchNorm1d(num_aus * dim)
        nn.init.normal_(self.phi.weight, 0.0, math.sqrt(2.0 / dim))
        nn.init.zeros_(self.phi.bias)

    def topology(self, x: torch.Tensor) -> torch.Tensor:
        """E of Eq. (11), (B, C, h, w)."""
        x1 = self.alpha1(x).mean(dim=-2)  # (B, C/8, w): vertices are the columns
        x2 = self.alpha2(x).mean(dim=-2)
        x_rel = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # Eq. (10): (B, C/8, w, w)
        topo = self.conv_f(x_rel) * self.lam  # (B, C, w, w): a w×w topology per channel
        return self.beta(x) @ topo.transpose(-1, -2)  # Eq. (11): E[c,t,u] = Σ_v topo[c,u,v] β[c,t,v]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.topology(x).mean(dim=(2, 3))  # the average pooling of φ
        out = F.relu(self.phi_bn(self.phi(pooled)))  # Eq. (12), every φ_i at once
        return out.view(x.shape[0], self.num_aus, self.dim)


class TopoAU(nn.Module):
    """Topo-AU network. ``forward(x)`` → AU probabilities (B, N); ``forward_aux(x)`` → training dict."""

    def __init__(self, backbone: nn.Module, num_aus: int, dim: int, k: int, gnn_layers: int = 1,
                 ccfg_reduction: int = CCFG_REDUCTION, ccfg_lambda: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_aus, self.dim, self.k = num_aus, dim, k
        # backbone channels → C (C_backbone / 4 for ResNets, as the released code's global_linear)
        self.global_linear = TokenLinear(backbone.out_channels, dim)
        self.mafg = MAFG(dim, num_aus)
        # one layer in the released code; the paper speaks of "multi-layer propagation", so L is an
        # option, each layer re-building its K-NN graph on its own input (a dynamic graph)
        self.gnn = nn.ModuleList(AUGraphLayer(dim, num_aus, k) for _ in range(gnn_layers))
        self.ccfg = CCFG(dim, num_aus, ccfg_reduction, ccfg_lambda)
        self.post = TokenLinear(2 * dim, dim)  # Eq. (13): FC + BN + ReLU on the concatenation
        # s_i of Eq. (14): one trainable vector per AU
        self.sc = nn.Parameter(torch.empty(num_aus, dim))
        nn.init.xavier_uniform_(self.sc)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.backbone(x)
        b, _, h, w = feat.shape
        tokens = self.global_linear(feat.flatten(2).transpose(1, 2))  # (B, h·w, C)
        fmap = tokens.transpose(1, 2).reshape(b, self.dim, h, w)  # X as a map for the convolutions
        v = self.mafg(fmap)
        v_gnn, adjacency = v, None
        for layer in self.gnn:
            v_gnn, adj = layer(v_gnn)
            adjacency = adj if adjacency is None else adjacency
        v_ccfg = self.ccfg(fmap)
        fused = self.post(torch.cat((v_gnn, v_ccfg), dim=-1))  # Eq. (13)
        return {"nodes": v, "gnn_nodes": v_gnn, "ccfg_nodes": v_ccfg, "fused": fused, "adjacency": adjacency}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W), normalised as ``card.mean/std`` → AU probabilities (B, N) in [0, 1]."""
        return similarity_head(self._features(x)["fused"], self.sc)  # Eq. (14)

    def forward_aux(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything training and inspection need, from one pass:

        - ``probs`` (B, N): Eq. (14), what L_WA (Eq. 15) is computed on; equals ``forward``
        - ``logits`` (B, N): ``logit(probs)`` for code that wants logits
        - ``nodes`` (B, N, C): MAFG's V; ``gnn_nodes``, ``ccfg_nodes``, ``fused`` (B, N, C):
          v^GNN, v^CCFG and f of Eq. (13)
        - ``adjacency`` (B, N, N): the K-NN graph A of Eq. (6) on V (K ones per row)
        """
        out = self._features(x)
        probs = similarity_head(out["fused"], self.sc)
        return {"probs": probs, "logits": torch.logit(probs, eps=1e-6), **out}


@register_model("topo_au")
def topo_au(
    backbone: str = "resnet50",
    dataset: str | None = None,
    au_names: tuple[str, ...] | list[str] | None = None,
    input_size: int = 224,
    k: int | None = None,
    num_classes: int | None = None,
    dim: int | None = None,
    gnn_layers: int = 1,
    ccfg_reduction: int = CCFG_REDUCTION,
    ccfg_lambda: float = 1.0,
    backbone_kw: dict[str, Any] | None = None,
) -> TopoAU:
    """Build Topo-AU, randomly initialised (``card.kind == "untrained"``).

    - ``backbone``: ``resnet50`` (the paper's, ImageNet-pretrained there), ``resnet18`` or
      ``mobilenet_v2`` (CPU); options such as ``{"width_mult": 0.5}`` go in ``backbone_kw``.
    - labels: ``dataset="disfa"`` (8 AUs, default) / ``"emotionet"`` (12), ``au_names``, or
      ``num_classes`` 8 / 12 for those sets.
    - ``k``: neighbours of the AU graph; 3 for DISFA, 4 for EmotioNet (Sec. 4.2), 4 otherwise.
    - ``dim``: node size C; backbone channels / 4 (the released code), / 8 for ``mobilenet_v2``.
    - ``gnn_layers``: GNN depth (1 in the released code); ``ccfg_reduction`` (C / 8 relation
      channels) and ``ccfg_lambda`` (λ of Eq. 11) shape the CCFG.
    """
    names, k, net, dim = graph_setup("topo_au", AU_SETS, "disfa", au_names, dataset, num_classes, k, input_size, PAPER_K,
                                     DEFAULT_K, backbone, backbone_kw, dim, gnn_layers=gnn_layers, ccfg_reduction=ccfg_reduction)
    model = TopoAU(net, len(names), dim, k, gnn_layers, ccfg_reduction, ccfg_lambda)
    config = graph_config(backbone, names, input_size, k, dim, backbone_kw, gnn_layers=gnn_layers,
                          ccfg_reduction=ccfg_reduction, ccfg_lambda=ccfg_lambda)
    model.card = ModelCard("topo_au", "au", names, config, input_size,
                           paper="Topo-AU: topological feature integration and relational learning (Li et al., Vis. Comput. 2025)")
    return model
