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

The selection of the checkpoint is the last epoch, never the best on the test fold: picking the
epoch by test F1 (as some released code does) reports an optimistic number.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from auflow.engine.errors import ConfigError, ModelError
from auflow.models import create_model
from auflow.models.card import ModelCard
from auflow.models.metrics import AUMetrics

from .config import EXPR_DATASETS, StageSection, TrainConfig, dump_train_config
from .recipes import TrainingRecipe, build_recipe
from .state import CONFIG_FILE, STATE_FILE, STATE_VERSION, EpochRecord, atomic_save, build_card, config_key, load_state, write_outputs

log = logging.getLogger(__name__)

__all__ = ["EpochRecord", "TrainCallbacks", "TrainResult", "build_datasets", "build_model", "predict", "train"]



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


# ---------------------------------------------------------------------------------------------
def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    """A 63-bit seed for one epoch, from (seed, stage index, epoch index) only."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, stage, epoch]).generate_state(2, np.uint32).astype(np.uint64)
               .dot(np.array([1 << 32, 1], np.uint64)) >> np.uint64(1))


def _seed_everything(s: int) -> None:
    torch.manual_seed(s)
    np.random.seed(s % (1 << 32))
    random.seed(s)


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch in each worker from its generator; numpy and random follow it
    s = torch.initial_seed() % (1 << 32)
    np.random.seed(s)
    random.seed(s)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device, threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the run; the previous settings after it."""
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.get_num_threads())
    try:
        if enabled:
            if device.type == "cuda":
                # cuBLAS needs a fixed workspace for reproducible matmuls; read when CUDA starts
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # CUDA has ops with no deterministic kernel: warn there rather than stop a long run
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        if threads:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev[2], prev[3]
        torch.set_num_threads(prev[4])


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"train.device {name!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but torch sees no CUDA device; use cpu")
    return dev


# ---------------------------------------------------------------------------------------------
#: generated expression data: dataset name → the model it is made for
EXPR_SYNTHETIC = {"synthetic_motion": "arpgnet", "synthetic_multilabel": "svml_rgcn"}
#: the evaluation split of each expression dataset (AFEW and Aff-Wild2 report on their validation sets)
EXPR_TEST_SPLIT = {"rml": "test", "afew": "val", "affwild2": "val", "rafml": "test"}


def is_expr(dataset: str) -> bool:
    return dataset in EXPR_DATASETS or dataset in EXPR_SYNTHETIC


def build_expr_datasets(name: str, split: str, input_size: int, model: torch.nn.Module | None = None, root: str | None = None,
                        fold: int | None = None, size: int = 0, seed: int = 0, augment: bool = False):
    """One split of an expression dataset, real (``root``) or generated (``size``, ``seed``), with frames
    at ``input_size``; clips take the model's ``num_frames`` (RML / AFEW sample 16, Aff-Wild2 8)."""
    from auflow.models.data.expr import build_expr_dataset
    from auflow.models.expr.train_utils import MotionClipDataset, MultiLabelFaceDataset

    frames = getattr(model, "num_frames", None)
    if name == "synthetic_motion":
        return MotionClipDataset(split, size, seed, frames or 8, input_size)
    if name == "synthetic_multilabel":
        return MultiLabelFaceDataset(split, size, seed, input_size)
    kw: dict = {"split": split, "input_size": input_size}
    if name == "rml":
        kw["fold"] = fold
    ds = build_expr_dataset(name, root, **kw)
    have = getattr(ds, "num_frames", None)
    if frames is not None and have is not None and have != frames:
        raise ConfigError(f"{name} items are clips of {have} frames but the model fuses windows of {frames}: "
                          f"set model.options.num_frames: {have}")
    if not hasattr(ds, "description"):
        where = f"fold {fold} (held-out subject) " if name == "rml" else ""
        ds.description = f"{name} at {root}, {where}split {split}, {len(ds)} items"
    return _Flip(ds) if augment and name == "rafml" else ds


class _Flip(torch.utils.data.Dataset):
    """Random horizontal flip of a training image (RAF-ML, paper 004 Sec. 4.2), drawn from torch's
    generator so the trainer's per-epoch seeding repeats it; other attributes are the base's."""

    def __init__(self, base) -> None:
        self.base = base

    def __getattr__(self, name: str):
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[i])
        if bool(torch.randint(0, 2, ()).item()):
            item["image"] = item["image"].flip(-1)
        return item


def build_datasets(cfg: TrainConfig, model: torch.nn.Module | int):
    """(train, test) datasets of the config, images at the model's input size (or ``model`` = a size)."""
    from auflow.models.data import build_dataset

    from auflow.models.data.core import LabelSubset

    d = cfg.data
    input_size = model if isinstance(model, int) else model.card.input_size
    if is_expr(d.dataset):
        if d.aus is not None:
            raise ConfigError("data.aus selects AUs of an AU dataset; expression datasets train on all their labels")
        m = None if isinstance(model, int) else model
        return (build_expr_datasets(d.dataset, "train", input_size, m, d.root, d.fold, d.size, d.seed, d.augment),
                build_expr_datasets(d.dataset, EXPR_TEST_SPLIT.get(d.dataset, "test"), input_size, m, d.root, d.fold,
                                    d.test_size, d.seed))
    if d.dataset == "synthetic":
        sets = (build_dataset("synthetic", "train", input_size=input_size, size=d.size, seed=d.seed),
                build_dataset("synthetic", "test", input_size=input_size, size=d.test_size, seed=d.seed))
    else:
        sets = (build_dataset(d.dataset, "train", d.fold, d.root, input_size, augment=d.augment),
                build_dataset(d.dataset, "test", d.fold, d.root, input_size, augment=False))
    if d.aus is None:
        return sets
    return tuple(LabelSubset(s, d.aus) for s in sets)


#: AFEW's folder names → auflow's expression names
_EXPR_SPELLING = {"angry": "anger", "happy": "happiness", "sad": "sadness"}


def expr_label(name: str) -> str:
    """A dataset's class name in auflow's lower-case spelling (AFEW's Angry → anger, Happy → happiness)."""
    low = str(name).lower()
    return _EXPR_SPELLING.get(low, low)


def expr_label_names(dataset: str) -> tuple[str, ...] | None:
    """The classes of an expression dataset, without touching any files, in auflow's lower-case
    spelling (the label-embedding table's): RML and RAF-ML's emotions, AFEW's seven, the generated
    sets'. Aff-Wild2's come from its annotation headers (ABAW 2020: 7, later editions 8): None."""
    from auflow.models.data.expr import AFEW_LABELS, RAFML_LABELS, RML_LABELS
    from auflow.models.expr.synthetic import MOTION_LABELS, MULTILABEL_LABELS

    names = {"rml": RML_LABELS, "afew": AFEW_LABELS, "rafml": RAFML_LABELS,
             "synthetic_motion": MOTION_LABELS, "synthetic_multilabel": MULTILABEL_LABELS}.get(dataset)
    return None if names is None else tuple(expr_label(n) for n in names)


def label_names(cfg: TrainConfig) -> tuple[str, ...] | None:
    """The AUs the config trains: the dataset's, or ``data.aus`` of them in the dataset's order;
    for an expression dataset its classes (None: Aff-Wild2, read from the data)."""
    from auflow.models.data import dataset_au_names

    if is_expr(cfg.data.dataset):
        return expr_label_names(cfg.data.dataset)
    names = dataset_au_names(cfg.data.dataset)
    if cfg.data.aus is None:
        return names
    unknown = sorted(set(cfg.data.aus) - set(names))
    if unknown or not cfg.data.aus:
        raise ConfigError(f"data.aus: {unknown or 'nothing'} is not a subset of {cfg.data.dataset}'s AUs {list(names)}")
    return tuple(a for a in names if a in set(cfg.data.aus))


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The config's model, labelled with the dataset's AUs unless its options name a label set."""
    options = dict(cfg.model.options)
    wanted = label_names(cfg)
    expr = is_expr(cfg.data.dataset)
    if expr:
        want_model = EXPR_SYNTHETIC.get(cfg.data.dataset)
        if want_model is not None and want_model != cfg.model.name:
            raise ConfigError(f"data.dataset {cfg.data.dataset} is generated for {want_model}, not {cfg.model.name}")
        if "labels" not in options and wanted is not None:
            options["labels"] = list(wanted)
    elif not {"au_names", "dataset", "num_classes"} & set(options):
        options["au_names"] = list(wanted)
    try:
        model = create_model(cfg.model.name, **options)
    except TypeError as e:
        raise ConfigError(f"model.options for {cfg.model.name}: {e}") from None
    labels = tuple(model.card.labels)
    if expr and model.card.task != "expr":
        raise ConfigError(f"{cfg.data.dataset} is an expression dataset; {cfg.model.name} is a {model.card.task!r} model")
    if expr and (wanted is None or tuple(expr_label(n) for n in labels) == wanted):
        pass
    elif labels != wanted:
        raise ConfigError(f"model {cfg.model.name} predicts {labels} but {cfg.data.dataset} is labelled {wanted}: "
                          f"drop the label options from model.options or make them match")
    _initialise(model, cfg)
    return model


def _initialise(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Pretrained starting weights: torchvision ImageNet weights for the backbone (the papers'
    start), and/or the matching tensors of another auflow checkpoint. Recorded on the card."""
    from auflow.models.backbones import load_torchvision_weights
    from auflow.models.card import load_checkpoint

    m = cfg.model
    init: dict[str, object] = {}
    if m.backbone_weights is not None:
        if not isinstance(getattr(model, "backbone", None), torch.nn.Module):
            raise ConfigError(f"model.backbone_weights: {m.name} has no backbone to load ImageNet weights into")
        load_torchvision_weights(model.backbone, m.backbone_weights)
        init["backbone_weights"] = str(m.backbone_weights)
    if m.init_from is not None:
        card, state = load_checkpoint(m.init_from)
        own = model.state_dict()
        picked = {k: v for k, v in state.items() if k.startswith(m.init_prefix)}
        misfit = [k for k, v in picked.items() if k not in own or own[k].shape != v.shape]
        if not picked or misfit:
            raise ConfigError(f"model.init_from {m.init_from} ({card.name}): "
                              + (f"no tensor starts with {m.init_prefix!r}" if not picked else
                                 f"{len(misfit)} tensors under {m.init_prefix!r} do not fit {m.name}, e.g. {misfit[:3]}")
                              + "; the two models need the same backbone and options")
        model.load_state_dict(picked, strict=False)
        init["init_from"] = {"checkpoint": str(m.init_from), "model": card.name, "prefix": m.init_prefix,
                             "tensors": len(picked), "trained_on": card.training.get("data")}
    if m.freeze:
        frozen = [n for n, p in model.named_parameters() if n.startswith(tuple(m.freeze))]
        if not frozen:
            raise ConfigError(f"model.freeze {m.freeze}: no parameter of {m.name} starts with "
                              f"{' or '.join(map(repr, m.freeze))}")
        for n, p in model.named_parameters():
            if n.startswith(tuple(m.freeze)):
                p.requires_grad_(False)
        init["frozen"] = {"prefixes": list(m.freeze), "parameters": len(frozen)}
    if init:
        model.card.training["init"] = init


def _hold_frozen_in_eval(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Modules under a frozen prefix stay in eval mode: fixed BatchNorm statistics, no dropout."""
    if not prefixes:
        return
    for name, module in model.named_modules():
        if name and (name + ".").startswith(tuple(prefixes)):
            module.eval()


def _normaliser(card: ModelCard, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 RGB (B, 3, S, S) → the model's input, as the analyzer prepares crops at run time."""
    c = len(card.mean)
    mean = torch.tensor(card.mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
    std = torch.tensor(card.std, dtype=torch.float32, device=device).view(1, c, 1, 1)
    gray = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def norm(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device, non_blocking=True).float().div_(255.0)
        if card.input_channels == 1:
            x = (x * gray).sum(dim=1, keepdim=True)
        return (x - mean) / std

    return norm


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
                sums: dict[str, float] = {}
                n = 0
                for b, batch in enumerate(loader):
                    if b >= batches:
                        break
                    images, y = batch_inputs(batch)
                    terms = recipe.loss(model, norm(images), y.to(device), stage.name)
                    loss = terms["loss"]
                    if not torch.isfinite(loss):
                        raise ModelError(f"{cfg.model.name} stage {stage.name} epoch {epoch + 1} batch {b + 1}: loss is "
                                         f"{loss.item()}; lower the learning rate (train.stages[{si}].optimizer.lr)")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                    n += 1
                    if cb.on_batch:
                        cb.on_batch(stage.name, epoch + 1, b + 1, batches, float(loss.detach()))
                metrics = None
                last_epoch = si == last_stage and epoch == stage.epochs - 1
                every = cfg.train.eval_every
                if last_epoch or (every and (epoch + 1) % every == 0):
                    y, p = predict(model, test_set, recipe, device, cfg.train.eval_batch_size or bs, cfg.data.workers)
                    metrics = recipe.score(y, p, model.card.labels, cfg.train.threshold, cfg.data.dataset)
                record = EpochRecord(stage.name, epoch + 1, stage.epochs, {k: v / max(n, 1) for k, v in sums.items()},
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
