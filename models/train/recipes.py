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
from typing import ClassVar

import numpy as np
import torch
from auflow.engine.configfile import Strict, format_validation_error
from auflow.engine.errors import ConfigError
from auflow.engine.registry import Registry

# registers baseline_au (the no-graph control trained by BaselineRecipe below) for code that imports
# only the trainer; auflow.models.zoo should import it too, so that list_models() shows it
from auflow.models.au import baseline as _baseline  # noqa: F401
from auflow.models.losses import PAPER_LAMBDA, au_class_weights, me_graphau_loss, weighted_asymmetric_loss
from auflow.models.metrics import au_metrics
from pydantic import Field, ValidationError

from .recipe_metrics import ExprMetrics, MultiLabelMetrics, metrics_from_dict

log = logging.getLogger(__name__)

__all__ = ["RECIPES", "ExprMetrics", "MultiLabelMetrics", "RecipeOptions", "TrainingRecipe", "build_recipe", "class_weights",
           "metrics_from_dict"]

RECIPES: Registry = Registry(
    "training recipe",
    "How a registered model trains, by the model's registry name. Entry: a TrainingRecipe subclass "
    "with ``stages`` (names, in order) and ``loss(model, images, labels, stage) -> {'loss': ...}``; "
    "built as ``cls(options_dict)``.",
    modules=("auflow.models.train.recipes_expr",),  # the expression models' recipes (the AU ones are below)
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
