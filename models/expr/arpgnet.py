"""ARPGNet: appearance- and relation-aware parallel graph attention fusion (Li et al., paper 003).

Pipeline (Sec. 3, Fig. 1), written dense with static shapes so torch.export and ONNX take it:

    per frame (``encode_frames``, once per frame in a stream)
      appearance  CNN trunk → GAP → FC + BN                      a_t ∈ R^C'      (Sec. 3.2)
      relation    early CNN stages → AdaPool to P×P patches → 3 GAT layers on the face-region
                  graph of Eq. (1) → mean over patches           r_t ∈ R^C'      (Sec. 3.3, Eq. 1-4)
    per window (``fuse``, re-run for every window of T frames)
      positional encoding added to both sequences                              (Eq. 5, 6)
      parallel fusion graph of 2T nodes [a_0 … a_{T-1}, r_0 … r_{T-1}], masked graph attention with
      the Temporal Response Scope (TRS) adjacency                              (Eq. 7, 8, 9)
      frame-wise concat (T × 2C') → mean over time → MLP → softmax             (Sec. 3.4.3)

What the paper leaves open, and what is chosen here (each a config key):

- ``dim`` C' = 512: the width of InsightFace's first FC layer, whose output is the appearance
  feature (Sec. 3.2).
- ``trs`` = 3: Fig. 5 shows a node at frame 10 attending to frames 7 … 13, i.e. TRS = 3.
- ``heads`` = 4 (multi-head GAT, heads averaged, Sec. 3.3.2); ``fusion_layers`` = 1; σ = ELU (the
  GAT paper's); the MLP has one hidden layer of C'.
- the relation module taps the trunk at stride 8 (``relation_stride``): InsightFace's iResNet has
  no stride in its stem, so its "first three residual blocks" end at stride 8 (a 12×12 map for the
  paper's 96×96 faces, pooled into 6×6 patches of 2×2). In the torchvision-layout trunks of
  ``models/backbones.py`` stride 8 is reached after ``layer2`` (ResNet) or ``features[6]``
  (MobileNetV2); ``relation_stride=16`` taps after ``layer3`` / ``features[13]`` instead.
- ``separate_relation_trunk`` = True: the relation module has its own copy of those early stages,
  fine-tuned separately, as the paper describes (Sec. 3.3); False shares the appearance trunk's
  stages (cheaper per frame, one trunk pass feeds both branches).

Backbones are randomly initialised (no InsightFace weights are reachable); the card says
``untrained``. Input normalisation follows InsightFace: (x − 0.5) / 0.5 on [0, 1] RGB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auflow.engine.errors import ModelError
from auflow.engine.types import EXPRESSIONS
from auflow.models import register_model
from auflow.models.backbones import MobileNetV2, ResNet
from auflow.models.card import ModelCard
from auflow.models.expr.small_trunk import SmallConvTrunk, build_trunk

#: LeakyReLU slope in the graph attention (Sec. 4.2.2)
NEGATIVE_SLOPE = 0.01


# -- graphs ----------------------------------------------------------------------------------------
def face_region_adjacency(p: int) -> torch.Tensor:
    """Eq. (1): the facial region relation graph on P×P patches (row-major, node = row·P + col).

    a_ij = 1 when i = j, when patches i and j are adjacent (share a side), or when they are
    mirror images across the face's vertical midline (same row, col ↔ P−1−col). For P = 6 this
    gives node 8 (1-based) the neighbours 2, 7, 8, 9, 11, 14, as in the paper's Fig. 2.
    """
    idx = torch.arange(p * p)
    row, col = idx // p, idx % p
    dr = (row[:, None] - row[None, :]).abs()
    dc = (col[:, None] - col[None, :]).abs()
    same = idx[:, None] == idx[None, :]
    adjacent = (dr + dc) == 1
    mirror = (dr == 0) & (col[:, None] == p - 1 - col[None, :])
    return (same | adjacent | mirror).to(torch.float32)


def trs_adjacency(num_frames: int, trs: int | None) -> torch.Tensor:
    """Eq. (7): the parallel fusion graph's 2T × 2T adjacency, a_ij = 1 iff |i%T − j%T| ≤ TRS.

    ``trs=None`` removes the scope (every node sees every node: the "without temporal scope" row
    of the paper's Table 4).
    """
    t = torch.arange(2 * num_frames) % num_frames
    if trs is None:
        return torch.ones(2 * num_frames, 2 * num_frames)
    return ((t[:, None] - t[None, :]).abs() <= trs).to(torch.float32)


def positional_encoding(num_frames: int, dim: int) -> torch.Tensor:
    """Eq. (5), (6): PE(pos, 2k) = sin(pos / 10000^{2k/d}), PE(pos, 2k+1) = cos(pos / 10000^{2k/d})."""
    pos = torch.arange(num_frames, dtype=torch.float64)[:, None]
    two_k = torch.arange(0, dim, 2, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, two_k / dim)
    pe = torch.zeros(num_frames, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)[:, : dim // 2]
    return pe.to(torch.float32)


def patch_pool_matrix(size: int, p: int) -> torch.Tensor:
    """(P, size) averaging matrix of ``AdaptiveAvgPool`` along one axis: bin i averages
    [floor(i·size/P), ceil((i+1)·size/P)). As a matrix product it exports for any size (ONNX's
    adaptive pooling needs size divisible by P)."""
    m = torch.zeros(p, size)
    for i in range(p):
        lo, hi = (i * size) // p, -(-(i + 1) * size // p)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _tracing() -> bool:
    """Shape checks are skipped under the TorchScript tracer (the ONNX exporter), where sizes are
    traced tensors and comparing them only warns; the shapes it traces are the eager ones."""
    return torch.jit.is_tracing()


def _mask_bias(adj: torch.Tensor) -> torch.Tensor:
    """0 where a_ij = 1, −inf elsewhere: added to the scores, the softmax runs over N_i only."""
    return torch.zeros_like(adj).masked_fill(adj == 0, float("-inf"))


# -- layers ------------------------------------------------------------------------------------------
class GraphAttention(nn.Module):
    """One multi-head graph attention layer, Eq. (2)-(4) (and (8), (9) in the fusion graph):

        e_ij = LeakyReLU(attᵀ [W x_i ‖ W x_j])              Eq. (2)
        β_ij = softmax over j ∈ N_i of e_ij                 Eq. (3) — masked by the adjacency
        x'_i = σ(mean_heads Σ_{j∈N_i} β_ij W x_j)           Eq. (4), heads averaged (Sec. 3.3.2)

    attᵀ[u ‖ v] = att_srcᵀu + att_dstᵀv, so all N² coefficients come from two (N,) vectors.
    """

    def __init__(self, cin: int, cout: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.cout = heads, cout
        self.W = nn.Linear(cin, heads * cout, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, cout))
        self.att_dst = nn.Parameter(torch.empty(heads, cout))
        self.drop = nn.Dropout(dropout)
        nn.init.kaiming_normal_(self.W.weight, nonlinearity="leaky_relu", a=NEGATIVE_SLOPE)  # Sec. 4.2.2
        for a in (self.att_src, self.att_dst):
            nn.init.normal_(a, 0.0, math.sqrt(2.0 / (2 * cout)))

    def attention(self, x: torch.Tensor, mask_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, cin) → β (B, H, N, N) and W x (B, H, N, cout)."""
        b, n, _ = x.shape
        wx = self.W(x).view(b, n, self.heads, self.cout).transpose(1, 2)
        e_i = (wx * self.att_src[:, None, :]).sum(-1)  # attᵀ's half on W x_i: (B, H, N)
        e_j = (wx * self.att_dst[:, None, :]).sum(-1)  # and on W x_j
        e = F.leaky_relu(e_i.unsqueeze(-1) + e_j.unsqueeze(-2), NEGATIVE_SLOPE)  # Eq. (2)
        return torch.softmax(e + mask_bias, dim=-1), wx  # Eq. (3)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        beta, wx = self.attention(x, mask_bias)
        return F.elu((self.drop(beta) @ wx).mean(dim=1))  # Eq. (4): heads averaged, then σ


def _trunk_stages(net: nn.Module, relation_stride: int) -> tuple[list[nn.Module], list[nn.Module], int]:
    """Split a backbone into the stages up to ``relation_stride`` and the rest; channels at the split."""
    if isinstance(net, ResNet):
        stem = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1]  # stride 4
        upper = {8: [net.layer2], 16: [net.layer2, net.layer3]}[relation_stride]
        head = stem + upper
        tail = [m for m in (net.layer2, net.layer3, net.layer4) if m not in upper]
        last = head[-1][-1]
        channels = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
    elif isinstance(net, MobileNetV2):
        cut = {8: 7, 16: 14}[relation_stride]  # features[:7] end at stride 8, features[:14] at 16
        head, tail = list(net.features[:cut]), list(net.features[cut:])
        channels = net.features[cut - 1].out_channels
    elif hasattr(net, "split"):  # any other trunk: ``split(stride) -> (head stages, tail stages, channels)``
        head, tail, channels = net.split(relation_stride)
    else:
        raise ModelError(f"arpgnet cannot split a {type(net).__name__} trunk: use a backbone from models/backbones.py")
    return head, tail, channels


def _run(stages: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for m in stages:
        x = m(x)
    return x


@torch.no_grad()
def _map_size(stages: Sequence[nn.Module], input_size: int) -> int:
    """Side of the feature map the stages give for a square frame: one dry run in eval mode (BN
    statistics untouched), so any trunk's padding and pooling rules are taken as they are."""
    modes = [m.training for m in stages]
    for m in stages:
        m.eval()
    side = _run(stages, torch.zeros(1, 3, input_size, input_size)).shape[-1]
    for m, mode in zip(stages, modes):
        m.train(mode)
    return int(side)


# -- the network --------------------------------------------------------------------------------------
class ARPGNet(nn.Module):
    """``forward(clip (B, T, 3, S, S))`` → expression probabilities (B, C).

    Streaming split: ``encode_frames(frames (N, 3, S, S))`` → (appearance (N, C'), relation (N, C')),
    once per frame; ``fuse(appearance (B, T, C'), relation (B, T, C'))`` → probabilities (B, C), per
    window. ``forward(clip)`` is exactly ``fuse(*encode_frames(clip.flatten(0, 1)))`` reshaped.
    """

    def __init__(
        self,
        backbone: nn.Module,
        relation_backbone: nn.Module | None,
        num_classes: int,
        num_frames: int,
        input_size: int,
        dim: int,
        heads: int,
        patches: int,
        relation_layers: int,
        relation_stride: int,
        trs: int | None,
        fusion_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.num_classes, self.num_frames, self.input_size, self.dim = num_classes, num_frames, input_size, dim
        self.backbone = backbone
        head, tail, tap_channels = _trunk_stages(backbone, relation_stride)
        # plain lists: the stages stay registered once, under ``backbone`` (torchvision names)
        self._head, self._tail = head, tail
        self.relation_backbone = relation_backbone
        self._relation_head = _trunk_stages(relation_backbone, relation_stride)[0] if relation_backbone is not None else None
        # appearance: InsightFace's first FC layer (with its BN) on the pooled last feature map
        self.appearance_fc = nn.Linear(backbone.out_channels, dim)
        self.appearance_bn = nn.BatchNorm1d(dim)
        nn.init.kaiming_normal_(self.appearance_fc.weight)
        nn.init.zeros_(self.appearance_fc.bias)
        # relation: AdaPool to P×P patches, then GAT layers on the Eq. (1) graph
        m = _map_size(head, input_size)
        if m < patches:
            raise ModelError(f"a {input_size}px face gives a {m}×{m} map at stride {relation_stride}: too small for {patches}×{patches} patches; lower patches or raise input_size")
        self.register_buffer("pool", patch_pool_matrix(m, patches), persistent=False)
        self.register_buffer("region_mask", _mask_bias(face_region_adjacency(patches)), persistent=False)
        dims = [tap_channels] + [dim] * relation_layers
        self.relation_gat = nn.ModuleList(GraphAttention(a, b, heads, dropout) for a, b in zip(dims[:-1], dims[1:]))
        # fusion: PE (Eq. 5, 6) and the TRS-masked 2T-node graph (Eq. 7)
        self.trs = trs
        self.register_buffer("pe", positional_encoding(num_frames, dim), persistent=False)
        self.register_buffer("fusion_mask", _mask_bias(trs_adjacency(num_frames, trs)), persistent=False)
        self.fusion_gat = nn.ModuleList(GraphAttention(dim, dim, heads, dropout) for _ in range(fusion_layers))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dim, num_classes)
        )

    def load_trunk_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a pre-trained trunk (a backbone's state_dict, e.g. a face network's) into the
        appearance trunk and, when it has its own, the relation trunk (its stages only), as the
        paper initialises both from InsightFace (Sec. 3.2, 3.3)."""
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"trunk weights do not fit arpgnet's backbone: missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
        if self.relation_backbone is not None:
            own = self.relation_backbone.state_dict()
            self.relation_backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)

    # -- per frame ----------------------------------------------------------------------------------
    def _relation(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map (N, C, m, m) → relation feature (N, C')."""
        if not _tracing() and fmap.shape[-2:] != (self.pool.shape[1], self.pool.shape[1]):
            raise ModelError(f"arpgnet was built for {self.input_size}px frames; got frames whose relation map is {tuple(fmap.shape[-2:])}")
        # AdaPool (Sec. 3.3.1): P_h F P_wᵀ per channel → (N, P², C) patch nodes
        nodes = (self.pool @ fmap @ self.pool.T).flatten(2).transpose(1, 2)
        for layer in self.relation_gat:
            nodes = layer(nodes, self.region_mask)
        return nodes.mean(dim=1)  # "relation representations of all patches are averaged"

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, 3, S, S), normalised as ``card.mean/std`` → appearance (N, C'), relation (N, C')."""
        mid = _run(self._head, frames)
        top = _run(self._tail, mid)
        appearance = self.appearance_bn(self.appearance_fc(top.mean(dim=(2, 3))))
        rel_map = mid if self._relation_head is None else _run(self._relation_head, frames)
        return appearance, self._relation(rel_map)

    # -- per window ---------------------------------------------------------------------------------
    def fuse_features(self, appearance: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """(B, T, C') × 2 → the fused 2T node features (B, 2T, C'): appearance nodes, then relation."""
        if not _tracing() and (appearance.shape[1:] != (self.num_frames, self.dim) or relation.shape != appearance.shape):
            raise ModelError(
                f"arpgnet fuses windows of T={self.num_frames} frames of {self.dim}-d features; got appearance "
                f"{tuple(appearance.shape)} and relation {tuple(relation.shape)} (rebuild with num_frames=T for other windows)"
            )
        x = torch.cat([appearance + self.pe, relation + self.pe], dim=1)  # Eq. (5), (6); node order of Eq. (7)
        for layer in self.fusion_gat:
            x = layer(x, self.fusion_mask)  # Eq. (8), (9)
        return x

    def fuse_logits(self, appearance: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        x = self.fuse_features(appearance, relation)
        t = self.num_frames
        video = torch.cat([x[:, :t], x[:, t:]], dim=-1).mean(dim=1)  # frame-wise concat, pooled over time
        return self.classifier(video)

    def fuse(self, appearance: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """appearance, relation (B, T, C') of T consecutive frames → probabilities (B, C)."""
        return torch.softmax(self.fuse_logits(appearance, relation), dim=-1)

    # -- whole clips ----------------------------------------------------------------------------------
    def _encode_clip(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not _tracing() and (clip.dim() != 5 or clip.shape[1] != self.num_frames):
            raise ModelError(f"arpgnet takes clips (B, {self.num_frames}, 3, S, S); got {tuple(clip.shape)}")
        b, t = clip.shape[:2]
        appearance, relation = self.encode_frames(clip.reshape(b * t, *clip.shape[2:]))
        return appearance.view(b, t, -1), relation.view(b, t, -1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip (B, T, 3, S, S) → expression probabilities (B, C) (softmax over ``card.labels``)."""
        return self.fuse(*self._encode_clip(clip))

    def forward_aux(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training outputs: ``logits`` (B, C) for cross-entropy (RML, AFEW) or focal loss (Aff-Wild2),
        ``probs``, per-frame ``appearance`` and ``relation`` (B, T, C'), fused ``nodes`` (B, 2T, C')."""
        appearance, relation = self._encode_clip(clip)
        nodes = self.fuse_features(appearance, relation)
        t = self.num_frames
        logits = self.classifier(torch.cat([nodes[:, :t], nodes[:, t:]], dim=-1).mean(dim=1))
        return {"logits": logits, "probs": torch.softmax(logits, -1), "appearance": appearance, "relation": relation, "nodes": nodes}


@register_model("arpgnet")
def arpgnet(
    backbone: str = "resnet50",
    labels: Sequence[str] | None = None,
    num_frames: int = 16,
    input_size: int = 112,
    dim: int = 512,
    heads: int = 4,
    patches: int = 6,
    relation_layers: int = 3,
    relation_stride: int = 8,
    separate_relation_trunk: bool = True,
    trs: int = 3,
    use_trs: bool = True,
    fusion_layers: int = 1,
    dropout: float = 0.25,
    backbone_kw: dict[str, Any] | None = None,
) -> ARPGNet:
    """Build ARPGNet, randomly initialised (``card.kind == "untrained"``).

    - ``labels``: class names, default auflow's canonical seven expressions (AFEW's set; RML has
      six, without neutral). Probabilities are a softmax over them.
    - ``num_frames`` T: the window (16 for RML/AFEW, 8 for Aff-Wild2; see ``auflow.models.data.sampling``).
    - ``trs``, ``use_trs``: the Temporal Response Scope of Eq. (7); ``use_trs=False`` drops the mask.
    - ``backbone``: ``resnet50`` (the paper's InsightFace is a ResNet-50), ``resnet18`` or
      ``mobilenet_v2`` (+ ``backbone_kw={"width_mult": …}``) for CPU.
    - the rest: see the module docstring.
    """
    names = tuple(labels) if labels is not None else EXPRESSIONS
    if len(names) < 2 or len(set(names)) != len(names):
        raise ModelError(f"labels must be at least two distinct names, got {names}")
    checks = [
        (num_frames >= 1, f"num_frames must be >= 1, got {num_frames}"),
        (trs >= 0, f"trs must be >= 0 frames, got {trs}"),
        (relation_stride in (8, 16), f"relation_stride must be 8 or 16, got {relation_stride}"),
        (min(dim, heads, patches, relation_layers, fusion_layers) >= 1, "dim, heads, patches, relation_layers and fusion_layers must be >= 1"),
        (0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}"),
        (input_size >= 32, f"input_size={input_size} is below the backbones' stride of 32"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ModelError(msg)
    net = build_trunk(backbone, **(backbone_kw or {}))
    rel_net = None
    if separate_relation_trunk:
        rel_net = build_trunk(backbone, **(backbone_kw or {}))
        _drop_tail(rel_net, relation_stride)
    model = ARPGNet(
        net, rel_net, len(names), num_frames, input_size, dim, heads, patches, relation_layers, relation_stride,
        trs if use_trs else None, fusion_layers, dropout,
    )
    config = {
        "backbone": backbone, "labels": list(names), "num_frames": num_frames, "input_size": input_size, "dim": dim,
        "heads": heads, "patches": patches, "relation_layers": relation_layers, "relation_stride": relation_stride,
        "separate_relation_trunk": separate_relation_trunk, "trs": trs, "use_trs": use_trs,
        "fusion_layers": fusion_layers, "dropout": dropout, "backbone_kw": dict(backbone_kw or {}),
    }
    model.card = ModelCard("arpgnet", "expr", names, config, input_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           multilabel=False, paper="ARPGNet (Li et al.)")
    return model


def _drop_tail(net: nn.Module, relation_stride: int) -> None:
    """The relation trunk needs only the stages up to the tap: replace the rest, so no parameter
    sits unused (and untrained) in the checkpoint."""
    if isinstance(net, ResNet):
        net.layer4 = nn.Identity()
        if relation_stride == 8:
            net.layer3 = nn.Identity()
    elif isinstance(net, MobileNetV2):
        net.features = net.features[: {8: 7, 16: 14}[relation_stride]]
    elif isinstance(net, SmallConvTrunk):
        net.stages = net.stages[: len(net.split(relation_stride)[0])]
