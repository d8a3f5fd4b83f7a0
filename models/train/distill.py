"""``auflow distill``: train a registry AU (or temporal expression) model on unlabeled video from a teacher's soft labels.

1. **Teacher pass** (:mod:`.distill_cache`): every face of every video is shown once to the teacher
   (``mediapipe_au``; ``fer`` too if asked); pseudo-labels and the student's crops are cached in
   ``OUT/cache`` (Parquet + ``.npy``), resumable per video and per part of a video.
2. **Split** (:func:`split_rows`), written on the card:

   - ``time`` (default for fewer than 5 videos): each video is cut into segments of ``segment_s``
     seconds; every ``holdout_every``-th segment (starting at index ``holdout_offset``) is held out,
     so the held-out frames are spread over the whole video and see every expression in it; the
     ``gap_s`` seconds of training frames on either side of a held-out segment are dropped, so that
     no training frame is a near-copy of a held-out neighbour. Held-out frames are unseen frames of
     *the same people in the same videos*: agreement there says the student imitates the teacher
     on this material, not that it generalises to other people.
   - ``video`` (default from 5 videos): every ``holdout_every``-th video (in path order, from
     ``holdout_offset``) is held out whole: agreement on other recordings (other people, if each
     video is a different person; auflow does not know who is who).
   - ``identity``: whole people held out (``heldout_people``, or every ``holdout_every``-th person in
     name order): each input (a video, an image folder) is one person unless an ``identities``
     manifest says whose faces it holds, so several recordings of one person stay on one side. The
     only split whose agreement the default config's gate accepts (plugins/analyzers/student.py):
     it measures the student on faces it never saw, which is what users run auflow on. The AUs that
     *vary* are then those that vary on the held-out people.

3. **Training**: the student is the registered model (``me_graphau``, ``topo_au``, ``au_gcn``,
   ``baseline_au``) labelled with the teacher's AUs; objective: binary cross-entropy with the
   teacher's AU values as soft targets on the model's AU probabilities (``bce``; or ``mse``), plus
   half that on auxiliary probability heads (ME-GraphAU's FGG prediction); augmentation: colour
   jitter (brightness, contrast, saturation), upper/lower face halves of two faces put together
   with their AUs (``mix_halves``: FACS codes the upper and lower face apart, and one clip rarely
   shows every combination), a small random similarity warp (±4 % shift,
   ±8 % scale, ±5°) and random erasing (a grey box on half the faces). No horizontal flip: it would swap left and right AUs. One stage, AdamW,
   cosine decay per step, the trainer's per-epoch seeding, so a resumed run ends with the same
   weights as an uninterrupted one (same machine, threads and libraries). The checkpoint holds an
   exponential moving average of the weights (``ema``, 0.99 per step): on one clip's few hundred
   faces the last step's weights swing from epoch to epoch on the held-out frames.
4. **Agreement** on the held-out split (:func:`agreement`): per AU, Pearson r with the teacher,
   mean |student − teacher|, F1 at the teacher's threshold (both binarised at ``threshold``, 0.5:
   the occurrence threshold of auflow's outputs), and the teacher's std over all cached frames.
   An AU *varies* when that std is ≥ ``vary_std`` (0.1); correlation on an AU that does not move
   measures noise, so the summary (``mean_pearson_varying``) is over the AUs that vary.

5. **Expression students** (a temporal expression model such as ``arpgnet``, paper 003; detected by
   its factory's ``labels`` and ``num_frames``): ``fer`` is added to the teachers and its per-frame
   probabilities cached beside the AUs. The student learns on *windows* (:func:`expr_windows`):
   T = ``num_frames`` consecutive frames of one track (its own cached frames in order, as the run's
   temporal stage makes them), every start frame, all T on the same side of the split, so no
   window straddles a held-out segment. The target is the **mean of fer's probabilities over the
   window's T frames** (not the centre frame's): a window message describes the whole window, and
   the mean is less noisy than fer's single frames. Objective: soft cross-entropy (``loss: bce``)
   or squared error (``mse``); augmentation as above with one draw per window (no ``mix_halves``:
   an expression belongs to the whole face). Agreement (:func:`expr_agreement`): held-out top-1
   agreement with the teacher's window mean, mean KL(teacher ‖ student), mean |Δ|, the majority-class
   baseline, and top-1 agreement with fer on the centre frame alone. Windows are evaluated as the
   run computes them: each face encoded once, each window fused.

The parts, each in its module: :mod:`.distill_config` (the options), :mod:`.distill_cache` (the teacher
pass), :mod:`.distill_split` (step 2), :mod:`.distill_augment` (augmentation), :mod:`.distill_student` (the
student, its windows, losses and predictions), :mod:`.distill_recipe` (step 3 as a recipe of the trainer:
its loss, the augmentation and EMA hooks on the step loop of :mod:`.loop` that ``auflow train`` runs too, and
the card), :mod:`.distill_agreement` (step 4); this module runs them.

Outputs in ``OUT``: ``model.pt`` (weights + card, kind ``distilled``), ``distill_state.pt`` (resume),
``metrics.json``, ``distill.yaml`` (the resolved options) and ``cache/``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from auflow.engine.errors import ConfigError
from auflow.engine.types import EXPRESSIONS
from auflow.models import save_checkpoint
from auflow.models.card import ModelCard

from .config import OptimizerSection, ScheduleSection, StageSection
from .distill_agreement import AU_SUMMARY, EXPR_SUMMARY, agreement, expr_agreement
from .distill_augment import _resize_rgb, augment, degrade, lower_face_mask, mix_halves
from .distill_cache import CachedVideo, TeacherPass, cache_videos, load_cache
from .distill_config import FACS_AUS, RESUME_FREE, DistillConfig, load_distill_config
from .distill_recipe import DistillRecipe, distilled_card
from .distill_split import person_of, split_rows
from .distill_student import _build_student, _predict, _predict_windows, _teachers, _window_data, expr_windows, is_temporal_expr
from .loop import run_epoch
from .state import atomic_save, read_state
from .trainer import _determinism, _device, _LRFactor, _optimizer, _seed_everything, epoch_seed

log = logging.getLogger(__name__)

__all__ = ["AU_SUMMARY", "EXPR_SUMMARY", "FACS_AUS", "DistillCallbacks", "DistillConfig", "DistillResult", "agreement",
           "augment", "degrade", "distill", "expr_agreement", "expr_windows", "load_distill_config", "lower_face_mask", "mix_halves",
           "person_of", "split_rows"]  # the parts' names too: `from auflow.models.train.distill import ...` keeps working

STATE_FILE, MODEL_FILE, METRICS_FILE, CONFIG_FILE = "distill_state.pt", "model.pt", "metrics.json", "distill.yaml"
STATE_VERSION = 1


@dataclass
class DistillCallbacks:
    """Hooks for the CLI's progress display; all optional."""

    on_video: Callable[[str, int | None, int], None] | None = None  # key, total frames, frames already cached
    on_frame: Callable[[str, int, int | None], None] | None = None  # key, frame, total
    on_train_start: Callable[[int, int, int, int], None] | None = None  # first epoch (1-based), epochs, steps/epoch, step
    on_step: Callable[[int, int, int, float], None] | None = None  # epoch, step in epoch (1-based), steps, loss
    on_epoch_end: Callable[[dict], None] | None = None  # the epoch's record


@dataclass
class DistillResult:
    out_dir: Path
    checkpoint: Path
    card: ModelCard
    teacher_pass: TeacherPass
    history: list[dict]
    agreement: dict[str, Any]
    resumed_from_epoch: int
    steps: int  # optimiser steps done in total (across resumptions)
    seconds: float
    stopped: bool = False  # stopped by stop_after_epochs before the last epoch
    split: dict[str, Any] = field(default_factory=dict)


def _config_key(cfg: DistillConfig, videos: list[CachedVideo]) -> dict:
    d = cfg.model_dump(mode="json")
    for k in RESUME_FREE:
        d.pop(k, None)
    d["videos"] = [{"key": v.key, "faces": len(v.rows)} for v in videos]
    return d


def _load_state(out: Path, key: dict) -> dict | None:
    state = read_state(out / STATE_FILE, "distillation state", "pass --no-resume")
    if state is None:
        return None
    if state.get("version") != STATE_VERSION or state.get("config") != key:
        raise ConfigError(f"{out} holds a distillation with other options or videos ({CONFIG_FILE} there); resume it with "
                          "the same command, distil into another --out, or pass --no-resume to start over")
    return state


def distill(
    videos: list[str],
    out_dir: str | Path,
    cfg: DistillConfig | None = None,
    face_cfg=None,
    resume: bool = True,
    callbacks: DistillCallbacks | None = None,
    stop_after_epochs: int | None = None,
) -> DistillResult:
    """Teacher pass (cached), split, train, measure agreement; see the module docstring.

    ``stop_after_epochs``: train at most this many epochs in this call and return (the state is
    saved; the next call resumes), e.g. to time-box a session or to test resumption.
    """
    cfg = cfg or DistillConfig()
    cb = callbacks or DistillCallbacks()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not videos:
        raise ConfigError("auflow distill needs at least one video")
    expr = is_temporal_expr(cfg.model)
    crop = int((face_cfg.align.options if face_cfg is not None else {}).get("size", 112))
    # a wrong model or option fails before the teacher pass
    _build_student(cfg, EXPRESSIONS if expr else tuple(cfg.aus or FACS_AUS), crop)
    tp = cache_videos(videos, out / "cache", _teachers(cfg), face_cfg, cb.on_frame, cb.on_video,
                      threads=cfg.threads or 1)
    cached = load_cache(out / "cache", tp.videos)
    if expr:
        cols = tuple(cached[0].meta.get("expr_labels") or ())
        if not cols:
            raise ConfigError(f"the cache in {out / 'cache'} has no expression teacher labels")
        labels, targets = cols, tuple(f"expr_{e}" for e in cols)
    else:
        au_cols = tuple(cached[0].meta["au_labels"])
        labels = tuple(cfg.aus) if cfg.aus is not None else tuple(a for a in FACS_AUS if a in au_cols)
        missing = [a for a in labels if a not in au_cols]
        if missing or not labels:
            raise ConfigError(f"aus {missing or 'nothing'}: the teacher gives {', '.join(au_cols)}")
        targets = labels
    crop_size = int(cached[0].meta["crop"]["size"])
    # faces the teacher's landmark model does not believe in are kept in the cache, not used
    for v in cached:
        keep = v.rows["presence"].to_numpy() >= cfg.min_presence if len(v.rows) else np.zeros(0, bool)
        v.rows, v.crops = v.rows[keep].reset_index(drop=True), v.crops[keep]
    train_idx, test_idx, split = split_rows(cached, cfg)
    device = _device(cfg.device)
    key = _config_key(cfg, cached)

    with _determinism(True, device, cfg.threads):
        torch.manual_seed(cfg.seed)
        model = _build_student(cfg, labels, crop_size)
        size = model.card.input_size
        if model.card.input_channels != 3:
            raise ConfigError(f"{cfg.model} takes {model.card.input_channels}-channel input; distill trains RGB models")
        if expr:
            T = int(model.num_frames)
            store, train_w, test_w = _window_data(cached, train_idx, test_idx, T, size)
            y_cat = np.concatenate([v.rows[list(targets)].to_numpy(np.float32) for v in cached])
            y_train = torch.from_numpy(y_cat[train_w].mean(axis=1)) if len(train_w) else torch.zeros(0, len(labels))
            y_test = torch.from_numpy(y_cat[test_w].mean(axis=1)) if len(test_w) else torch.zeros(0, len(labels))
            centre_test = y_cat[test_w[:, T // 2]] if len(test_w) else np.zeros((0, len(labels)), np.float32)
            n_train, n_test = len(train_w), len(test_w)
            unit = "windows"
        else:
            T = 1

            def gather(idx: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
                x = torch.cat([_resize_rgb(v.crops[i], size) for v, i in zip(cached, idx)])
                y = np.concatenate([v.rows[list(labels)].to_numpy(np.float32)[i] for v, i in zip(cached, idx)])
                return x, torch.from_numpy(y)

            x_train, y_train = gather(train_idx)
            x_test, y_test = gather(test_idx)
            n_train, n_test = len(x_train), len(x_test)
            all_y = np.concatenate([v.rows[list(labels)].to_numpy(np.float32) for v in cached])
            # which AUs vary: over every cached face; with people held out, over theirs (the gate asks for
            # agreement on every AU that varies on the people the student never saw)
            teacher_std = y_test.numpy().std(axis=0) if split.get("mode") == "identity" else all_y.std(axis=0)
            unit = "faces"
        if n_train < cfg.batch_size or n_test < 3:
            raise ConfigError(f"{n_train} training and {n_test} held-out {unit}: too few for batch_size {cfg.batch_size}; "
                              "give more video, a smaller batch or another split")
        model.to(device)
        c = model.card
        mean = torch.tensor(c.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(c.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

        def norm(x01: torch.Tensor) -> torch.Tensor:
            return (x01.to(device) - mean) / std

        def batch_x(idx: torch.Tensor) -> torch.Tensor:
            """The training samples ``idx`` as floats in [0, 1]: faces (B, 3, S, S) or windows (B, T, 3, S, S)."""
            if expr:
                return store[torch.from_numpy(train_w)[idx]].float().div_(255.0)
            return x_train[idx].float().div_(255.0)

        def evaluate(net: torch.nn.Module) -> dict[str, Any]:
            if expr:
                got = expr_agreement(_predict_windows(net, store, test_w, norm, 64), y_test.numpy(), labels, centre_test)
                return {**got, "faces": len(np.unique(test_w))}
            return agreement(_predict(net, x_test, norm, 64), y_test.numpy(), labels, teacher_std, cfg.vary_std, cfg.threshold)

        from auflow.engine.sources.images import IMAGE_EXTENSIONS

        stills = cfg.degrade if cfg.degrade is not None else any(Path(v).suffix.lower() in IMAGE_EXTENSIONS for v in videos)
        # the weights that are evaluated and written: the recipe's EMA of the trained ones (or the model itself)
        recipe = DistillRecipe(cfg, model, labels, expr, bool(stills))
        ema = recipe.ema
        bs = cfg.batch_size
        steps = n_train // bs
        stage = StageSection(name="distill", epochs=cfg.epochs,
                             optimizer=OptimizerSection(name="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay),
                             schedule=ScheduleSection(name="cosine", warmup_epochs=cfg.warmup_epochs))
        opt = _optimizer([p for p in model.parameters() if p.requires_grad], stage)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _LRFactor(stage, steps))
        state = _load_state(out, key) if resume else None
        history: list[dict] = []
        first = 0
        if state is not None:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history = list(json.loads(state["history"]))
            first = int(state["epoch"])
            log.info("resuming %s after epoch %d (step %d)", out, first, first * steps)
        else:
            (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        if cb.on_train_start:
            cb.on_train_start(first + 1, cfg.epochs, steps, first * steps)
        last = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, first + stop_after_epochs)
        info = {"split": split, "n_train": n_train, "n_test": n_test, "labels": labels, "num_frames": T}
        info["degrade"] = bool(stills and cfg.augment and not expr)
        agree = None
        for epoch in range(first, last):
            te = time.perf_counter()
            es = epoch_seed(cfg.seed, 0, epoch)
            _seed_everything(es)
            gen = torch.Generator().manual_seed(es)
            order = torch.randperm(n_train, generator=gen)
            model.train()
            on_step = None if cb.on_step is None else functools.partial(cb.on_step, epoch + 1)
            batches = ((batch_x(idx), y_train[idx]) for idx in order[:steps * bs].split(bs))
            mean_loss = run_epoch(batches, steps, functools.partial(_student_loss, recipe, model, norm, device), opt, sched,
                                  epoch * steps, recipe.hooks(gen, on_step), f"distill epoch {epoch + 1}", "lower --lr")
            record: dict[str, Any] = {"epoch": epoch + 1, "epochs": cfg.epochs, "step": (epoch + 1) * steps, "loss": mean_loss,
                                      "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - te}
            final = epoch + 1 == cfg.epochs
            if final or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                agree = evaluate(ema)
                record["heldout"] = {k2: agree[k2] for k2 in (EXPR_SUMMARY if expr else AU_SUMMARY)}
            history.append(record)
            atomic_save({"version": STATE_VERSION, "config": key, "epoch": epoch + 1, "model": model.state_dict(), "ema": ema.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "history": json.dumps(history)}, out / STATE_FILE)
            card = distilled_card(ema, cfg, cached, tp, info, history, agree if final else None, final)
            ckpt = _write(out, ema, card, history)
            if cb.on_epoch_end:
                cb.on_epoch_end(record)
        done = int(history[-1]["epoch"]) if history else 0
        if done >= cfg.epochs and agree is None:  # finished in an earlier call: measure again for the result
            agree = evaluate(ema)
        card = distilled_card(ema, cfg, cached, tp, info, history, agree if done >= cfg.epochs else None, done >= cfg.epochs)
        ckpt = _write(out, ema, card, history)
    return DistillResult(out, ckpt, card, tp, history, agree or {}, first, done * steps, time.perf_counter() - t0,
                         stopped=done < cfg.epochs, split=split)


def _student_loss(recipe: DistillRecipe, model: torch.nn.Module, norm, device: torch.device, x: torch.Tensor,
                  y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The recipe's loss on a batch in [0, 1]; windows (B, T, 3, S, S) are normalised frame by frame."""
    xn = norm(x.flatten(0, 1)).view_as(x) if x.dim() == 5 else norm(x)
    return recipe.loss(model, xn, y.to(device), "distill")


def _write(out: Path, model, card: ModelCard, history: list[dict]) -> Path:
    tmp = out / (MODEL_FILE + ".tmp")
    save_checkpoint(model, tmp, card)
    os.replace(tmp, out / MODEL_FILE)
    (out / METRICS_FILE).write_text(json.dumps({"history": history, "agreement": card.training.get("agreement")}, indent=2))
    return out / MODEL_FILE
