"""The student of a distillation and its data: which model is built (:func:`_build_student`), the windows an
expression student learns on (:func:`expr_windows`), its losses against the teacher's soft labels and its
predictions (per face, or per window as the run's temporal stage fuses them)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from auflow.engine.errors import ConfigError
from auflow.models import create_model

from .distill_augment import _resize_rgb
from .distill_cache import CachedVideo
from .distill_config import DistillConfig


def is_temporal_expr(name: str) -> bool:
    """Is the registered model ``name`` a temporal expression model (a factory with ``labels`` and
    ``num_frames``: arpgnet), which distill trains on windows against the expression teacher?"""
    from auflow.engine.registry import MODELS

    params = inspect.signature(MODELS.get(name)).parameters
    return "labels" in params and "num_frames" in params


def _teachers(cfg: DistillConfig) -> tuple[str, ...]:
    """The teachers to cache: a temporal expression student needs fer; the AU teacher is always run
    (its landmark presence filters the faces)."""
    t = tuple(cfg.teachers)
    return t + ("fer",) if is_temporal_expr(cfg.model) and "fer" not in t else t


def _build_student(cfg: DistillConfig, labels: tuple[str, ...], crop_size: int) -> torch.nn.Module:
    """The student with the teacher's label names: AU names for an AU model, expression names for a
    temporal expression model."""
    from auflow.engine.registry import MODELS

    factory = MODELS.get(cfg.model)
    params = inspect.signature(factory).parameters
    options = dict(cfg.options)
    if "backbone" in params:
        options.setdefault("backbone", "mobilenet_v2")
    if "input_size" in params:
        options.setdefault("input_size", crop_size)
    if is_temporal_expr(cfg.model):
        if "labels" in options:
            raise ConfigError("a distilled expression model learns the teacher's expressions: do not set labels")
        options["labels"] = list(labels)
        try:
            model = create_model(cfg.model, **options)
        except TypeError as e:
            raise ConfigError(f"options for {cfg.model}: {e}") from None
        if not all(hasattr(model, a) for a in ("forward_aux", "encode_frames", "fuse", "num_frames")):
            raise ConfigError(f"{cfg.model} has no forward_aux/encode_frames/fuse: auflow distill cannot train it on windows")
        return model
    if {"dataset", "num_classes"} & set(options):
        raise ConfigError("a distilled model learns the teacher's AUs: name them with aus, not with dataset/num_classes options")
    options["au_names"] = list(labels)
    try:
        model = create_model(cfg.model, **options)
    except TypeError as e:
        if create_model(cfg.model).card.task == "au":
            raise ConfigError(f"options for {cfg.model}: {e}") from None
        model = create_model(cfg.model)
    if model.card.task != "au":
        raise ConfigError(f"{cfg.model} is an {model.card.task!r} model; auflow distill trains AU models "
                          f"(me_graphau, topo_au, au_gcn, baseline_au) and temporal expression models (arpgnet)")
    if not hasattr(model, "forward_aux"):
        raise ConfigError(f"{cfg.model} has no forward_aux: auflow distill cannot train it")
    return model


def expr_windows(videos: list[CachedVideo], idx: list[np.ndarray], num_frames: int) -> np.ndarray:
    """Windows of ``num_frames`` consecutive frames of one track whose rows are all in ``idx``.

    Per video, a track's frames are its cached rows with ``track >= 0``, in frame order (as the
    run's temporal stage makes windows of a track's own frames); a window is every run of T of
    them, one per start frame (stride 1). With the time split a window is kept only when all its T
    rows are on the same side: a window never straddles a held-out segment or its gap. Returns
    (W, T) row indices into the videos' rows concatenated in order.
    """
    out, base = [], 0
    for v, rows in zip(videos, idx):
        member = np.zeros(len(v.rows), bool)
        member[rows] = True
        if len(v.rows):
            tracks = v.rows["track"].to_numpy(np.int64)
            frames = v.rows["frame"].to_numpy(np.int64)
            for tid in np.unique(tracks[tracks >= 0]):
                r = np.flatnonzero(tracks == tid)
                r = r[np.argsort(frames[r], kind="stable")]
                if len(r) < num_frames:
                    continue
                starts = np.arange(len(r) - num_frames + 1)
                win = r[starts[:, None] + np.arange(num_frames)[None, :]]
                out.append(base + win[member[win].all(axis=1)])
        base += len(v.rows)
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, num_frames), np.int64)


def _window_data(videos: list[CachedVideo], train_idx: list[np.ndarray], test_idx: list[np.ndarray], num_frames: int,
                 size: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Every face once, resized for the student ((N, 3, s, s) uint8 RGB), and the training and
    held-out windows as (W, T) indices into it."""
    store = torch.cat([_resize_rgb(v.crops, size) for v in videos])
    return store, expr_windows(videos, train_idx, num_frames), expr_windows(videos, test_idx, num_frames)


@torch.no_grad()
def _predict_windows(model: torch.nn.Module, store: torch.Tensor, windows: np.ndarray, norm: Callable,
                     batch: int) -> np.ndarray:
    """A temporal model's probabilities for each window, as the run's temporal stage computes them:
    every face encoded once (``encode_frames``), each window fused (``fuse``)."""
    was = model.training
    model.eval()
    try:
        used = np.unique(windows)
        pos = np.full(len(store), -1, np.int64)
        pos[used] = np.arange(len(used))
        a, r = [], []
        for i in range(0, len(used), batch):
            fa, fr = model.encode_frames(norm(store[torch.from_numpy(used[i:i + batch])].float().div_(255.0)))
            a.append(fa)
            r.append(fr)
        if not a:
            return np.zeros((0, len(model.card.labels)), np.float32)
        a, r = torch.cat(a), torch.cat(r)
        w = torch.from_numpy(pos[windows])
        parts = [model.fuse(a[w[i:i + batch]], r[w[i:i + batch]]).float().cpu().numpy() for i in range(0, len(w), batch)]
    finally:
        model.train(was)
    return np.concatenate(parts)


def _expr_loss(out: dict[str, torch.Tensor], y: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """Soft cross-entropy with the teacher's distribution (``bce``, the default: the softmax
    counterpart of the AU models' soft-target BCE), or the squared error of the probabilities (``mse``)."""
    if kind == "mse":
        main = F.mse_loss(out["probs"], y)
    else:
        main = -(y * F.log_softmax(out["logits"], dim=-1)).sum(-1).mean()
    return {"main": main, "loss": main}


def _loss(out: dict[str, torch.Tensor], y: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    def one(p: torch.Tensor) -> torch.Tensor:
        if kind == "mse":
            return F.mse_loss(p, y)
        return F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y)

    terms = {"main": one(out["probs"])}
    for k, v in out.items():
        if k.endswith("_probs") and v.shape == y.shape:
            terms[k.removesuffix("_probs")] = one(v)
    terms["loss"] = terms["main"] + 0.5 * sum(v for k, v in terms.items() if k != "main")
    return terms


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor, norm: Callable, batch: int) -> np.ndarray:
    was = model.training
    model.eval()
    try:
        parts = [model(norm(x[i:i + batch].float().div_(255.0))).float().cpu().numpy() for i in range(0, len(x), batch)]
    finally:
        model.train(was)
    return np.concatenate(parts) if parts else np.zeros((0, len(model.card.labels)), np.float32)


__all__ = ["expr_windows", "is_temporal_expr"]
