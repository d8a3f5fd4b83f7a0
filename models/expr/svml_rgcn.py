"""SVML-RGCN: multi-label expressions with a label graph of positive and negative relations
(Zhang et al., paper 004).

Pipeline (Sec. 3, Fig. 3), dense with static shapes:

    image → CNN trunk → GAP → f ∈ R^D                                     (Sec. 3.1)
    label graph: P_ij = M_ij / N_ci from training labels, negative where P_ij < t1, positive where
                 P_ij > t2                                                 (Eq. 3, 4)
    nodes: α_c = MFB(f_c, e_c): visual class features f_c (Eq. 5), word embeddings e_c   (Eq. 6)
    R-GCN (L = 2) over the nodes → the classifier W_C ∈ R^{C×D}            (Eq. 7)
    ŷ = W_C f, p = σ(ŷ), binary cross-entropy                             (Eq. 1, 2)

The classifier does not depend on the image: it is generated from the label graph and the node
representations, and the image only enters through f.

Choices where the paper is silent (config keys in parentheses):

- σ of Eq. (7) is LeakyReLU(0.2) between R-GCN layers and nothing after the last, as in ML-GCN
  (Chen et al. 2019), which SVML-RGCN adapts: the last layer's output is a classifier weight and
  must be free to be negative.
- MFB (Yu et al. 2017) ends with power and L2 normalisation; Eq. (6) shows only its sum pooling
  (``mfb_normalize``, default True as in MFB).
- Until :meth:`SVMLRGCN.set_label_graph` sees training labels (or ``cooccurrence`` is given),
  the graph has no edges and Eq. (7) reduces to W_0 h_i. Until
  :meth:`SVMLRGCN.compute_class_features` sees basic-expression images, f_c is zero.
  Both are buffers saved with the checkpoint.
- P_ij of a label never seen in the training labels is undefined: its row gets no relation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auflow.engine.errors import ModelError
from auflow.models import register_model
from auflow.models.card import ModelCard
from auflow.models.expr.small_trunk import build_trunk
from auflow.models.expr.word_vectors import load_glove, stored_label_embeddings

#: the six basic expressions of RAF-ML, in the order the paper lists them (Sec. 3.3; RAF-DB's order)
RAF_ML_LABELS: tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger")
#: the paper's thresholds (t1, t2) and MFB (k, o) per dataset (Sec. 4.2, Implementation Details)
PAPER_SETTINGS: dict[str, dict[str, float]] = {
    "raf-ml": {"t1": 0.15, "t2": 0.4, "mfb_k": 4, "mfb_o": 1024},
    "raf-compound": {"t1": 0.15, "t2": 0.4, "mfb_k": 5, "mfb_o": 2000},
    "jaffe": {"t1": 1e-6, "t2": 0.45, "mfb_k": 5, "mfb_o": 1000},
}
#: relation order of the adjacency tensor
RELATIONS: tuple[str, ...] = ("positive", "negative")
NODE_INFO = ("both", "semantic", "visual")


# -- the label graph ----------------------------------------------------------------------------------
def label_cooccurrence(labels: np.ndarray) -> np.ndarray:
    """Eq. (3): P_ij = M_ij / N_ci from a 0/1 label matrix (N, C); P_ij estimates P(j | i).

    Rows of labels that never occur are NaN (undefined), so they get no relation.
    """
    y = np.asarray(labels)
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():
        raise ModelError(f"labels must be a 0/1 matrix (samples, classes); got shape {y.shape}")
    y = y.astype(np.float64)
    m = y.T @ y  # M_ij: samples with both i and j
    n = np.diag(m).copy()  # N_ci
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[:, None] > 0, m / n[:, None], np.nan)


def label_relations(p: np.ndarray, t1: float, t2: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (4): (positive, negative) (C, C) bool masks: negative where P_ij < t1, positive where
    P_ij > t2, none in between, on the diagonal, or where P_ij is undefined."""
    if not 0.0 <= t1 <= t2 <= 1.0:
        raise ModelError(f"thresholds must satisfy 0 <= t1 <= t2 <= 1, got t1={t1}, t2={t2}")
    p = np.asarray(p, dtype=np.float64)
    off = ~np.eye(len(p), dtype=bool) & np.isfinite(p)
    with np.errstate(invalid="ignore"):
        return off & (p > t2), off & (p < t1)


def relation_adjacency(positive: np.ndarray, negative: np.ndarray) -> torch.Tensor:
    """(R=2, C, C) float: row i of relation r holds 1/c_{i,r} at its neighbours j ∈ N_i^r, with
    c_{i,r} = |N_i^r| (Eq. 7); a row without neighbours is all zeros."""
    a = torch.as_tensor(np.stack([positive, negative]), dtype=torch.float32)
    return a / a.sum(dim=-1, keepdim=True).clamp(min=1.0)


# -- layers ---------------------------------------------------------------------------------------------
class MFB(nn.Module):
    """Eq. (6): α = SumPooling(Wᵀ f ∘ Vᵀ e, k), W ∈ R^{d1×ko}, V ∈ R^{d2×ko} → α ∈ R^o, then MFB's
    power (signed square root) and L2 normalisation."""

    def __init__(self, d1: int, d2: int, k: int, o: int, normalize: bool = True) -> None:
        super().__init__()
        self.k, self.o, self.normalize = k, o, normalize
        self.W = nn.Linear(d1, k * o)
        self.V = nn.Linear(d2, k * o)

    def forward(self, f: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        joint = self.W(f) * self.V(e)
        z = joint.view(*joint.shape[:-1], self.o, self.k).sum(-1)  # sum pooling, window k
        if not self.normalize:
            return z
        eps = 1e-8  # keeps the square root's gradient finite at 0
        z = torch.sign(z) * (torch.sqrt(z.abs() + eps) - math.sqrt(eps))
        return F.normalize(z, dim=-1)


class RGCNLayer(nn.Module):
    """Eq. (7): h_i' = σ(Σ_r Σ_{j∈N_i^r} (1/c_{i,r}) W_r h_j + W_0 h_i), dense over the C nodes."""

    def __init__(self, cin: int, cout: int, num_relations: int) -> None:
        super().__init__()
        self.W_r = nn.Parameter(torch.empty(num_relations, cout, cin))
        self.W_0 = nn.Linear(cin, cout, bias=False)
        bound = 1.0 / math.sqrt(cin)
        nn.init.uniform_(self.W_r, -bound, bound)
        nn.init.uniform_(self.W_0.weight, -bound, bound)

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """h (C, cin), adj (R, C, C) row-normalised → (C, cout), before σ."""
        messages = torch.einsum("ric,roc->io", adj @ h, self.W_r)  # Σ_r (Σ_j a_rij h_j) W_rᵀ
        return messages + self.W_0(h)


class SVMLRGCN(nn.Module):
    """``forward(x (B, 3, S, S))`` → label probabilities (B, C); ``forward_aux`` → training dict."""

    def __init__(
        self,
        backbone: nn.Module,
        word_embeddings: torch.Tensor,
        mfb_k: int,
        mfb_o: int,
        gcn_dims: Sequence[int],
        node_info: str,
        use_negative: bool,
        mfb_normalize: bool,
    ) -> None:
        super().__init__()
        c, d2 = word_embeddings.shape
        d = backbone.out_channels
        self.num_classes, self.feature_dim, self.node_info, self.use_negative = c, d, node_info, use_negative
        self.backbone = backbone
        self.register_buffer("word_embeddings", word_embeddings.clone())  # e_c
        self.register_buffer("class_features", torch.zeros(c, d))  # f_c, Eq. (5)
        self.register_buffer("adjacency", torch.zeros(len(RELATIONS), c, c))  # Eq. (4) → Eq. (7)
        self.mfb = MFB(d, d2, mfb_k, mfb_o, mfb_normalize) if node_info == "both" else None
        in_dim = {"both": mfb_o, "semantic": d2, "visual": d}[node_info]
        dims = [in_dim, *gcn_dims]
        self.gcn = nn.ModuleList(RGCNLayer(a, b, len(RELATIONS)) for a, b in zip(dims[:-1], dims[1:]))

    # -- graph inputs -----------------------------------------------------------------------------------
    def set_label_graph(self, labels: np.ndarray | None = None, t1: float | None = None, t2: float | None = None,
                        cooccurrence: np.ndarray | None = None) -> np.ndarray:
        """Build the relations from training labels (N, C) — or a given P — with Eq. (3), (4).
        Returns P; the card's config records it, so the model rebuilds with the same graph."""
        t1 = self.card.config["t1"] if t1 is None else t1
        t2 = self.card.config["t2"] if t2 is None else t2
        p = label_cooccurrence(labels) if cooccurrence is None else np.asarray(cooccurrence, dtype=np.float64)
        if p.shape != (self.num_classes, self.num_classes):
            raise ModelError(f"label graph for {self.num_classes} labels needs a {self.num_classes}×{self.num_classes} P, got {p.shape}")
        pos, neg = label_relations(p, t1, t2)
        if not self.use_negative:
            neg = np.zeros_like(neg)
        self.adjacency.copy_(relation_adjacency(pos, neg))
        self.card.config.update(t1=t1, t2=t2, cooccurrence=[[None if np.isnan(v) else float(v) for v in row] for row in p])
        return p

    def set_class_features(self, features: torch.Tensor | np.ndarray) -> None:
        """f_c (C, D) of Eq. (5), e.g. from another extractor trained on basic expressions."""
        f = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if f.shape != self.class_features.shape:
            raise ModelError(f"class features must be {tuple(self.class_features.shape)}, got {tuple(f.shape)}")
        self.class_features.copy_(f)

    @torch.no_grad()
    def compute_class_features(self, images: torch.Tensor, classes: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Eq. (5): f_c = mean of φ(I_{c,n}) over basic-expression images of class c, φ this model's
        feature extractor (eval mode). ``images`` (N, 3, S, S) normalised, ``classes`` (N,) indices."""
        was_training = self.training
        self.eval()
        feats = torch.cat([self.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
        self.train(was_training)
        classes = torch.as_tensor(classes)
        counts = torch.bincount(classes, minlength=self.num_classes)
        if (counts == 0).any():
            missing = [self.card.labels[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
            raise ModelError(f"no basic-expression images of {missing}: Eq. (5) needs at least one per label")
        f = torch.zeros(self.num_classes, feats.shape[1]).index_add_(0, classes, feats) / counts[:, None]
        self.class_features.copy_(f)
        return f

    # -- forward --------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image features f (B, D): trunk + global average pooling."""
        return self.backbone(x).mean(dim=(2, 3))

    def nodes(self) -> torch.Tensor:
        """Node representations h^(0) (C, ·): Eq. (6), or one source alone (Table 3's SML / VML)."""
        if self.node_info == "semantic":
            return self.word_embeddings
        if self.node_info == "visual":
            return self.class_features
        return self.mfb(self.class_features, self.word_embeddings)

    def classifier(self) -> torch.Tensor:
        """W_C (C, D): R-GCN layers of Eq. (7) over the label graph."""
        h = self.nodes()
        for i, layer in enumerate(self.gcn):
            h = layer(h, self.adjacency)
            if i < len(self.gcn) - 1:
                h = F.leaky_relu(h, 0.2)
        return h

    def forward_aux(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logits`` ŷ (B, C) for Eq. (2), ``probs`` σ(ŷ), ``features`` f (B, D), ``classifier`` W_C."""
        f = self.features(x)
        w = self.classifier()
        logits = f @ w.T  # Eq. (1): ŷ = W_C f
        return {"logits": logits, "probs": torch.sigmoid(logits), "features": f, "classifier": w}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, S, S), normalised as ``card.mean/std`` → label probabilities (B, C) in (0, 1)."""
        return torch.sigmoid(self.features(x) @ self.classifier().T)


def svml_rgcn_loss(out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Eq. (2) as a loss: binary cross-entropy on the logits, summed over labels, mean over the batch
    (the paper writes the log-likelihood; its negative is minimised)."""
    return F.binary_cross_entropy_with_logits(out["logits"], y.float(), reduction="none").sum(-1).mean()


@register_model("svml_rgcn")
def svml_rgcn(
    backbone: str = "resnet50",
    labels: Sequence[str] | None = None,
    dataset: str = "raf-ml",
    input_size: int = 224,
    t1: float | None = None,
    t2: float | None = None,
    mfb_k: int | None = None,
    mfb_o: int | None = None,
    gcn_layers: int = 2,
    gcn_hidden: int | None = None,
    node_info: str = "both",
    use_negative: bool = True,
    mfb_normalize: bool = True,
    word_vectors: str | None = None,
    cooccurrence: list[list[float | None]] | None = None,
    backbone_kw: dict[str, Any] | None = None,
) -> SVMLRGCN:
    """Build SVML-RGCN, randomly initialised (``card.kind == "untrained"``).

    - ``labels``: default RAF-ML's six basic expressions (canonical names).
    - ``dataset``: ``raf-ml`` | ``raf-compound`` | ``jaffe``: the paper's t1, t2, MFB k, o for it;
      ``t1``, ``t2``, ``mfb_k``, ``mfb_o`` override them.
    - ``gcn_layers`` (2 in the paper), ``gcn_hidden``: hidden widths (default D, the feature size;
      the last layer always outputs D, the classifier's width; the paper's D is 2048).
    - ``node_info``: ``both`` (MFB of visual and semantic), ``semantic``, ``visual`` (Table 3).
    - ``use_negative=False`` keeps only the positive relations.
    - ``word_vectors``: a GloVe text file (the paper's); unset, auflow's stored MiniLM label table.
    - ``cooccurrence``: P (C×C) of Eq. (3), e.g. from a training set; or call ``set_label_graph``.
    """
    if dataset not in PAPER_SETTINGS:
        raise ModelError(f"unknown dataset {dataset!r}; choose one of {', '.join(PAPER_SETTINGS)}")
    if node_info not in NODE_INFO:
        raise ModelError(f"node_info must be one of {NODE_INFO}, got {node_info!r}")
    if gcn_layers < 1:
        raise ModelError(f"gcn_layers must be >= 1, got {gcn_layers}")
    paper = PAPER_SETTINGS[dataset]
    t1 = paper["t1"] if t1 is None else t1
    t2 = paper["t2"] if t2 is None else t2
    mfb_k = int(paper["mfb_k"] if mfb_k is None else mfb_k)
    mfb_o = int(paper["mfb_o"] if mfb_o is None else mfb_o)
    names = tuple(labels) if labels is not None else RAF_ML_LABELS
    if len(names) < 2 or len(set(names)) != len(names):
        raise ModelError(f"labels must be at least two distinct names, got {names}")
    vectors = load_glove(word_vectors, names) if word_vectors is not None else stored_label_embeddings(names)
    net = build_trunk(backbone, **(backbone_kw or {}))
    d = net.out_channels
    dims = [gcn_hidden or d] * (gcn_layers - 1) + [d]
    model = SVMLRGCN(net, torch.from_numpy(vectors), mfb_k, mfb_o, dims, node_info, use_negative, mfb_normalize)
    config = {
        "backbone": backbone, "labels": list(names), "dataset": dataset, "input_size": input_size, "t1": t1, "t2": t2,
        "mfb_k": mfb_k, "mfb_o": mfb_o, "gcn_layers": gcn_layers, "gcn_hidden": gcn_hidden, "node_info": node_info,
        "use_negative": use_negative, "mfb_normalize": mfb_normalize, "word_vectors": word_vectors,
        "cooccurrence": None, "backbone_kw": dict(backbone_kw or {}),
    }
    model.card = ModelCard("svml_rgcn", "expr", names, config, input_size, paper="SVML-RGCN (Zhang et al.)", training={
        "word_vectors": word_vectors or "auflow.models.expr/label_embeddings.json (all-MiniLM-L6-v2)"})
    if cooccurrence is not None:
        p = np.array([[np.nan if v is None else v for v in row] for row in cooccurrence], dtype=np.float64)
        model.set_label_graph(cooccurrence=p)
    return model
