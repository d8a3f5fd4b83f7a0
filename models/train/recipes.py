"""Training recipes: how each registered model trains — its stages, its loss in each, its options.

The trainer knows nothing of any model: it looks the model's recipe up here by the model's
registry name (``RECIPES.get("me_graphau")``) and calls

- ``recipe.setup(model, train_set)`` once, before the first step (class weights from the
  training labels' occurrence rates, a co-occurrence prior, …);
- ``recipe.loss(model, images, labels, stage)`` every step → ``{"loss": scalar, other terms…}``;
- ``recipe.parameters(model, stage)`` at each stage start → the parameters that stage trains;
- ``recipe.predict(model, images)`` in evaluation → probabilities (B, N);
- ``recipe.score(labels, probs, names, threshold, dataset)`` → the model's metrics: per-AU F1 and
  accuracy (AU models), accuracy and per-class F1 (+ Aff-Wild2's 0.67·F1 + 0.33·Acc) for ``arpgnet``,
  the nine multi-label metrics of paper 004 for ``svml_rgcn``.

A recipe's ``stages`` name the papers' training stages, in order; a training config lists the same
names with each stage's epochs, optimiser and schedule. Options (``train.recipe`` in the config)
are a pydantic model, so a misspelt one is an error naming the valid ones.

A new model plugs in by registering a recipe under its model name::

    @RECIPES.register("my_model")
    class MyRecipe(TrainingRecipe):
        stages = ("main",)
        def loss(self, model, images, labels, stage): ...
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, ValidationError

from auflow.engine.configfile import Strict, format_validation_error
from auflow.engine.errors import ConfigError
from auflow.engine.registry import Registry
from auflow.models.losses import PAPER_LAMBDA, au_class_weights, me_graphau_loss, weighted_asymmetric_loss
from auflow.models.metrics import au_metrics

# registers baseline_au (the no-graph control trained by BaselineRecipe below) for code that imports
# only the trainer; auflow.models.zoo should import it too, so that list_models() shows it
from auflow.models.au import baseline as _baseline  # noqa: F401

log = logging.getLogger(__name__)

__all__ = ["RECIPES", "ExprMetrics", "MultiLabelMetrics", "RecipeOptions", "TrainingRecipe", "build_recipe", "class_weights",
           "metrics_from_dict"]

RECIPES: Registry = Registry(
    "training recipe",
    "How a registered model trains, by the model's registry name. Entry: a TrainingRecipe subclass "
    "with ``stages`` (names, in order) and ``loss(model, images, labels, stage) -> {'loss': ...}``; "
    "built as ``cls(options_dict)``.",
)


class RecipeOptions(Strict):
    """Options of a training recipe (the one config base: unknown keys are errors)."""


class WeightedOptions(RecipeOptions):
    class_weights: bool = Field(True, description="weight each AU by 1/occurrence rate (Eq. 6/16 w_i); false = w_i = 1")


def class_weights(train_set, enabled: bool = True) -> torch.Tensor | None:
    """w_i of L_WA from the training labels (``train_set.labels``, (n, N)); None when disabled.

    An AU that never occurs in the training set would get an infinite weight; it is counted as
    occurring once (rate 1/(n+1)) and a warning says so.
    """
    if not enabled:
        return None
    labels = np.asarray(train_set.labels, np.float64)
    rates = labels.mean(axis=0)
    floor = 1.0 / (len(labels) + 1)
    if np.any(rates < floor):
        names = [a for a, r in zip(train_set.au_names, rates) if r < floor]
        log.warning("AUs %s never occur in the training set; their weight assumes one occurrence", names)
    return au_class_weights(np.clip(rates, floor, 1.0).tolist())


class TrainingRecipe:
    """Base recipe: one stage, L_WA on ``forward_aux(x)["probs"]``, every parameter trained."""

    stages: ClassVar[tuple[str, ...]] = ("main",)
    Options: ClassVar[type[RecipeOptions]] = WeightedOptions
    #: one line for the card: the objective, with its equation numbers
    objective: ClassVar[str] = "L_WA (weighted asymmetric loss)"

    def __init__(self, options: dict | None = None) -> None:
        try:
            self.options = self.Options(**(options or {}))
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"train.recipe ({type(self).__name__})", self.Options)) from None
        self.weights: torch.Tensor | None = None

    def setup(self, model: torch.nn.Module, train_set) -> None:
        self.weights = class_weights(train_set, getattr(self.options, "class_weights", True))

    def _w(self, like: torch.Tensor) -> torch.Tensor | None:
        return None if self.weights is None else self.weights.to(like.device)

    def parameters(self, model: torch.nn.Module, stage: str) -> Iterable[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def loss(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        out = model.forward_aux(images)
        wa = weighted_asymmetric_loss(out["probs"], labels, self._w(labels))
        return {"loss": wa, "wa": wa}

    def predict(self, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model(images)

    def score(self, labels: np.ndarray, probs: np.ndarray, names: Sequence[str], threshold: float = 0.5,
              dataset: str | None = None):
        """The model's metrics on a split: per-AU F1 and accuracy at ``threshold``."""
        return au_metrics(labels, probs, names, threshold)

    def describe(self) -> dict:
        return {"recipe": type(self).__name__, "objective": self.objective, "options": self.options.model_dump()}


def build_recipe(model_name: str, options: dict | None = None) -> TrainingRecipe:
    """The recipe registered for ``model_name``, with its options checked."""
    from auflow.engine.errors import RegistryError

    try:
        cls = RECIPES.get(model_name)
    except RegistryError as e:
        raise ConfigError(f"model {model_name!r} has no training recipe: {e}") from None
    return cls(options)


# ---------------------------------------------------------------------------------------------
class MEGraphAUOptions(WeightedOptions):
    lam: float = Field(PAPER_LAMBDA, ge=0, description="λ of Eq. (8): 0.05 for ResNets, 0.01 for Swin")


@RECIPES.register("me_graphau")
class MEGraphAURecipe(TrainingRecipe):
    """ME-GraphAU's two stages (Sec. 2.3; :func:`auflow.models.losses.me_graphau_loss`):

    - ``anfl``: backbone + ANFL with L_WA (Eq. 6) on the FGG prediction;
    - ``mefl``: L_WA on the GatedGCN prediction + λ L_E (Eq. 7, 8).

    Every parameter trains in both stages, as in the authors' ``train_stage2.py`` (the MEFL and
    GatedGCN start from scratch in stage 2; the backbone and AFG carry on from stage 1).
    """

    stages = ("anfl", "mefl")
    Options = MEGraphAUOptions
    objective = "stage anfl: L_WA(FGG), Eq. (6); stage mefl: L_WA(GatedGCN) + λ L_E, Eq. (8)"

    def loss(self, model, images, labels, stage):
        out = model.forward_aux(images)
        return me_graphau_loss(out, labels, 1 if stage == "anfl" else 2, self._w(labels), self.options.lam)


@RECIPES.register("baseline_au")
class BaselineRecipe(TrainingRecipe):
    """The no-graph control: one stage of L_WA (Eq. 6) on the sigmoid of a linear head, so that it
    differs from ME-GraphAU in the graph only, not in the loss."""

    objective = "L_WA (weighted asymmetric loss, ME-GraphAU Eq. 6)"


@RECIPES.register("topo_au")
class TopoAURecipe(TrainingRecipe):
    """Topo-AU (paper 000, Sec. 3.2.2): one stage, L = L_WA (Eq. 15-17) on the fused prediction."""

    objective = "L = L_WA, Eq. (15)-(17)"

    def loss(self, model, images, labels, stage):
        from auflow.models.au.losses_topo_gcn import topo_au_loss

        return topo_au_loss(model.forward_aux(images), labels, self._w(labels))


class AUGCNOptions(RecipeOptions):
    class_weights: bool = Field(True, description="w_i of Eq. (7)-(8) from the training occurrence rates")
    lambda1: float = Field(3.0, ge=0, description="λ1 of Eq. (3) (Sec. 4.1: 3)")
    lambda2: float = Field(4.0, ge=0, description="λ2 of Eq. (9) (Sec. 4.1: 4)")
    prior: str = Field("auto", pattern="^(auto|paper|labels)$",
                       description="the AU relation graph: paper = Table 1 (BP4D/DISFA only), labels = P(j|i) of the "
                                   "training labels (Sec. 3.4), auto = paper where it has one, else labels")


@RECIPES.register("au_gcn")
class AUGCNRecipe(TrainingRecipe):
    """AU-GCN (paper 002, Sec. 4.1): ``autoencoders`` trains the ROI auto-encoders with L_ROI
    (Eq. 3; 12 epochs in the paper), then ``all`` trains every module with L_au (Eq. 9; 40 epochs)."""

    stages = ("autoencoders", "all")
    Options = AUGCNOptions
    objective = "stage autoencoders: L_ROI = L_softmax^ROI + λ1 L_R, Eq. (3); stage all: L_au = L_softmax + λ2 L_dice, Eq. (9)"

    def setup(self, model, train_set) -> None:
        super().setup(model, train_set)
        from auflow.models.au.au_gcn import PAPER_RELATIONS

        labels = tuple(model.card.labels)
        paper = next((ds for ds in PAPER_RELATIONS if _au_set(ds) == labels), None)
        use_labels = self.options.prior == "labels" or (self.options.prior == "auto" and paper is None)
        if self.options.prior == "paper" and paper is None:
            raise ConfigError(f"train.recipe.prior=paper: the paper's Table 1 covers BP4D and DISFA only, not {labels}; use labels or auto")
        if use_labels:
            model.set_cooccurrence_prior(model.cooccurrence_prior(np.asarray(train_set.labels)), source="training labels")

    def loss(self, model, images, labels, stage):
        from auflow.models.au.losses_topo_gcn import au_gcn_loss

        out = model.forward_aux(images)
        return au_gcn_loss(out, labels, 1 if stage == "autoencoders" else 2, self._w(labels),
                           self.options.lambda1, self.options.lambda2)


def _au_set(dataset: str) -> tuple[str, ...]:
    from auflow.models.data.core import AU_SETS

    return AU_SETS.get(dataset, ())


# -- expression models (issue 7) -----------------------------------------------------------------
@dataclass(frozen=True)
class ExprMetrics:
    """Single-label expression scores (paper 003 Sec. 4.1): accuracy of the argmax, per-class F1 of
    the one-hot argmax predictions, their mean, and on Aff-Wild2 the ABAW 2020 metric
    M = 0.67·F1 + 0.33·Acc (Eq. 10). Fractions in [0, 1]."""

    labels: tuple[str, ...]
    accuracy: float
    f1: tuple[float, ...]
    macro_f1: float
    samples: int
    challenge: float | None = None  # Aff-Wild2's M
    kind: str = "single_label"

    def to_dict(self) -> dict[str, Any]:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d["per_class"] = {c: {"f1": f} for c, f in zip(self.labels, self.f1)}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExprMetrics:
        return cls(tuple(d["labels"]), d["accuracy"], tuple(d["f1"]), d["macro_f1"], d["samples"], d.get("challenge"))

    def summary(self) -> str:
        s = f"accuracy {100 * self.accuracy:.1f}, macro F1 {100 * self.macro_f1:.1f}"
        return s if self.challenge is None else s + f", Aff-Wild2 M = 0.67·F1 + 0.33·Acc {self.challenge:.4f}"


@dataclass(frozen=True)
class MultiLabelMetrics:
    """The nine multi-label metrics of paper 004 (Table 1, :func:`auflow.models.expr_metrics.multilabel_metrics`)
    in its column order, and the per-class F1 at ``threshold``."""

    labels: tuple[str, ...]
    values: dict[str, float]
    f1: tuple[float, ...]
    threshold: float
    samples: int
    kind: str = "multi_label"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "labels": list(self.labels), "values": dict(self.values), "f1": list(self.f1),
                "threshold": self.threshold, "samples": self.samples, **self.values,
                "per_class": {c: {"f1": f} for c, f in zip(self.labels, self.f1)}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiLabelMetrics:
        return cls(tuple(d["labels"]), dict(d["values"]), tuple(d["f1"]), d["threshold"], d["samples"])

    @property
    def macro_f1(self) -> float:
        return self.values["macro_f1"]

    def summary(self) -> str:
        v = self.values
        return (f"macro-F1 {v['macro_f1']:.4f}, micro-F1 {v['micro_f1']:.4f}, AP {v['average_precision']:.4f}, "
                f"HL {v['hamming_loss']:.4f}, one-error {v['one_error']:.4f}")


def metrics_from_dict(d: dict[str, Any]):
    """The metrics object a record's ``to_dict()`` came from (AU, single-label or multi-label)."""
    from auflow.models.metrics import AUMetrics

    kind = d.get("kind")
    if kind == "single_label":
        return ExprMetrics.from_dict(d)
    if kind == "multi_label":
        return MultiLabelMetrics.from_dict(d)
    keep = ("au_names", "f1", "accuracy", "precision", "recall", "support", "threshold", "samples")
    return AUMetrics(**{k: tuple(d[k]) if isinstance(d[k], list) else d[k] for k in keep})


class PretrainOptions(RecipeOptions):
    """Pre-training of the trunk on the generated data's single faces before training (generated data
    only): the stand-in for the papers' pre-trained networks (InsightFace, paper 003; ResNet-50 on
    RAF-Basic, paper 004), which cannot be downloaded here. Real data: give model.backbone_weights or
    model.init_from instead."""

    images: int = Field(2048, ge=6, description="generated single faces")
    epochs: int = Field(6, ge=1)
    lr: float = Field(3e-3, gt=0, description="Adam")
    batch_size: int = Field(32, ge=2)
    seed: int = Field(3, description="seed of the faces and of the pre-training")


def _normalised(images: np.ndarray | torch.Tensor, card) -> torch.Tensor:
    from auflow.models.expr.train_utils import normalise

    return normalise(images, card.mean, card.std)


def _pretrain(model, train_set, opts: PretrainOptions, model_name: str) -> dict[str, torch.Tensor]:
    from auflow.models.expr.train_utils import pretrain_trunk

    if not hasattr(train_set, "pretraining_set"):
        raise ConfigError(f"train.recipe.pretrain: {model_name} pre-trains its trunk only on generated data "
                          "(synthetic_motion, synthetic_multilabel); for real data give model.backbone_weights or model.init_from")
    images, targets = train_set.pretraining_set(opts.images, opts.seed)
    cfg = model.card.config
    state, fit = pretrain_trunk(cfg["backbone"], _normalised(images, model.card), targets, opts.epochs,
                                cfg.get("backbone_kw") or None, opts.batch_size, opts.lr, seed=opts.seed)
    task = "classification of single-label faces" if not torch.is_floating_point(targets) else "regression of face parameters"
    model.card.training["pretrained_trunk"] = {"on": "generated single faces", "task": task, "images": len(images),
                                               "epochs": opts.epochs, "final_loss": round(fit.losses[-1], 6)}
    return state


def _focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), FL = −(1 − p_t)^γ log p_t, mean over the batch."""
    logp = torch.log_softmax(logits, dim=-1).gather(1, y[:, None]).squeeze(1)
    return (-(1.0 - logp.exp()).pow(gamma) * logp).mean()


class ARPGNetOptions(RecipeOptions):
    loss: str = Field("cross_entropy", pattern="^(cross_entropy|focal)$",
                      description="paper 003 Sec. 4.2.2: cross-entropy for RML and AFEW, focal loss for Aff-Wild2")
    focal_gamma: float = Field(2.0, ge=0, description="γ of the focal loss (Lin et al.'s default; the paper states none)")
    pretrain: PretrainOptions | None = Field(None, description="generated data only: pre-train the trunk on single faces first")


@RECIPES.register("arpgnet")
class ARPGNetRecipe(TrainingRecipe):
    """ARPGNet (paper 003, Sec. 4.2.2): one stage, cross-entropy (RML, AFEW) or focal loss
    (Aff-Wild2) on the classifier's logits; Adam with 1e-4 for the pre-trained blocks and 1e-3 for the
    rest (``optimizer.lr_groups`` in the configs). Scored by accuracy and per-class F1, and on
    Aff-Wild2 by M = 0.67·F1 + 0.33·Acc (Eq. 10)."""

    Options = ARPGNetOptions
    objective = "cross-entropy on the video-level logits (RML, AFEW); focal loss on Aff-Wild2 (Sec. 4.2.2)"

    #: the pre-trained trunk's state_dict, when ``pretrain`` made one (e.g. to start a per-frame baseline alike)
    pretrained_trunk: dict[str, torch.Tensor] | None = None

    def setup(self, model, train_set) -> None:
        if self.options.pretrain is not None:
            self.pretrained_trunk = _pretrain(model, train_set, self.options.pretrain, "arpgnet")
            model.load_trunk_weights(self.pretrained_trunk)

    def loss(self, model, images, labels, stage):
        logits = model.forward_aux(images)["logits"]
        if self.options.loss == "focal":
            fl = _focal_loss(logits, labels, self.options.focal_gamma)
            return {"loss": fl, "focal": fl}
        ce = torch.nn.functional.cross_entropy(logits, labels)
        return {"loss": ce, "ce": ce}

    def score(self, labels, probs, names, threshold=0.5, dataset=None) -> ExprMetrics:
        from auflow.models.expr_metrics import accuracy, affwild2_score, f1_scores

        y, p = np.asarray(labels).astype(np.int64), np.asarray(probs)
        c = p.shape[1]
        f1 = f1_scores(np.eye(c, dtype=int)[y], np.eye(c)[p.argmax(axis=1)], threshold=0.5)
        return ExprMetrics(tuple(names), accuracy(y, p), tuple(float(v) for v in f1), float(f1.mean()), len(y),
                           affwild2_score(y, p) if dataset == "affwild2" else None)


class SVMLRGCNOptions(RecipeOptions):
    class_feature_images: int = Field(100, ge=1, description="Eq. (5): basic-expression images per label for f_c "
                                      "(generated data: single-label faces; real data: the training images with exactly "
                                      "that one label)")
    class_feature_seed: int = Field(5, description="generated data: seed of the basic-expression faces")
    pretrain: PretrainOptions | None = Field(None, description="generated data only: pre-train the trunk on the "
                                             "basic-expression faces first (paper 004: ResNet-50 trained on RAF-Basic)")


@RECIPES.register("svml_rgcn")
class SVMLRGCNRecipe(TrainingRecipe):
    """SVML-RGCN (paper 004, Sec. 4.2): before training, the label graph from the training labels
    (Eq. 3, 4, the card's t1, t2) and the visual node features f_c from basic-expression images
    (Eq. 5, the trunk as it is then: pre-trained when the config gives weights); one stage of binary
    cross-entropy (Eq. 2); Adam, weight decay 2e-4, ÷10 every 20 of 80 epochs, 2e-4 for the
    classifier branch and 2e-6 for the backbone on RAF-ML (``optimizer.lr_groups``). Scored by the
    nine multi-label metrics."""

    Options = SVMLRGCNOptions
    objective = "binary cross-entropy over the labels, Eq. (2)"

    def setup(self, model, train_set) -> None:
        o = self.options
        if o.pretrain is not None:
            model.backbone.load_state_dict(_pretrain(model, train_set, o.pretrain, "svml_rgcn"))
        if hasattr(train_set, "basic_images"):
            images, classes = train_set.basic_images(o.class_feature_images, o.class_feature_seed)
            source = f"{len(classes)} generated single-label faces"
        else:
            images, classes = _single_label_images(train_set, o.class_feature_images)
            source = f"{len(classes)} single-label training images"
        model.compute_class_features(_normalised(images, model.card), classes)
        model.set_label_graph(np.asarray(train_set.labels))
        model.card.training["class_features"] = source
        model.card.training["label_graph"] = f"Eq. (3), (4) on the {len(train_set)} training label sets"

    def loss(self, model, images, labels, stage):
        from auflow.models.expr.svml_rgcn import svml_rgcn_loss

        bce = svml_rgcn_loss(model.forward_aux(images), labels)
        return {"loss": bce, "bce": bce}

    def score(self, labels, probs, names, threshold=0.5, dataset=None) -> MultiLabelMetrics:
        from auflow.models.expr_metrics import f1_scores, multilabel_metrics

        y = np.asarray(labels).round().astype(np.int64)
        p = np.asarray(probs, np.float64)
        return MultiLabelMetrics(tuple(names), multilabel_metrics(y, p, threshold),
                                 tuple(float(v) for v in f1_scores(y, p, threshold)), float(threshold), len(y))


def _single_label_images(train_set, per_class: int) -> tuple[np.ndarray, torch.Tensor]:
    """Up to ``per_class`` training images per label among those with exactly one label, [0, 1] floats."""
    labels = np.asarray(train_set.labels)
    single = np.flatnonzero(labels.sum(axis=1) == 1)
    picked = [i for c in range(labels.shape[1]) for i in single[labels[single, c] == 1][:per_class]]
    missing = sorted(set(range(labels.shape[1])) - {int(labels[i].argmax()) for i in picked})
    if missing:
        names = getattr(train_set, "label_names", range(labels.shape[1]))
        raise ConfigError(f"svml_rgcn: no training image has only label(s) {[names[c] for c in missing]}: Eq. (5) needs "
                          "basic-expression images of every label")
    images = np.stack([train_set[i]["image"].numpy() for i in picked]).astype(np.float32) / 255.0
    return images, torch.as_tensor([int(labels[i].argmax()) for i in picked])
