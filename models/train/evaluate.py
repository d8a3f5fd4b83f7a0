"""Evaluate a checkpoint on a dataset split: per-AU F1 and accuracy, their means, as a dict for JSON.

``evaluate_checkpoint(path, data)`` where ``data`` is ``"synthetic"`` (the checkpoint's own
generated test stream, by the seed its card records) or the directory of a BP4D / DISFA /
EmotioNet copy (recognised by its layout; ``"bp4d:/path"`` names it outright). The fold defaults to
the one the card says the model was trained for, so that the test subjects are the held-out ones.
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
from auflow.models.metrics import AUMetrics, au_metrics

from .recipes import RECIPES
from .trainer import predict

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
    metrics: AUMetrics

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "model": self.model, "dataset": self.dataset, "data": self.data,
                "fold": self.fold, "split": self.split, **self.metrics.to_dict()}


def detect_dataset(root: str | Path) -> str:
    """Which dataset a directory holds, from its layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory: give 'synthetic' or the directory of a BP4D, DISFA or EmotioNet copy")
    if (root / "AUCoding").is_dir():
        return "bp4d"
    if (root / "ActionUnit_Labels").is_dir():
        return "disfa"
    if (root / "labels.csv").is_file():
        return "emotionet"
    raise DatasetError(f"{root} has neither BP4D's AUCoding/, DISFA's ActionUnit_Labels/ nor EmotioNet's labels.csv; "
                       f"name the dataset outright (bp4d:{root}) or see auflow.models.data for the layouts")


def _parse_data(data: str) -> tuple[str, str | None]:
    if data == "synthetic":
        return "synthetic", None
    name, sep, rest = data.partition(":")
    if sep and name in DATASETS and name != "synthetic":
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
    if card.task != "au":
        raise ModelError(f"{checkpoint} holds a {card.task!r} model ({card.name}); auflow eval measures AU models")
    model = create_model(card.name, checkpoint=checkpoint).to(device)
    trained = card.training.get("config", {}) if isinstance(card.training, dict) else {}
    tdata = trained.get("data", {}) if isinstance(trained, dict) else {}
    thr = threshold if threshold is not None else float(trained.get("train", {}).get("threshold", 0.5)) if trained else 0.5
    name, root = _parse_data(data)
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
