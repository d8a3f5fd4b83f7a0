"""Train any registered model on a dataset, by its training recipe, reproducibly and resumably.

``train(cfg)`` builds the model (``create_model(cfg.model.name, **options)``), the datasets
(:func:`auflow.models.data.build_dataset` for the AU datasets, :func:`auflow.models.data.expr.build_expr_dataset`
for RML / AFEW / Aff-Wild2 / RAF-ML, the generated expression sets of
:mod:`auflow.models.expr.train_utils`) and the model's recipe (:mod:`.recipes`), then runs the
recipe's stages in order, each with its own optimiser and per-step schedule, evaluating the test
split after each epoch. Samples are ``{"image", "labels"}`` (images, multi-label) or
``{"frames", "label"}`` (clips, one class). In the output directory it writes:

- ``model.pt``: weights + card (:func:`auflow.models.save_checkpoint`), after every epoch; the card
  says what the model was trained on, the protocol and fold, and the last test metrics;
- ``train_state.pt``: what resuming needs (weights, optimiser, schedule, position, history);
- ``metrics.json``: per-epoch losses and the recipe's metrics (per-AU F1 / accuracy; accuracy and
  per-class F1 for ``arpgnet``; the nine multi-label metrics for ``svml_rgcn``); ``config.yaml``: the
  resolved config.

**Determinism.** The model is initialised under ``torch.manual_seed(seed)``; every epoch then
re-seeds torch, numpy and ``random`` and its DataLoader's generator from ``(seed, stage, epoch)``
alone, so an epoch's shuffling, augmentation and dropout do not depend on how the run got there.
That is what makes resuming exact: a run stopped anywhere continues from its last finished epoch
and ends with the same weights as a run never stopped. ``torch.use_deterministic_algorithms`` is
on while training (restored afterwards); the same weights need the same device, thread count and
library versions.

**Resume.** With ``resume=True`` (default) and a ``train_state.pt`` of the same config in the
output directory, training continues after its last finished epoch; a state of another config is
an error (train elsewhere, or pass ``resume=False`` to start over).

The parts: :mod:`.build` (the model and the datasets of a config), :mod:`.determinism` (seeds, deterministic
algorithms, threads), :mod:`.recipes` (each model's stages and losses), :mod:`.state` (checkpoint, resume
state, card); this module runs the epochs.

The selection of the checkpoint is the last epoch, never the best on the test fold: picking the
epoch by test F1 (as some released code does) reports an optimistic number.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from auflow.engine.errors import ConfigError
from auflow.models.card import ModelCard
from auflow.models.metrics import AUMetrics
from torch.utils.data import DataLoader

from .build import (
    EXPR_SYNTHETIC,
    EXPR_TEST_SPLIT,
    _hold_frozen_in_eval,
    _normaliser,
    build_datasets,
    build_expr_datasets,
    build_model,
    expr_label,
    is_expr,
)
from .config import StageSection, TrainConfig, dump_train_config
from .determinism import (
    _determinism,
    _device,
    _seed_everything,
    _seed_worker,
    epoch_seed,
)
from .loop import StepHooks, run_epoch
from .recipes import TrainingRecipe, build_recipe
from .state import (
    CONFIG_FILE,
    STATE_FILE,
    STATE_VERSION,
    EpochRecord,
    atomic_save,
    build_card,
    config_key,
    load_state,
    write_outputs,
)

log = logging.getLogger(__name__)

__all__ = ["EXPR_SYNTHETIC", "EXPR_TEST_SPLIT", "EpochRecord", "TrainCallbacks", "TrainResult", "build_datasets",
           "build_expr_datasets", "build_model", "epoch_seed", "predict", "train"]  # the parts' names too



@dataclass
class TrainCallbacks:
    """Hooks for a progress display (the CLI's rich bar and tables); all optional."""

    on_stage_start: Callable[[str, int, int, int], None] | None = None  # stage, first epoch (1-based), epochs, batches
    on_batch: Callable[[str, int, int, int, float], None] | None = None  # stage, epoch, batch (1-based), batches, loss
    on_epoch_end: Callable[[EpochRecord], None] | None = None
    on_resume: Callable[[str, int], None] | None = None  # stage, epochs already done in it


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    history: list[EpochRecord]
    metrics: AUMetrics | None  # or the recipe's metrics (recipes.ExprMetrics, recipes.MultiLabelMetrics)
    seconds: float
    resumed_from: tuple[str, int] | None = None
    card: ModelCard | None = field(default=None, repr=False)
    recipe: TrainingRecipe | None = field(default=None, repr=False)  # e.g. what its setup derived from the data


def batch_inputs(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images or clips, labels) of a batch: ``image``/``labels`` or ``frames``/``label``."""
    x = batch["frames"] if "frames" in batch else batch["image"]
    y = batch["label"] if "label" in batch else batch["labels"]
    return x, y


def check_labels(model: torch.nn.Module, dataset, where: str) -> None:
    """The model's classes are the data's (Aff-Wild2's come from its annotation headers)."""
    names = getattr(dataset, "label_names", None) or getattr(dataset, "au_names", None)
    if names is None:
        return
    if tuple(map(expr_label, model.card.labels)) != tuple(map(expr_label, names)):
        raise ConfigError(f"{where}: the model predicts {tuple(model.card.labels)} but the data is labelled {tuple(names)}; "
                          f"set model.options.labels to the data's classes, in its order")


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, recipe: TrainingRecipe | None, device: torch.device,
            batch_size: int = 64, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of every sample of ``dataset``, in order, in eval mode."""
    was_training = model.training
    model.eval()
    norm = _normaliser(model.card, device)
    labels, probs = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        for batch in loader:
            images, y = batch_inputs(batch)
            x = norm(images)
            p = recipe.predict(model, x) if recipe is not None else model(x)
            probs.append(p.float().cpu().numpy())
            labels.append(y.numpy())
    finally:
        model.train(was_training)
    return np.concatenate(labels), np.concatenate(probs)


# ---------------------------------------------------------------------------------------------
def metrics_summary(metrics) -> str:
    """One line of a metrics object: AU means, or the expression recipes' own summary."""
    if isinstance(metrics, AUMetrics):
        return f"mean F1 {metrics.mean_f1:.3f}, mean acc {metrics.mean_accuracy:.3f}"
    return metrics.summary()


def param_groups(model: torch.nn.Module, params, stage: StageSection) -> list[dict]:
    """The stage's parameters in groups by ``optimizer.lr_groups`` (name prefix → initial rate; the
    first matching prefix wins), the rest at ``optimizer.lr``. A prefix that names no parameter is an
    error (a misspelt one would silently train at the wrong rate)."""
    o = stage.optimizer
    wanted = {id(p) for p in params}
    prefixes = list(o.lr_groups)
    groups: dict[str | None, list] = {k: [] for k in [*prefixes, None]}
    for name, p in model.named_parameters():
        if id(p) in wanted:
            groups[next((k for k in prefixes if name.startswith(k)), None)].append(p)
    empty = [k for k in prefixes if not groups[k]]
    if empty:
        raise ConfigError(f"stage {stage.name}: optimizer.lr_groups {empty} match no trained parameter of the model")
    return [{"params": ps, "lr": o.lr_groups[k] if k is not None else o.lr} for k, ps in groups.items() if ps]


def _optimizer(params, stage: StageSection) -> torch.optim.Optimizer:
    o = stage.optimizer
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)


class _LRFactor:
    """Multiplier of the initial learning rate at step t of a stage of ``total`` steps (picklable)."""

    def __init__(self, stage: StageSection, steps_per_epoch: int) -> None:
        self.kind = stage.schedule.name
        self.total = max(1, stage.epochs * steps_per_epoch)
        self.per_epoch = steps_per_epoch
        self.step_epochs, self.gamma = stage.schedule.step_epochs, stage.schedule.gamma
        self.warmup = stage.schedule.warmup_epochs * steps_per_epoch

    def __call__(self, t: int) -> float:
        warm = min(1.0, (t + 1) / self.warmup) if self.warmup > 0 else 1.0
        if self.kind == "cosine":  # cosine decay per step (the authors' adjust_learning_rate)
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(t, self.total) / self.total))
        if self.kind == "step":  # ×gamma every step_epochs epochs (AU-GCN Sec. 4.1)
            return warm * self.gamma ** (t // (self.step_epochs * self.per_epoch))
        return warm


def _recipe_loss(recipe: TrainingRecipe, model: torch.nn.Module, norm, device: torch.device, stage: str,
                 images: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    return recipe.loss(model, norm(images), y.to(device), stage)


def train(cfg: TrainConfig, out_dir: str | Path | None = None, resume: bool = True,
          callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Run the config's training; see the module docstring for outputs, determinism and resume."""
    cb = callbacks or TrainCallbacks()
    out = Path(out_dir if out_dir is not None else cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(cfg.train.device)
    t0 = time.perf_counter()
    with _determinism(cfg.train.deterministic, device, cfg.train.threads):
        recipe = build_recipe(cfg.model.name, cfg.train.recipe)
        names = [s.name for s in cfg.train.stages]
        if tuple(names) != recipe.stages:
            raise ConfigError(f"train.stages are {names}, but {cfg.model.name} trains in stages {list(recipe.stages)}: "
                              f"list exactly those, in that order (epochs: 0 skips one)")
        torch.manual_seed(cfg.train.seed)  # model initialisation
        model = build_model(cfg)
        train_set, test_set = build_datasets(cfg, model)
        if is_expr(cfg.data.dataset):
            check_labels(model, train_set, f"{cfg.data.dataset} training split")
        recipe.setup(model, train_set)  # may set data-derived buffers (saved with the weights)
        model.to(device)

        state = load_state(out, cfg) if resume else None
        history: list[EpochRecord] = []
        start = (0, 0)  # (stage index, epochs done in it)
        if state is not None:
            model.load_state_dict(state["model"])
            history = [EpochRecord.from_dict(r) for r in state["history"]]
            start = (int(state["stage"]), int(state["epoch"]))
            log.info("resuming %s: stage %s, %d epochs done", out, names[start[0]], start[1])
            if cb.on_resume:
                cb.on_resume(names[start[0]], start[1])
        else:
            (out / CONFIG_FILE).write_text(dump_train_config(cfg))

        done = {s.name: 0 for s in cfg.train.stages}
        for i, s in enumerate(cfg.train.stages):
            done[s.name] = s.epochs if i < start[0] else (start[1] if i == start[0] else 0)
        norm = _normaliser(model.card, device)
        bs = cfg.train.batch_size
        batches = len(train_set) // bs if len(train_set) >= bs else 1  # drop_last: BatchNorm needs > 1 sample
        if cfg.train.max_batches:
            batches = min(batches, cfg.train.max_batches)
        last_stage = max((i for i, st in enumerate(cfg.train.stages) if st.epochs > 0), default=-1)

        for si, stage in enumerate(cfg.train.stages):
            if si < start[0] or stage.epochs == 0:
                continue
            first = start[1] if si == start[0] else 0
            if first >= stage.epochs:
                continue
            opt = _optimizer(param_groups(model, list(recipe.parameters(model, stage.name)), stage), stage)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _LRFactor(stage, batches))
            if state is not None and si == start[0] and first > 0:
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
            if cb.on_stage_start:
                cb.on_stage_start(stage.name, first + 1, stage.epochs, batches)
            for epoch in range(first, stage.epochs):
                te = time.perf_counter()
                es = epoch_seed(cfg.train.seed, si, epoch)
                _seed_everything(es)
                loader = DataLoader(train_set, batch_size=bs, shuffle=True, drop_last=len(train_set) >= bs,
                                    num_workers=cfg.data.workers, worker_init_fn=_seed_worker,
                                    generator=torch.Generator().manual_seed(es))
                model.train()
                _hold_frozen_in_eval(model, cfg.model.freeze)
                on_step = None if cb.on_batch is None else functools.partial(cb.on_batch, stage.name, epoch + 1)
                mean_loss = run_epoch((batch_inputs(batch) for batch in loader), batches,
                                      functools.partial(_recipe_loss, recipe, model, norm, device, stage.name), opt, sched,
                                      epoch * batches, StepHooks(on_step=on_step),
                                      f"{cfg.model.name} stage {stage.name} epoch {epoch + 1}",
                                      f"lower the learning rate (train.stages[{si}].optimizer.lr)")
                metrics = None
                last_epoch = si == last_stage and epoch == stage.epochs - 1
                every = cfg.train.eval_every
                if last_epoch or (every and (epoch + 1) % every == 0):
                    y, p = predict(model, test_set, recipe, device, cfg.train.eval_batch_size or bs, cfg.data.workers)
                    metrics = recipe.score(y, p, model.card.labels, cfg.train.threshold, cfg.data.dataset)
                record = EpochRecord(stage.name, epoch + 1, stage.epochs, mean_loss,
                                     float(opt.param_groups[-1]["lr"]), time.perf_counter() - te, metrics)
                history.append(record)
                done[stage.name] = epoch + 1
                finished = last_epoch or all(done[x.name] >= x.epochs for x in cfg.train.stages)
                card = build_card(model, cfg, recipe, train_set, test_set, history, done, finished)
                atomic_save({"version": STATE_VERSION, "config": config_key(cfg), "stage": si, "epoch": epoch + 1,
                              "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "history": [r.to_dict() for r in history]}, out / STATE_FILE)
                ckpt = write_outputs(out, model, card, history, cfg)
                log.info("%s %s epoch %d/%d: loss %.4f%s", cfg.model.name, stage.name, epoch + 1, stage.epochs,
                         record.loss.get("loss", float("nan")), "" if metrics is None else ", " + metrics_summary(metrics))
                if cb.on_epoch_end:
                    cb.on_epoch_end(record)

        final = next((r.metrics for r in reversed(history) if r.metrics is not None), None)
        card = build_card(model, cfg, recipe, train_set, test_set, history, done, True)
        ckpt = write_outputs(out, model, card, history, cfg)
    return TrainResult(out, ckpt, history, final, time.perf_counter() - t0,
                       None if state is None else (names[start[0]], start[1]), card, recipe)
