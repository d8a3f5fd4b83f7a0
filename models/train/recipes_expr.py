"""The expression models' recipes: ``arpgnet`` (paper 003) and ``svml_rgcn`` (paper 004), registered in
:data:`~auflow.models.train.recipes.RECIPES` (which imports this module on its first lookup)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from auflow.engine.errors import ConfigError
from pydantic import Field

from .recipe_metrics import ExprMetrics, MultiLabelMetrics
from .recipes import RECIPES, RecipeOptions, TrainingRecipe

log = logging.getLogger("auflow.models.train.recipes")

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
