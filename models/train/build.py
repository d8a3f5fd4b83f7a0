"""What a training run is built from: the model (options, initialisation, frozen parts), the datasets of
its config (AU datasets, the expression datasets, the generated sets) and their label names."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from auflow.engine.errors import ConfigError
from auflow.models import create_model
from auflow.models.card import ModelCard

from .config import EXPR_DATASETS, TrainConfig

log = logging.getLogger("auflow.models.train.trainer")  # the run's log lines keep their logger name

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


__all__ = ["EXPR_SYNTHETIC", "EXPR_TEST_SPLIT", "build_datasets", "build_expr_datasets", "build_model", "is_expr", "label_names"]
