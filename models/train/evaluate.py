"""Evaluate a checkpoint on a dataset split, by its model's recipe: per-AU F1 and accuracy (AU
models), accuracy and per-class F1 (+ Aff-Wild2's 0.67·F1 + 0.33·Acc) for ``arpgnet``, the nine
multi-label metrics for ``svml_rgcn``; as a dict for JSON.

``evaluate_checkpoint(path, data)`` where ``data`` is ``"synthetic"`` (the checkpoint's own
generated test stream, by the dataset and seed its card records) or the directory of a BP4D / DISFA /
EmotioNet / RML / AFEW / Aff-Wild2 / RAF-ML copy (recognised by its layout; ``"bp4d:/path"``,
``"afew:/path"`` … name it outright). The fold defaults to the one the card says the model was
trained for, so that the test subjects are the held-out ones; AFEW and Aff-Wild2 are scored on
their validation sets (``split="test"`` means that split there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from auflow.engine.errors import ConfigError, ModelError
from auflow.models import create_model
from auflow.models.card import load_checkpoint
from auflow.models.data import DATASETS, DatasetError, build_dataset
from auflow.models.data.expr import EXPR_DATASETS
from auflow.models.metrics import AUMetrics, au_metrics

from .recipes import RECIPES
from .trainer import EXPR_SYNTHETIC, EXPR_TEST_SPLIT, build_expr_datasets, check_labels, metrics_summary, predict

log = logging.getLogger(__name__)

__all__ = ["Evaluation", "detect_dataset", "evaluate_checkpoint"]


@dataclass
class Evaluation:
    checkpoint: Path
    model: str
    dataset: str
    data: str  # the dataset's description
    fold: int | None
    split: str
    metrics: AUMetrics  # or recipes.ExprMetrics / recipes.MultiLabelMetrics for the expression models

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "model": self.model, "dataset": self.dataset, "data": self.data,
                "fold": self.fold, "split": self.split, **self.metrics.to_dict()}


def detect_dataset(root: str | Path) -> str:
    """Which dataset a directory holds, from its layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory: give 'synthetic' or the directory of a BP4D, DISFA, EmotioNet, "
                           f"RML, AFEW, Aff-Wild2 or RAF-ML copy")
    if (root / "AUCoding").is_dir():
        return "bp4d"
    if (root / "ActionUnit_Labels").is_dir():
        return "disfa"
    if (root / "labels.csv").is_file():
        return "emotionet"
    if (root / "annotations" / "EXPR_Set").is_dir():
        return "affwild2"
    if (root / "EmoLabel").is_dir():
        return "rafml"
    if (root / "Train").is_dir() and (root / "Val").is_dir():
        return "afew"
    raise DatasetError(f"{root} has neither BP4D's AUCoding/, DISFA's ActionUnit_Labels/, EmotioNet's labels.csv, "
                       f"Aff-Wild2's annotations/EXPR_Set/, RAF-ML's EmoLabel/ nor AFEW's Train/ and Val/; "
                       f"name the dataset outright (bp4d:{root}, rml:{root}, ...) or see auflow.models.data and "
                       f"auflow.models.data.expr for the layouts")


def _parse_data(data: str) -> tuple[str, str | None]:
    if data == "synthetic":
        return "synthetic", None
    name, sep, rest = data.partition(":")
    if sep and (name in DATASETS or name in EXPR_DATASETS) and name != "synthetic":
        return name, rest
    return detect_dataset(data), data


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str,
    fold: int | None = None,
    split: str = "test",
    batch_size: int = 64,
    device: str = "cpu",
    threshold: float | None = None,
    size: int | None = None,
    workers: int = 0,
) -> Evaluation:
    """Metrics of ``checkpoint`` on ``data``'s ``split`` (see the module docstring)."""
    card, _ = load_checkpoint(checkpoint)
    if card.task not in ("au", "expr") or (card.task == "expr" and card.name not in RECIPES):
        raise ModelError(f"{checkpoint} holds a {card.task!r} model ({card.name}); auflow eval measures the AU models "
                         f"and the expression models with a training recipe (arpgnet, svml_rgcn)")
    model = create_model(card.name, checkpoint=checkpoint).to(device)
    trained = card.training.get("config", {}) if isinstance(card.training, dict) else {}
    tdata = trained.get("data", {}) if isinstance(trained, dict) else {}
    thr = threshold if threshold is not None else float(trained.get("train", {}).get("threshold", 0.5)) if trained else 0.5
    name, root = _parse_data(data)
    if card.task == "expr":
        return _evaluate_expr(checkpoint, card, model, name, root, tdata, fold, split, batch_size, device, thr, size, workers)
    if name in EXPR_DATASETS:
        raise ConfigError(f"{checkpoint} holds an AU model ({card.name}); {name} is an expression dataset")
    if name == "synthetic":
        ds = build_dataset("synthetic", split if split != "all" else "test", input_size=card.input_size,
                           size=size or int(tdata.get("test_size", 500)), seed=int(tdata.get("seed", 0)))
        fold = None
    else:
        fold = fold if fold is not None else tdata.get("fold") if tdata.get("dataset") == name else None
        if fold is None and split != "all":
            raise ConfigError(f"give --fold (1-3): {checkpoint}'s card names no {name} fold it was trained for")
        ds = build_dataset(name, split, fold, root, card.input_size, augment=False)
    if tuple(ds.au_names) != tuple(card.labels):
        raise ConfigError(f"{checkpoint} predicts {tuple(card.labels)} but {name} is labelled {tuple(ds.au_names)}")
    recipe = RECIPES.get(card.name)() if card.name in RECIPES else None
    y, p = predict(model, ds, recipe, torch.device(device), batch_size, workers)
    metrics = au_metrics(y, p, card.labels, thr)
    log.info("%s on %s: mean F1 %.3f, mean accuracy %.3f", checkpoint, ds.description, metrics.mean_f1, metrics.mean_accuracy)
    return Evaluation(Path(checkpoint), card.name, name, ds.description, fold, split, metrics)


def _evaluate_expr(checkpoint, card, model, name, root, tdata, fold, split, batch_size, device, thr, size, workers) -> Evaluation:
    """An expression checkpoint: on its own generated test stream (``synthetic``) or a real dataset's split."""
    trained_on = tdata.get("dataset")
    if name == "synthetic":
        if trained_on not in EXPR_SYNTHETIC:
            raise ConfigError(f"{checkpoint} was not trained on generated expression data (card: {trained_on}); "
                              f"give the directory of the dataset to evaluate on")
        name, fold = trained_on, None
        if split not in ("train", "test"):
            raise ConfigError(f"generated expression data has splits train and test, not {split!r}")
        n = size or int(tdata.get("size" if split == "train" else "test_size", 500))
        ds = build_expr_datasets(name, split, card.input_size, model, size=n, seed=int(tdata.get("seed", 0)))
    else:
        if name not in EXPR_DATASETS:
            raise ConfigError(f"{checkpoint} holds an expression model ({card.name}); {name} is an AU dataset")
        if name == "rml":
            fold = fold if fold is not None else tdata.get("fold") if trained_on == "rml" else None
            if fold is None:
                raise ConfigError(f"give --fold (the held-out RML subject, 1-8): {checkpoint}'s card names no RML fold")
        elif fold is not None:
            raise ConfigError(f"{name} has a fixed split: drop --fold")
        if split == "test":
            split = EXPR_TEST_SPLIT[name]
        ds = build_expr_datasets(name, split, card.input_size, model, root, fold)
    check_labels(model, ds, f"{checkpoint} on {name}")
    recipe = RECIPES.get(card.name)()
    y, p = predict(model, ds, recipe, torch.device(device), batch_size, workers)
    metrics = recipe.score(y, p, card.labels, thr, name)
    log.info("%s on %s: %s", checkpoint, ds.description, metrics_summary(metrics))
    return Evaluation(Path(checkpoint), card.name, name, ds.description, fold, split, metrics)
