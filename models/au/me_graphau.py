"""ME-GraphAU: AU relation graphs with multi-dimensional edge features (Luo et al., IJCAI 2022).

Pipeline (paper Sec. 2, Fig. 2), written dense with static shapes so torch.export and ONNX take it:

    backbone → X (B, D, C)                                full face representation, D = h·w tokens
    ANFL  AFG: U_i = FC_i(X), v_i = GAP(U_i)               (B, N, D, C), (B, N, C)
          FGG: kNN graph on v_iᵀv_j, one GCN layer        Eq. (1); SC head, Eq. (2)   [training]
    MEFL  FAM: F_i = CrossAttn(U_i, X)                     Eq. (3), (4)
          ARM: e_ij = GAP(CrossAttn(F_j → F_i))            Eq. (5)
    GatedGCN (L = 2) on (v, e) → SC head, Eq. (2)          AU probabilities
    shared FC on e^L_ij → 4-way co-occurrence logits       for Eq. (7)                 [training]

As the paper says (Sec. 2.2), inference uses only AFG + MEFL + GatedGCN: the FGG branch (kNN +
GCN) exists to shape the AFG features in training stage 1, and runs only in ``forward_aux``.
AU probabilities are cosine similarities (Eq. 2), in [0, 1] — the paper puts no sigmoid on them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auflow.engine.errors import ModelError
from auflow.models import register_model
from auflow.models.backbones import build_backbone, check_input_size
from auflow.models.au import labels
from auflow.models.card import ModelCard

#: the AU sets of the paper's two benchmarks (Tables 1 and 2)
AU_SETS: dict[str, tuple[str, ...]] = {k: labels.BENCHMARK_AUS[k] for k in ("bp4d", "disfa")}
#: K nearest neighbours in the FGG (Sec. 3.1): 3 for BP4D, 4 for DISFA; 4 elsewhere (authors' code default)
PAPER_K: dict[str, int] = {"bp4d": 3, "disfa": 4}
DEFAULT_K = 4
#: default node/edge size C = backbone channels / divisor: / 4 as the authors' code for ResNets;
#: / 8 for MobileNetV2, whose last 1x1 conv expands 320 → 1280 channels, so that the head (its cost
#: grows as C², from the N² edges) stays below the backbone's cost on CPU
DIM_DIVISOR: dict[str, int] = {"mobilenet_v2": 8}
#: number of co-occurrence patterns of a pair of AUs (Sec. 2.3): 00, 01, 10, 11
NUM_EDGE_CLASSES = 4


class TokenLinear(nn.Module):
    """FC + BN + ReLU on tokens (B, D, Cin) → (B, D, Cout); BN per output channel over (B, D)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.bn = nn.BatchNorm1d(cout)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / cout))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(_bn_last(self.bn, self.fc(x)))


class CrossAttention(nn.Module):
    """Eq. (4): softmax(A W_q (B W_k)ᵀ / √d_k) B W_v, d_k = C / 2 (the keys' channels)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dk = dim // 2
        self.q = nn.Linear(dim, self.dk)
        self.k = nn.Linear(dim, self.dk)
        self.v = nn.Linear(dim, dim)
        for lin, fan in ((self.q, self.dk), (self.k, self.dk), (self.v, dim)):
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / fan))
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """query (B, Dq, C), kv (B, Dk, C) → (B, Dq, C)."""
        attn = torch.softmax((self.q(query) / math.sqrt(self.dk)) @ self.k(kv).transpose(-1, -2), dim=-1)
        return attn @ self.v(kv)

    def pairwise_pooled(self, f: torch.Tensor) -> torch.Tensor:
        """f (B, N, D, C) → (B, N, N, C) with [:, i, j] = GAP_q(forward(query=f_j, kv=f_i)).

        All N² attentions come from one (N·D)×(N·D) score matrix, and GAP over the query positions
        is taken on the attention weights, mean_q(attn) @ V — the same value without the N² maps
        of D×C that GAP would otherwise average.
        """
        b, n, d, _ = f.shape
        q, k, v = self.q(f) / math.sqrt(self.dk), self.k(f), self.v(f)
        scores = q.reshape(b, n * d, self.dk) @ k.reshape(b, n * d, self.dk).transpose(1, 2)
        attn = torch.softmax(scores.view(b, n, d, n, d), dim=-1)  # [b, j, q, i, k]
        return attn.mean(dim=2).transpose(1, 2) @ v  # [b, i, j, k] @ V_i [b, i, k, c]


def knn_adjacency(v: torch.Tensor, k: int) -> torch.Tensor:
    """FGG topology: a_ij = 1 for the k most similar nodes j of node i, Sim(i, j) = v_iᵀv_j.

    Dense and static: top-k indices compared against ``arange(N)`` give a (B, N, N) 0/1 matrix with
    exactly k ones per row (top-k indices are distinct, so ties never add extra neighbours).
    Similarities are computed on detached features: the topology is a selection, not a gradient path.
    """
    sim = v.detach() @ v.detach().transpose(1, 2)  # Sim(i, j) = v_iᵀ v_j
    idx = sim.topk(k, dim=-1).indices  # (B, N, k)
    nodes = torch.arange(v.shape[1], device=v.device)
    return (idx.unsqueeze(-1) == nodes).to(v.dtype).sum(dim=-2)


def resolve_k(k: int | None, benchmark: str | None, num_aus: int, paper_k: Mapping[str, int], default: int) -> int:
    """K of the kNN graph: ``k``, else the paper's for the ``benchmark`` (``paper_k``, ``default`` for any other
    label set), at most ``num_aus``; a :class:`ModelError` unless 1 <= K <= ``num_aus``."""
    k = k if k is not None else min(paper_k.get(benchmark or "", default), num_aus)
    if not 1 <= k <= num_aus:
        raise ModelError(f"k={k} neighbours must be in [1, {num_aus}] for {num_aus} AUs")
    return k


def he_linears(dim: int, n: int, bias: bool = True) -> list[nn.Linear]:
    """``n`` Linear(dim, dim) layers as the released graph convolutions initialise them: weights
    N(0, 2 / dim) (He), biases 0; made one after another, then initialised (the seeded order)."""
    lins = [nn.Linear(dim, dim, bias=bias) for _ in range(n)]
    for lin in lins:
        nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0 / dim))
        if bias:
            nn.init.zeros_(lin.bias)
    return lins


class FGGConv(nn.Module):
    """Eq. (1): v_i^FGG = σ[g(v_i, Σ_j r(v_j, a_ij))] with
    g(v_i, m_i) = v_i + BN(U v_i + m_i), r(v_j, a_ij) = â_ij V v_j, â = D^-1/2 A D^-1/2, σ = ReLU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.U, self.V = he_linears(dim, 2)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, v: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        d = adj.sum(dim=-1).clamp(min=1.0).rsqrt()  # every row has k ones; clamp only guards k = 0
        a_hat = d.unsqueeze(-1) * adj * d.unsqueeze(-2)
        h = self.U(v) + a_hat @ self.V(v)
        return F.relu(v + _bn_last(self.bn, h))


class GatedGCNLayer(nn.Module):
    """Residual gated graph conv with edge features (Bresson & Laurent 2017, edge form of Dwivedi
    et al. 2020) on the complete directed graph of N nodes; e_ij is the edge j → i:

        ê_ij = A h_i + B h_j + E e_ij
        e'_ij = e_ij + ReLU(BN(ê_ij))
        η_ij  = σ(ê_ij) / Σ_j σ(ê_ij)
        h'_i  = h_i + ReLU(BN(U h_i + Σ_j η_ij ⊙ V h_j))

    η is computed as softmax_j(log σ(ê_ij)): the same ratio without Dwivedi's ε, and exact when
    every gate of a node saturates. σ/(Σσ + ε) is not: when Σσ ~ ε it amplifies σ's far tail,
    which exporters approximate (onnxruntime's Sigmoid clamps its input), and outputs drift.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.A, self.B, self.E, self.U, self.V = he_linears(dim, 5, bias=False)
        self.bn_h = nn.BatchNorm1d(dim)
        self.bn_e = nn.BatchNorm1d(dim)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, N, C), e (B, N, N, C) → same shapes."""
        e_hat = self.A(h).unsqueeze(2) + self.B(h).unsqueeze(1) + self.E(e)
        eta = torch.softmax(_log_sigmoid(e_hat), dim=2)  # σ(ê_ij) / Σ_j σ(ê_ij)
        msg = (eta * self.V(h).unsqueeze(1)).sum(dim=2)
        h_out = h + F.relu(_bn_last(self.bn_h, self.U(h) + msg))
        e_out = e + F.relu(_bn_last(self.bn_e, e_hat))
        return h_out, e_out


def _log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log σ(x) = min(x, 0) - log(1 + e^-|x|), from ops every exporter keeps exact (F.logsigmoid
    exports as Log(Sigmoid(x)), which loses the tail)."""
    return torch.clamp(x, max=0.0) - torch.log1p(torch.exp(-x.abs()))


def _bn_last(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the last (channel) dim of (B, ..., C): statistics over every other dim."""
    return bn(x.reshape(-1, x.shape[-1])).view(x.shape)


def similarity_head(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (2): p_i = ReLU(v_i)ᵀReLU(s_i) / (‖ReLU(v_i)‖₂ ‖ReLU(s_i)‖₂), in [0, 1]."""
    return (F.normalize(F.relu(v), dim=-1) * F.normalize(F.relu(s), dim=-1)).sum(dim=-1)


class MEGraphAU(nn.Module):
    """ME-GraphAU network. ``forward(x)`` → AU probabilities (B, N); ``forward_aux(x)`` → training dict."""

    def __init__(self, backbone: nn.Module, num_aus: int, dim: int, k: int, gcn_layers: int = 2,
                 edge_grid: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_aus, self.dim, self.k = num_aus, dim, k
        self.edge_grid = edge_grid
        # backbone channels → C: X = FC(backbone tokens), as the authors' code (C_backbone / 4)
        self.global_linear = TokenLinear(backbone.out_channels, dim)
        # AFG: N AU-specific FC layers (each with its own BN), run as one FC to N·C channels
        self.afg = TokenLinear(dim, num_aus * dim)
        # FGG (training stage 1): GCN of Eq. (1) on the kNN graph
        self.fgg = FGGConv(dim)
        # MEFL: FAM and ARM are cross attentions of the same form, independent weights (Sec. 2.2)
        self.fam = CrossAttention(dim)
        self.arm = CrossAttention(dim)
        self.gnn = nn.ModuleList(GatedGCNLayer(dim) for _ in range(gcn_layers))
        # SC (Eq. 2): one trainable s_i per AU, re-employed after the GatedGCN (Sec. 2.2)
        self.sc = nn.Parameter(torch.empty(num_aus, dim))
        nn.init.xavier_uniform_(self.sc)
        # shared FC predicting the co-occurrence pattern of each edge (Sec. 2.3, Eq. 7)
        self.edge_fc = nn.Linear(dim, NUM_EDGE_CLASSES)
        nn.init.xavier_uniform_(self.edge_fc.weight)
        nn.init.zeros_(self.edge_fc.bias)

    def _afg(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full face X (B, D, C) → AU-specific maps U (B, N, D, C) and node features v (B, N, C)."""
        b, d, c = x.shape
        u = self.afg(x).view(b, d, self.num_aus, c).transpose(1, 2)
        return u, u.mean(dim=2)  # v_i = GAP(U_i)

    def _mefl(self, u: torch.Tensor, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Eq. (3)-(5): edge features e (B, N, N, C); e[:, i, j] = e_ij. ``hw``: the map's (H, W), D = H·W."""
        b, n, d, c = u.shape
        # Eq. (3): F_i = FAM(U_i, X) for all i at once: the N·D query rows attend to X independently
        f_as = self.fam(u.reshape(b, n * d, c), x).view(b, n, d, c)
        g = self.edge_grid
        if g is not None and hw is not None and (hw[0] > g or hw[1] > g):
            # ARM costs (N·D)² scores: on a map larger than the paper's 7×7 (ResNet-50 at 224 px), each F_i is
            # average-pooled to g×g first; nodes and FAM keep every position
            maps = f_as.reshape(b * n, hw[0], hw[1], c).permute(0, 3, 1, 2)
            f_as = F.adaptive_avg_pool2d(maps, (min(g, hw[0]), min(g, hw[1]))).flatten(2).transpose(1, 2).reshape(b, n, -1, c)
        # Eq. (5): e_ij = GAP(ARM(F_j, F_i)), F_j the query, F_i key and value
        return self.arm.pairwise_pooled(f_as)

    def _graph(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image → AFG node features v (B, N, C) and the GatedGCN output G^L: h (B, N, C), e (B, N, N, C)."""
        feat = self.backbone(x)
        tokens = self.global_linear(feat.flatten(2).transpose(1, 2))  # X: (B, D, C)
        u, v = self._afg(tokens)
        hw = None
        if self.edge_grid is not None:
            with warnings.catch_warnings():  # a trace (ONNX export) keeps them as constants: right, the card fixes the size
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                hw = (int(feat.shape[2]), int(feat.shape[3]))
        h, e = v, self._mefl(u, tokens, hw)  # G^0
        for layer in self.gnn:
            h, e = layer(h, e)
        return v, h, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W), normalised as ``card.mean/std`` → AU probabilities (B, N) in [0, 1].

        The inference path of the paper (AFG + MEFL + GatedGCN + SC); one tensor in, one out, so
        ``torch.onnx.export(model, (x,))`` and ``torch.export.export`` take the module as is.
        """
        _, h, _ = self._graph(x)
        return similarity_head(h, self.sc)  # Eq. (2) on v^L

    def forward_aux(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything training needs, from one pass:

        - ``probs`` (B, N): the GatedGCN + SC prediction (= ``forward``; stage 2, Eq. 6)
        - ``logits`` (B, N): ``logit(probs)``, for code that wants logits; the paper trains on probs
        - ``fgg_probs`` (B, N): the FGG + SC prediction (stage 1, Eq. 6)
        - ``edge_logits`` (B, N, N, 4): co-occurrence logits of each pair (i, j) from e^L_ij (Eq. 7)
        - ``adjacency`` (B, N, N): the FGG kNN graph (k ones per row)
        - ``nodes`` (B, N, C), ``edges`` (B, N, N, C): G^L of the GatedGCN
        """
        v, h, e = self._graph(x)
        probs = similarity_head(h, self.sc)
        adj = knn_adjacency(v, self.k)
        return {
            "probs": probs,
            "logits": torch.logit(probs, eps=1e-6),
            "fgg_probs": similarity_head(self.fgg(v, adj), self.sc),  # Eq. (1), (2)
            "edge_logits": self.edge_fc(e),
            "adjacency": adj,
            "nodes": h,
            "edges": e,
        }


def resolve_au_names(
    au_names: tuple[str, ...] | list[str] | None, dataset: str | None, num_classes: int | None
) -> tuple[tuple[str, ...], str | None]:
    """The AU label set and the benchmark it comes from (None for a custom set); BP4D by default."""
    return labels.resolve_au_names(au_names, dataset, num_classes, AU_SETS, "bp4d", "me_graphau")


def graph_setup(name: str, sets: Mapping[str, tuple[str, ...]], default_set: str, au_names, dataset: str | None,
                num_classes: int | None, k: int | None, input_size: int, paper_k: Mapping[str, int], default_k: int, backbone: str,
                backbone_kw: dict[str, Any] | None, dim: int | None, min_dim: int = 1,
                **counts: int) -> tuple[tuple[str, ...], int, nn.Module, int]:
    """What the graph AU factories (ME-GraphAU, Topo-AU) resolve alike: their ``counts`` (layers,
    reductions: each >= 1), the label set, K of the AU graph, the input size check, the backbone and the
    node size C (backbone channels / 4 by default, as the authors' code, / 8 for ``mobilenet_v2``), at
    least ``min_dim``. A :class:`ModelError` names what is out of range."""
    for key, value in counts.items():
        if value < 1:
            raise ModelError(f"{key} must be >= 1, got {value}")
    names, found = labels.resolve_au_names(au_names, dataset, num_classes, sets, default_set, name)
    k = resolve_k(k, found, len(names), paper_k, default_k)
    check_input_size(input_size)
    net = build_backbone(backbone, **(backbone_kw or {}))
    dim = dim if dim is not None else net.out_channels // DIM_DIVISOR.get(backbone, 4)
    if dim < min_dim:
        raise ModelError(f"{name}: dim={dim} must be >= {min_dim}")
    return names, k, net, dim


def graph_config(backbone: str, names: tuple[str, ...], input_size: int, k: int, dim: int,
                 backbone_kw: dict[str, Any] | None, **layers: Any) -> dict[str, Any]:
    """The card config of a graph AU model: what :func:`graph_setup` resolved, then its own ``layers`` options."""
    return {"backbone": backbone, "au_names": list(names), "input_size": input_size, "k": k, "dim": dim, **layers,
            "backbone_kw": dict(backbone_kw or {})}


@register_model("me_graphau")
def me_graphau(
    backbone: str = "resnet50",
    num_classes: int | None = None,
    au_names: tuple[str, ...] | list[str] | None = None,
    dataset: str | None = None,
    input_size: int = 224,
    k: int | None = None,
    dim: int | None = None,
    gcn_layers: int = 2,
    backbone_kw: dict[str, Any] | None = None,
    edge_grid: int | None = None,
) -> MEGraphAU:
    """Build ME-GraphAU, randomly initialised (``card.kind == "untrained"``).

    - ``backbone``: ``resnet50`` (the paper's), ``resnet18`` or ``mobilenet_v2`` (CPU); options
      such as ``{"width_mult": 0.5}`` go in ``backbone_kw``.
    - labels: ``au_names``, or ``dataset="bp4d"`` (12 AUs, default) / ``"disfa"`` (8), or
      ``num_classes`` 12 / 8 for those sets.
    - ``k``: FGG neighbours; default 3 for BP4D, 4 for DISFA (paper Sec. 3.1), 4 otherwise.
    - ``dim``: node / edge feature size C; default backbone channels / 4 (authors' code), / 8 for
      ``mobilenet_v2`` (160).
    - ``gcn_layers``: GatedGCN depth L (2 in the paper).
    - ``edge_grid``: average-pool each AU's FAM output to at most this many positions per side before
      ARM, whose cost grows with the square of the positions (N·D)²; None (default) = every position,
      as the paper, whose ResNet-50 map is 7×7. For backbones cut early (large maps), e.g. 6.
    """
    if edge_grid is not None and edge_grid < 1:
        raise ModelError(f"edge_grid must be >= 1 (or null), got {edge_grid}")
    # dim >= 2: the cross attention's keys are dim / 2 wide
    names, k, net, dim = graph_setup("me_graphau", AU_SETS, "bp4d", au_names, dataset, num_classes, k, input_size, PAPER_K,
                                     DEFAULT_K, backbone, backbone_kw, dim, min_dim=2, gcn_layers=gcn_layers)
    model = MEGraphAU(net, len(names), dim, k, gcn_layers, edge_grid)
    config = graph_config(backbone, names, input_size, k, dim, backbone_kw, gcn_layers=gcn_layers)
    if edge_grid is not None:  # absent from older cards: they load as before
        config["edge_grid"] = edge_grid
    model.card = ModelCard("me_graphau", "au", names, config, input_size, paper="ME-GraphAU (Luo et al.)")
    return model
