"""Training and evaluation of the AU models: YAML config → trainer → checkpoint with its card.

- :mod:`.config`: the training config (``load_train_config``)
- :mod:`.recipes`: per-model stages and losses (``RECIPES``, by model name)
- :mod:`.trainer`: ``train(cfg)`` — deterministic, resumable, writes ``model.pt`` + metrics
- :mod:`.evaluate`: ``evaluate_checkpoint(path, data)`` — per-AU F1 / accuracy
"""

from __future__ import annotations

from .config import TrainConfig, load_train_config
from .recipes import RECIPES, TrainingRecipe, build_recipe
from .trainer import EpochRecord, TrainCallbacks, TrainResult, train

__all__ = ["RECIPES", "EpochRecord", "TrainCallbacks", "TrainConfig", "TrainResult", "TrainingRecipe", "build_recipe",
           "load_train_config", "train"]
