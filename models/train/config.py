"""The training configuration: one YAML file per experiment, checked by pydantic (unknown keys are errors).

::

    model:   {name: me_graphau, options: {backbone: resnet50, dataset: bp4d, input_size: 224}}
    data:    {dataset: bp4d, root: /data/BP4D, fold: 1}          # or dataset: synthetic, size, seed
             # expression models: rml (fold = held-out subject), afew, affwild2, rafml; generated:
             # synthetic_motion (arpgnet), synthetic_multilabel (svml_rgcn)
    train:
      batch_size: 64
      seed: 0
      recipe: {lam: 0.05}                                       # the model's training recipe options
      stages:                                                   # the recipe's stages, in order
        - {name: anfl, epochs: 20, optimizer: {name: adamw, lr: 1.0e-4, weight_decay: 5.0e-4}, schedule: {name: cosine}}
        - {name: mefl, epochs: 20, optimizer: {name: adamw, lr: 1.0e-6, weight_decay: 5.0e-4}, schedule: {name: cosine}}
    out: runs/train/me_graphau_bp4d_fold1

``load_train_config(path, overrides)`` reads it through the safe YAML loader, applies
``--set train.batch_size=32``-style overrides, and raises one :class:`ConfigError` naming the
bad key, its line and the valid keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from auflow.engine.configfile import Strict, load_yaml_model, validate_model

__all__ = ["AU_DATASETS", "EXPR_DATASETS", "SYNTHETIC_DATASETS", "DataSection", "ModelSection", "OptimizerSection", "ScheduleSection", "StageSection", "TrainConfig",
           "TrainSection", "load_train_config"]


Section = Strict  # the one config base (auflow.engine.configfile)


class ModelSection(Section):
    name: str = Field(description="registered model name (auflow models list)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory; "
                                    "the label set defaults to the dataset's")
    backbone_weights: str | None = Field(None, description="a torchvision ImageNet state_dict file for the backbone "
                                         "(the papers' pretrained start, e.g. resnet50-11ad3fa6.pth); nothing is downloaded")
    init_from: str | None = Field(None, description="an auflow checkpoint whose tensors named init_prefix… start this "
                                  "model (e.g. a backbone another model trained on the same training split)")
    init_prefix: str = Field("backbone.", description="init_from: copy only the tensors whose names start with this")
    freeze: list[str] = Field(default_factory=list, description="parameters whose names start with one of these "
                              "prefixes are not trained, and their modules stay in eval mode (BatchNorm statistics "
                              "fixed): e.g. [backbone.] to train only the heads on a given backbone")


#: the AU datasets, with their 3-fold protocols
AU_DATASETS = ("bp4d", "disfa", "emotionet")
#: the expression datasets of issue 7 (auflow.models.data.expr): rml = leave-one-subject-out (fold = subject),
#: afew / affwild2 = the challenges' train/validation split, rafml = its train/test partition
EXPR_DATASETS = ("rml", "afew", "affwild2", "rafml")
#: generated data: synthetic = AU faces (auflow.models.data.synthetic_au); synthetic_motion = clips whose label is
#: the direction of motion (arpgnet), synthetic_multilabel = multi-label faces with label correlations (svml_rgcn),
#: both from auflow.models.expr.synthetic
SYNTHETIC_DATASETS = ("synthetic", "synthetic_motion", "synthetic_multilabel")


class DataSection(Section):
    dataset: Literal["bp4d", "disfa", "emotionet", "synthetic", "rml", "afew", "affwild2", "rafml",
                     "synthetic_motion", "synthetic_multilabel"]
    root: str | None = Field(None, description="real datasets: the directory of your copy (layout: auflow.models.data.<name>, "
                             "auflow.models.data.expr for rml, afew, affwild2, rafml)")
    fold: int | None = Field(None, ge=1, description="bp4d, disfa, emotionet: the test fold (1-3), training uses the other "
                             "two; rml: the held-out subject (1-8, leave-one-subject-out); afew, affwild2, rafml: none "
                             "(their fixed train/validation or train/test split)")
    augment: bool = Field(True, description="real datasets: random crop + horizontal flip in training (AU datasets); "
                          "rafml: horizontal flip (paper 004); rml, afew: random frame per segment (sparse sampling)")
    workers: int = Field(0, ge=0, description="DataLoader worker processes (0 = load in the training process)")
    size: int = Field(2000, ge=1, description="synthetic: training images")
    test_size: int = Field(500, ge=1, description="synthetic: evaluation images (a separate stream of the same seed)")
    seed: int = Field(0, description="synthetic: dataset seed (independent of train.seed)")
    aus: list[str] | None = Field(None, description="train and evaluate on these of the dataset's AUs only (kept in "
                                  "the dataset's order); default all")

    @model_validator(mode="after")
    def _real_needs_root_and_fold(self) -> DataSection:
        if self.dataset in SYNTHETIC_DATASETS:
            if self.root is not None or self.fold is not None:
                raise ValueError(f"data.root and data.fold apply to the real datasets; {self.dataset} takes size, test_size and seed")
            return self
        if self.root is None:
            raise ValueError(f"data.root is required for {self.dataset}: the directory of your copy")
        if self.dataset in AU_DATASETS:
            if self.fold is None or self.fold > 3:
                raise ValueError(f"data.fold (1, 2 or 3) is required for {self.dataset}: the papers report all three")
        elif self.dataset == "rml":
            if self.fold is None:
                raise ValueError("data.fold is required for rml: the held-out subject (1-8, leave-one-subject-out)")
        elif self.fold is not None:
            raise ValueError(f"{self.dataset} has a fixed split (no folds): drop data.fold")
        return self


class OptimizerSection(Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(gt=0, description="initial learning rate")
    lr_groups: dict[str, float] = Field(default_factory=dict, description="initial learning rates of parameters by "
                                        "name prefix, e.g. {backbone.: 1.0e-4} (paper 003: 1e-4 for the pre-trained "
                                        "blocks, lr for the rest); the first matching prefix wins")
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0, description="adam / adamw only")
    momentum: float = Field(0.9, ge=0, description="sgd only")
    nesterov: bool = False


class ScheduleSection(Section):
    """Learning rate over a stage, updated every step: cosine decay to 0 (ME-GraphAU, Topo-AU),
    step decay by ``gamma`` every ``step_epochs`` (AU-GCN), or constant."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    step_epochs: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: factor at each decay")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0 over this many epochs")


class StageSection(Section):
    name: str = Field(description="the recipe's stage name (e.g. me_graphau: anfl, mefl)")
    epochs: int = Field(ge=0)
    optimizer: OptimizerSection
    schedule: ScheduleSection = ScheduleSection()


class TrainSection(Section):
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="default: batch_size")
    seed: int = Field(0, description="model initialisation, shuffling and augmentation all derive from it")
    device: str = Field("cpu", description="cpu | cuda | cuda:N")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms during training")
    threads: int = Field(0, ge=0, description="torch intra-op threads, 0 = torch's default")
    recipe: dict[str, Any] = Field(default_factory=dict, description="options of the model's training recipe")
    stages: list[StageSection] = Field(min_length=1)
    eval_every: int = Field(1, ge=0, description="evaluate on the test split every N epochs (0 = only at the end)")
    threshold: float = Field(0.5, gt=0, lt=1, description="decision threshold of every AU (multi-label models: of every label)")
    max_batches: int | None = Field(None, ge=1, description="cap on batches per epoch (smoke runs)")


class TrainConfig(Section):
    model: ModelSection
    data: DataSection
    train: TrainSection
    out: str = Field("runs/train", description="output directory: checkpoints, metrics, the resolved config")


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override, validate a training config (the loader of every auflow config: line-numbered errors)."""
    return load_yaml_model(TrainConfig, path, list(overrides or []), what="training config",
                           hint="examples: auflow/configs/train/*.yaml")[0]


def validate_train_config(data: dict, where: str = "training config", lines: dict | None = None) -> TrainConfig:
    return validate_model(TrainConfig, data, where, lines)


def dump_train_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
