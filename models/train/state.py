"""What a training run leaves on disk: per-epoch records, the resumable state, the model card.

- ``model.pt``: weights + card, written with :func:`auflow.models.save_checkpoint`
- ``train_state.pt``: weights, optimiser, schedule, position and history (``weights_only`` loadable)
- ``metrics.json``: the per-epoch history; ``config.yaml``: the resolved config

Every file is written to a temporary name and renamed, so a run killed mid-write leaves the
previous version intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from auflow.engine.errors import ConfigError, ModelError
from auflow.models import save_checkpoint
from auflow.models.card import ModelCard
from auflow.models.metrics import AUMetrics

from .config import TrainConfig

__all__ = ["CONFIG_FILE", "METRICS_FILE", "MODEL_FILE", "STATE_FILE", "EpochRecord", "atomic_save", "build_card",
           "config_key", "load_state", "read_state", "write_outputs"]

STATE_FILE, MODEL_FILE, METRICS_FILE, CONFIG_FILE = "train_state.pt", "model.pt", "metrics.json", "config.yaml"
STATE_VERSION = 1
#: config keys that may change between a run and its resumption (they do not change the result on one machine)
RESUME_FREE = {("data", "workers"), ("train", "device"), ("train", "threads"), ("out",)}


@dataclass
class EpochRecord:
    stage: str
    epoch: int  # 1-based within the stage
    epochs: int
    loss: dict[str, float]  # mean of each loss term over the epoch
    lr: float  # at the end of the epoch (of the parameters outside optimizer.lr_groups)
    seconds: float
    metrics: AUMetrics | None = None  # or the recipe's (recipes.ExprMetrics, recipes.MultiLabelMetrics)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "metrics"}
        d["metrics"] = None if self.metrics is None else self.metrics.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        from .recipes import metrics_from_dict

        m = d.get("metrics")
        metrics = None if m is None else metrics_from_dict(m)
        return cls(d["stage"], d["epoch"], d["epochs"], dict(d["loss"]), d["lr"], d["seconds"], metrics)


def config_key(cfg: TrainConfig) -> dict:
    d = cfg.model_dump(mode="json")
    for path in RESUME_FREE:
        node = d
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    return d


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a run killed mid-write leaves the previous file intact


def read_state(path: Path, what: str, fresh: str) -> dict | None:
    """The resumable state saved at ``path`` by :func:`atomic_save`, None when there is none. An unreadable file is a
    :class:`ModelError` naming ``what`` it should hold and how to start ``fresh`` (the command's --no-resume)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the same user error
        raise ModelError(f"{path} is not a readable {what} ({e}); delete it or {fresh}") from e


def load_state(out_dir: Path, cfg: TrainConfig) -> dict | None:
    path = out_dir / STATE_FILE
    state = read_state(path, "training state", "train with --no-resume")
    if state is None:
        return None
    if state.get("version") != STATE_VERSION:
        raise ModelError(f"{path} has training-state version {state.get('version')}, this auflow writes {STATE_VERSION}; use --no-resume")
    if state["config"] != config_key(cfg):
        raise ConfigError(f"{out_dir} holds a run of a different config ({CONFIG_FILE} there); "
                          f"resume it with that config, train into another --out, or pass --no-resume to start over")
    return state


def build_card(model: torch.nn.Module, cfg: TrainConfig, recipe, train_set, test_set,
          history: list[EpochRecord], done: dict[str, int], complete: bool) -> ModelCard:
    base = model.card
    last = next((r.metrics for r in reversed(history) if r.metrics is not None), None)
    synthetic = cfg.data.dataset.startswith("synthetic")
    training: dict[str, Any] = dict(base.training)  # e.g. au_gcn's graph source
    training.update({
        "data": train_set.description,
        "evaluated_on": test_set.description,
        "dataset": cfg.data.dataset,
        "protocol": ("generated data: disjoint train/test streams of one seed" if synthetic else
                     PROTOCOLS.get(cfg.data.dataset, "3-fold cross-validation by image")),
        "fold": cfg.data.fold,
        "train_samples": len(train_set),
        "test_samples": len(test_set),
        "recipe": recipe.describe(),
        "stages": [{"name": s.name, "epochs": s.epochs, "epochs_done": done.get(s.name, 0),
                    "optimizer": s.optimizer.model_dump(mode="json"), "schedule": s.schedule.model_dump(mode="json")}
                   for s in cfg.train.stages],
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
        "complete": complete,
        "metrics": None if last is None else _card_metrics(last, cfg),
        "config": cfg.model_dump(mode="json"),
    })
    if synthetic:
        where = "auflow.models.data.synthetic_au" if cfg.data.dataset == "synthetic" else "auflow.models.expr.synthetic"
        training["note"] = (f"trained on synthetic data: cartoon faces drawn by {where}, not real "
                            "faces; its outputs on real faces mean nothing")
    return replace(base, config=dict(base.config), kind="trained", training=training)


#: the card's protocol line per real dataset
PROTOCOLS = {
    "bp4d": "subject-exclusive 3-fold cross-validation (ME-GraphAU / JAA-Net fold lists)",
    "disfa": "subject-exclusive 3-fold cross-validation (ME-GraphAU / JAA-Net fold lists)",
    "rml": "leave-one-subject-out (fold = the held-out subject), 16 frames by sparse sampling (paper 003 Sec. 4.1.1)",
    "afew": "EmotiW Train / Val split, evaluated on Val, 16 frames by sparse sampling (paper 003 Sec. 4.1.2)",
    "affwild2": "ABAW EXPR challenge Train / Validation split, evaluated on Validation, 8 frames at dilation 3 "
                "(paper 003 Sec. 4.1.3)",
    "rafml": "RAF-ML train / test partition (paper 004 Sec. 4.1)",
}


def _card_metrics(last, cfg: TrainConfig) -> dict[str, Any]:
    if isinstance(last, AUMetrics):
        return {"split": "test", "threshold": cfg.train.threshold, "mean_f1": last.mean_f1,
                "mean_accuracy": last.mean_accuracy,
                "per_au": {a: {"f1": f, "accuracy": c} for a, f, c in zip(last.au_names, last.f1, last.accuracy)}}
    return {"split": {"afew": "val", "affwild2": "val"}.get(cfg.data.dataset, "test"), **last.to_dict()}


def write_outputs(out_dir: Path, model, card: ModelCard, history: list[EpochRecord], cfg: TrainConfig) -> Path:
    ckpt = out_dir / MODEL_FILE
    tmp = out_dir / (MODEL_FILE + ".tmp")
    save_checkpoint(model, tmp, card)
    os.replace(tmp, ckpt)
    (out_dir / METRICS_FILE).write_text(json.dumps({"history": [r.to_dict() for r in history],
                                                    "final": card.training.get("metrics")}, indent=2))
    return ckpt
