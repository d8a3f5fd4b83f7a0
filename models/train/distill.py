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

Outputs in ``OUT``: ``model.pt`` (weights + card, kind ``distilled``), ``distill_state.pt`` (resume),
``metrics.json``, ``distill.yaml`` (the resolved options) and ``cache/``.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from auflow.engine.configfile import Strict, load_yaml_model
from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.types import EXPRESSIONS
from auflow.models import create_model, save_checkpoint
from auflow.models.card import ModelCard
from pydantic import Field

from .config import OptimizerSection, ScheduleSection, StageSection
from .distill_cache import CachedVideo, TeacherPass, cache_videos, load_cache
from .state import atomic_save
from .trainer import (
    _determinism,
    _device,
    _LRFactor,
    _optimizer,
    _seed_everything,
    epoch_seed,
)

log = logging.getLogger(__name__)

__all__ = ["DistillCallbacks", "DistillConfig", "DistillResult", "agreement", "distill", "expr_agreement", "expr_windows",
           "split_rows"]

STATE_FILE, MODEL_FILE, METRICS_FILE, CONFIG_FILE = "distill_state.pt", "model.pt", "metrics.json", "distill.yaml"
STATE_VERSION = 1
#: the teacher's 17 FACS AUs (its further columns are left/right halves of bilateral ones)
FACS_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU45")
#: options that may change between a run and its resumption (they do not change the result on one machine)
RESUME_FREE = ("threads", "device", "eval_every")


class DistillConfig(Strict):
    """Everything that decides a distillation; unknown keys are errors."""

    model: str = Field("me_graphau", description="registered AU model to train (auflow models list), or a temporal "
                       "expression model (arpgnet: trained on windows of its num_frames frames against fer)")
    options: dict[str, Any] = Field(default_factory=dict, description="model factory options; backbone defaults "
                                    "to mobilenet_v2 and input_size to the crop size where the model has them")
    aus: list[str] | None = Field(None, description="teacher AU columns to learn (default: its 17 FACS AUs)")
    teachers: list[str] = Field(["mediapipe_au"], description="mediapipe_au (AUs; its landmark presence filters the "
                                "faces), and fer (expressions; added for an expression student)")
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    loss: Literal["bce", "mse"] = Field("bce", description="bce: soft-target binary cross-entropy (AUs), soft "
                                        "cross-entropy with the teacher's distribution (expressions); mse: squared error")
    augment: bool = True
    mix_halves: bool = Field(True, description="augmentation: on half the faces, the lower face (rows below the nose "
                             "bridge) and its AUs come from another face of the batch (FACS codes upper and lower face "
                             "apart); off when an AU is in neither table")
    ema: float = Field(0.99, ge=0, lt=1, description="the checkpoint holds an exponential moving average of the weights "
                       "with this decay per step (0 = the last weights)")
    degrade: bool | None = Field(None, description="augmentation: blur and JPEG compression on 30 % of the faces each "
                                 "(degrade()); None: on when an input is a still image")
    holdout: Literal["auto", "time", "video", "identity"] = Field("auto", description=(
        "identity: whole people held out (every holdout_every-th person, or heldout_people), the only split whose "
        "agreement the default config's gate accepts; video: whole videos; time: segments of every video; "
        "auto: video from 5 videos, else time"))
    identities: dict[str, str] | None = Field(None, description=(
        "identity split: input (a video or image folder, by file/folder name or path) -> person; default: each input "
        "is its own person"))
    heldout_people: list[str] | None = Field(None, description="identity split: the people to hold out (default: "
                                             "every holdout_every-th person in name order, from holdout_offset)")
    segment_s: float = Field(1.0, gt=0, description="time split: segment length")
    holdout_every: int = Field(4, ge=2, description="hold out every N-th segment / video")
    holdout_offset: int = Field(2, ge=0, description="index of the first held-out segment / video")
    gap_s: float = Field(0.25, ge=0, description="time split: training frames this close to a held-out segment are dropped")
    vary_std: float = Field(0.1, gt=0, description="an AU varies when the teacher's std over all cached faces is at least this")
    threshold: float = Field(0.5, gt=0, lt=1, description="occurrence threshold for F1 (teacher and student)")
    min_presence: float = Field(0.5, ge=0, le=1, description="faces the teacher's landmark model finds less likely are not used")
    seed: int = 0
    threads: int = Field(1, ge=0, description="torch threads (0 = torch's default; 1 is fastest on a busy CPU)")
    device: str = "cpu"
    eval_every: int = Field(5, ge=0, description="report held-out agreement every N epochs (0 = only at the end)")


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


# ---------------------------------------------------------------------------------------------
def split_rows(videos: list[CachedVideo], cfg: DistillConfig) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Per video, the row indices to train on and to hold out; and the split's description."""
    mode = cfg.holdout if cfg.holdout != "auto" else ("video" if len(videos) >= 5 else "time")
    train, test = [], []
    if mode == "identity":
        return _split_identity(videos, cfg)
    if mode == "video":
        if len(videos) < 2:
            raise ConfigError("holdout=video needs at least 2 videos; use holdout=time for one")
        order = sorted(range(len(videos)), key=lambda i: videos[i].meta["video"])
        held = {order[j] for j in range(len(order)) if j % cfg.holdout_every == cfg.holdout_offset % cfg.holdout_every}
        if len(held) == len(videos):
            raise ConfigError("holdout=video would hold out every video")
        for i, v in enumerate(videos):
            idx = np.arange(len(v.rows))
            (test if i in held else train).append(idx)
            (train if i in held else test).append(np.zeros(0, np.int64))
        desc = {"mode": "video", "every": cfg.holdout_every, "offset": cfg.holdout_offset,
                "heldout_videos": [videos[i].meta["name"] for i in sorted(held)],
                "meaning": "whole videos held out: agreement on recordings the student never saw"}
        return train, test, desc
    seg, gap = cfg.segment_s, cfg.gap_s
    k, off = cfg.holdout_every, cfg.holdout_offset % cfg.holdout_every
    for v in videos:
        t = _times(v)
        s = np.floor(t / seg).astype(np.int64)
        held = s % k == off
        start = s * seg
        near_prev = ((s - 1) % k == off) & (t - start < gap)
        near_next = ((s + 1) % k == off) & (start + seg - t < gap)
        test.append(np.flatnonzero(held))
        train.append(np.flatnonzero(~held & ~near_prev & ~near_next))
    desc = {"mode": "time", "segment_s": seg, "every": k, "offset": off, "gap_s": gap,
            "meaning": (f"in each video, {seg:g}-s segments number {off}, {off + k}, {off + 2 * k}, … held out "
                        f"({gap:g} s of training frames dropped on each side): unseen frames of the same videos "
                        "and people, not other people")}
    return train, test, desc


def person_of(meta: dict, identities: dict[str, str] | None) -> str:
    """Whose faces a cached input holds: the ``identities`` entry for its path or name, else the input itself."""
    ids = identities or {}
    path = str(meta.get("video", ""))
    name = meta.get("name") or Path(path).name
    for key in (path, name, Path(name).stem):
        if key in ids:
            return ids[key]
    return Path(name).stem


def _split_identity(videos: list[CachedVideo], cfg: DistillConfig) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Whole people held out: every input of a held-out person goes to the test side, nothing of them trains."""
    who = [person_of(v.meta, cfg.identities) for v in videos]
    people = sorted(set(who))
    if len(people) < 2:
        raise ConfigError(f"holdout=identity needs faces of at least 2 people; these inputs hold {people or 'none'} "
                          "(give more people, or an identities manifest that tells them apart)")
    if cfg.heldout_people:
        unknown = sorted(set(cfg.heldout_people) - set(people))
        if unknown:
            raise ConfigError(f"heldout_people {unknown} are not among the inputs' people {people}")
        held = set(cfg.heldout_people)
    else:
        held = {p for j, p in enumerate(people) if j % cfg.holdout_every == cfg.holdout_offset % cfg.holdout_every}
    if len(held) == len(people):
        raise ConfigError(f"holdout=identity would hold out every person ({people})")
    if not held:
        raise ConfigError(f"holdout=identity holds out nobody with every={cfg.holdout_every}, offset={cfg.holdout_offset} "
                          f"over {len(people)} people: give heldout_people")
    train, test = [], []
    for v, p in zip(videos, who):
        idx = np.arange(len(v.rows))
        empty = np.zeros(0, np.int64)
        train.append(empty if p in held else idx)
        test.append(idx if p in held else empty)
    desc = {"mode": "identity", "heldout_people": sorted(held), "train_people": sorted(set(people) - held),
            "heldout_inputs": [v.meta.get("name") for v, p in zip(videos, who) if p in held],
            "meaning": "whole people held out: agreement on faces of people the student never saw"}
    return train, test, desc


def _times(v: CachedVideo) -> np.ndarray:
    """Seconds of each cached row: the container's timestamps, else frame / fps."""
    ts = v.rows["timestamp"].to_numpy(dtype=np.float64, na_value=np.nan) if "timestamp" in v.rows else None
    frames = v.rows["frame"].to_numpy(np.float64)
    by_frame = frames / (v.fps or 25.0)
    if ts is None:
        return by_frame
    t = np.where(np.isfinite(ts), ts, by_frame)
    return t - (np.nanmin(t) if len(t) else 0.0)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    sa, sb = a.std(), b.std()
    if sa < 1e-8 or sb < 1e-8:
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def agreement(student: np.ndarray, teacher: np.ndarray, names: tuple[str, ...], teacher_std: np.ndarray,
              vary_std: float, threshold: float) -> dict[str, Any]:
    """Per-AU agreement of a student with its teacher on the same faces (see the module docstring).

    Pearson is None where either side is constant; F1 is None where neither side has a positive.
    """
    per: dict[str, Any] = {}
    for j, a in enumerate(names):
        s, t = student[:, j].astype(np.float64), teacher[:, j].astype(np.float64)
        ps, pt = s >= threshold, t >= threshold
        tp, fp, fn = int(np.sum(ps & pt)), int(np.sum(ps & ~pt)), int(np.sum(~ps & pt))
        per[a] = {"pearson": _pearson(s, t), "mae": float(np.mean(np.abs(s - t))) if len(s) else None,
                  "f1": (2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else None,
                  "teacher_positives": int(pt.sum()), "teacher_std": float(teacher_std[j]),
                  "heldout_teacher_std": float(t.std()) if len(t) else None,
                  "varies": bool(teacher_std[j] >= vary_std)}
    varying = [a for a in names if per[a]["varies"]]
    rs = [per[a]["pearson"] for a in varying]
    f1s = [per[a]["f1"] for a in varying if per[a]["f1"] is not None]
    return {"per_au": per, "varying": varying, "vary_std": vary_std, "threshold": threshold, "frames": len(student),
            "mean_pearson_varying": float(np.mean([r if r is not None else 0.0 for r in rs])) if rs else None,
            "min_pearson_varying": float(min(r if r is not None else 0.0 for r in rs)) if rs else None,
            "mean_f1_varying": float(np.mean(f1s)) if f1s else None,
            "mean_mae": float(np.mean([per[a]["mae"] for a in names])) if len(student) else None}


# ---------------------------------------------------------------------------------------------
def _resize_rgb(crops_bgr: np.ndarray, size: int) -> torch.Tensor:
    """BGR crops → (N, 3, size, size) uint8 RGB, resized as the run analyzer does (INTER_AREA down)."""
    import cv2

    if not len(crops_bgr):  # an input with nothing on this side of the split
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    if crops_bgr.shape[1] != size:
        interp = cv2.INTER_AREA if crops_bgr.shape[1] > size else cv2.INTER_LINEAR
        crops_bgr = np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops_bgr])
    return torch.from_numpy(np.ascontiguousarray(crops_bgr[..., ::-1].transpose(0, 3, 1, 2)))


def augment(x: torch.Tensor, gen: torch.Generator, repeat: int = 1) -> torch.Tensor:
    """Colour jitter and a small similarity warp on a float batch in [0, 1] (B, 3, S, S); no flip.

    ``repeat``: the same draw for each run of ``repeat`` consecutive images (the T frames of a
    window get one jitter, warp and box, as one camera and one lighting would)."""
    b = x.shape[0]
    if b % repeat:
        raise ValueError(f"augment: a batch of {b} images is not a whole number of groups of {repeat}")

    def u(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(b // repeat, generator=gen)).repeat_interleave(repeat)

    bright, contrast, sat = u(0.75, 1.25), u(0.75, 1.25), u(0.7, 1.3)
    x = x * bright.view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(b, 1, 1, 1) + mean
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (x - gray) * sat.view(b, 1, 1, 1) + gray
    x = x.clamp_(0.0, 1.0)
    scale, angle = u(0.92, 1.08), u(-5.0, 5.0) * math.pi / 180.0
    tx, ty = u(-0.08, 0.08), u(-0.08, 0.08)  # grid units: ±0.08 of the half-width = ±4 % of the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing (half the faces, one grey box of 20-40 % of the side): no single region
    # (closed eyes, say) can stand in for another AU's evidence (lips apart)
    s = x.shape[-1]
    side = (u(0.2, 0.4) * s).long().clamp_(min=1)
    x0 = (u(0.0, 1.0) * (s - side)).long()
    y0 = (u(0.0, 1.0) * (s - side)).long()
    on = (torch.rand(b // repeat, generator=gen) < 0.5).repeat_interleave(repeat)
    r = torch.arange(s)
    box = (((r.view(1, s) >= x0.view(b, 1)) & (r.view(1, s) < (x0 + side).view(b, 1))).view(b, 1, s)
           & ((r.view(1, s) >= y0.view(b, 1)) & (r.view(1, s) < (y0 + side).view(b, 1))).view(b, s, 1)) & on.view(b, 1, 1)
    return torch.where(box.unsqueeze(1), torch.full_like(x, 0.5), x)


def degrade(x: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Camera-like damage on a float batch in [0, 1] (B, 3, S, S): on a ``p`` share of the images each, a Gaussian
    blur (sigma 0.3-1.2 px) and a JPEG round trip (quality 30-90, OpenCV). For stills (``degrade``): a photo is one
    sharp frame, and what auflow runs on is compressed video."""
    import cv2

    b = x.shape[0]
    blur_on, jpeg_on = torch.rand(b, generator=gen) < p, torch.rand(b, generator=gen) < p
    sigma = 0.3 + 0.9 * torch.rand(b, generator=gen)
    quality = (30 + 60 * torch.rand(b, generator=gen)).long()
    out = x.clone()
    r = torch.arange(-3, 4, dtype=torch.float32)
    for i in range(b):
        if blur_on[i]:
            k = torch.exp(-0.5 * (r / sigma[i]) ** 2)
            k = (k / k.sum()).to(x.dtype)
            img = out[i:i + 1]
            img = F.conv2d(F.pad(img, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3)
            out[i:i + 1] = F.conv2d(F.pad(img, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)
        if jpeg_on[i]:
            u8 = (out[i].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8), [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            if ok:
                out[i] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)).permute(2, 0, 1).to(x.dtype) / 255.0
    return out


#: FACS's upper-face and lower-face AUs (Ekman et al. 2002, ch. 2-3); left/right halves follow their AU
UPPER_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU43", "AU45", "AU46")
LOWER_AUS = ("AU10", "AU11", "AU12", "AU13", "AU14", "AU15", "AU16", "AU17", "AU18", "AU20", "AU22", "AU23", "AU24",
             "AU25", "AU26", "AU27", "AU28")
#: where the halves meet in an ArcFace-aligned crop (scale 1.0): eyes at 0.46, nose tip at 0.64 of the side
HALF_SPLIT = 0.58


def lower_face_mask(aus: tuple[str, ...]) -> torch.Tensor | None:
    """(K,) bool: which AUs are lower-face ones; None when an AU is in neither table."""
    base = [a.split("_")[0] for a in aus]
    if any(b not in UPPER_AUS + LOWER_AUS for b in base):
        return None
    return torch.tensor([b in LOWER_AUS for b in base])


def mix_halves(x: torch.Tensor, y: torch.Tensor, lower: torch.Tensor, gen: torch.Generator,
               split: float = HALF_SPLIT) -> tuple[torch.Tensor, torch.Tensor]:
    """On half the samples, the rows below ``split`` and the lower-face AUs come from another sample
    of the batch: new combinations of upper- and lower-face AUs (e.g. eyes shut while laughing)."""
    b, s = x.shape[0], x.shape[-1]
    partner = torch.randperm(b, generator=gen)
    on = torch.rand(b, generator=gen) < 0.5
    rows = (torch.arange(s) >= round(split * s)).view(1, 1, s, 1)
    x = torch.where(on.view(b, 1, 1, 1) & rows, x[partner], x)
    y = torch.where(on.view(b, 1) & lower.view(1, -1), y[partner], y)
    return x, y


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


def expr_agreement(student: np.ndarray, teacher: np.ndarray, labels: tuple[str, ...],
                   teacher_centre: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement of a student's expression probabilities with the teacher's on the same windows.

    ``top1``: share of windows whose most probable expression is the teacher's; ``kl``: mean
    KL(teacher ‖ student) in nats; ``mae``: mean |student − teacher| over windows and classes;
    ``majority_top1``: the top-1 agreement of always answering the teacher's most frequent
    expression (what a student that learned nothing but the prior would score);
    ``top1_centre``: top-1 agreement with the teacher on the window's centre frame alone.
    """
    s = np.asarray(student, np.float64)
    t = np.asarray(teacher, np.float64)
    n = len(s)
    ts, tt = s.argmax(1) if n else np.zeros(0, int), t.argmax(1) if n else np.zeros(0, int)
    eps = 1e-7
    kl = np.sum(t * (np.log(np.clip(t, eps, 1.0)) - np.log(np.clip(s, eps, 1.0))), axis=1) if n else np.zeros(0)
    counts = np.bincount(tt, minlength=len(labels)) if n else np.zeros(len(labels), int)
    per = {}
    for j, name in enumerate(labels):
        sel = tt == j
        per[name] = {"teacher_top1": int(sel.sum()), "student_top1": int((ts == j).sum()),
                     "agreement": float(np.mean(ts[sel] == j)) if sel.any() else None,
                     "teacher_mean": float(t[:, j].mean()) if n else None, "student_mean": float(s[:, j].mean()) if n else None}
    res = {"per_class": per, "windows": n,
           "top1": float(np.mean(ts == tt)) if n else None,
           "kl": float(kl.mean()) if n else None,
           "mae": float(np.abs(s - t).mean()) if n else None,
           "majority_top1": float(counts.max() / n) if n else None,
           "top1_centre": None}
    if teacher_centre is not None and n:
        res["top1_centre"] = float(np.mean(ts == np.asarray(teacher_centre).argmax(1)))
    return res


#: the held-out figures kept in each epoch's record
AU_SUMMARY = ("mean_pearson_varying", "min_pearson_varying", "mean_f1_varying", "mean_mae")
EXPR_SUMMARY = ("top1", "kl", "mae", "majority_top1")


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


def _config_key(cfg: DistillConfig, videos: list[CachedVideo]) -> dict:
    d = cfg.model_dump(mode="json")
    for k in RESUME_FREE:
        d.pop(k, None)
    d["videos"] = [{"key": v.key, "faces": len(v.rows)} for v in videos]
    return d


def _load_state(out: Path, key: dict) -> dict | None:
    path = out / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the same user error
        raise ModelError(f"{path} is not a readable distillation state ({e}); delete it or pass --no-resume") from e
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

        lower = lower_face_mask(labels) if cfg.mix_halves and not expr else None
        bs = cfg.batch_size
        steps = n_train // bs
        stage = StageSection(name="distill", epochs=cfg.epochs,
                             optimizer=OptimizerSection(name="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay),
                             schedule=ScheduleSection(name="cosine", warmup_epochs=cfg.warmup_epochs))
        # the weights that are evaluated and written: an EMA of the trained ones (or the model itself)
        ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema else model
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
        from auflow.engine.sources.images import IMAGE_EXTENSIONS

        stills = cfg.degrade if cfg.degrade is not None else any(Path(v).suffix.lower() in IMAGE_EXTENSIONS for v in videos)
        info["degrade"] = bool(stills and cfg.augment and not expr)
        agree = None
        for epoch in range(first, last):
            te = time.perf_counter()
            es = epoch_seed(cfg.seed, 0, epoch)
            _seed_everything(es)
            gen = torch.Generator().manual_seed(es)
            order = torch.randperm(n_train, generator=gen)
            model.train()
            sums: dict[str, float] = {}
            for b in range(steps):
                idx = order[b * bs:(b + 1) * bs]
                x, y = batch_x(idx), y_train[idx]
                if cfg.augment and lower is not None:
                    x, y = mix_halves(x, y, lower, gen)
                if cfg.augment:
                    x = augment(x.flatten(0, 1), gen, repeat=T).view_as(x) if expr else augment(x, gen)
                    if stills and not expr:
                        x = degrade(x, gen)
                if expr:
                    terms = _expr_loss(model.forward_aux(norm(x.flatten(0, 1)).view_as(x)), y.to(device), cfg.loss)
                else:
                    terms = _loss(model.forward_aux(norm(x)), y.to(device), cfg.loss)
                loss = terms["loss"]
                if not torch.isfinite(loss):
                    raise ModelError(f"distill epoch {epoch + 1} step {b + 1}: loss is {loss.item()}; lower --lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if cfg.ema:
                    _ema_update(ema, model, cfg.ema, epoch * steps + b)
                for k2, v2 in terms.items():
                    sums[k2] = sums.get(k2, 0.0) + float(v2.detach())
                if cb.on_step:
                    cb.on_step(epoch + 1, b + 1, steps, float(loss.detach()))
            record: dict[str, Any] = {"epoch": epoch + 1, "epochs": cfg.epochs, "step": (epoch + 1) * steps,
                                      "loss": {k2: v2 / max(steps, 1) for k2, v2 in sums.items()},
                                      "lr": float(opt.param_groups[0]["lr"]), "seconds": time.perf_counter() - te}
            final = epoch + 1 == cfg.epochs
            if final or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                agree = evaluate(ema)
                record["heldout"] = {k2: agree[k2] for k2 in (EXPR_SUMMARY if expr else AU_SUMMARY)}
            history.append(record)
            atomic_save({"version": STATE_VERSION, "config": key, "epoch": epoch + 1, "model": model.state_dict(), "ema": ema.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "history": json.dumps(history)}, out / STATE_FILE)
            card = _card(ema, cfg, cached, tp, info, history, agree if final else None, final)
            ckpt = _write(out, ema, card, history)
            if cb.on_epoch_end:
                cb.on_epoch_end(record)
        done = int(history[-1]["epoch"]) if history else 0
        if done >= cfg.epochs and agree is None:  # finished in an earlier call: measure again for the result
            agree = evaluate(ema)
        card = _card(ema, cfg, cached, tp, info, history, agree if done >= cfg.epochs else None, done >= cfg.epochs)
        ckpt = _write(out, ema, card, history)
    return DistillResult(out, ckpt, card, tp, history, agree or {}, first, done * steps, time.perf_counter() - t0,
                         stopped=done < cfg.epochs, split=split)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """EMA of every float tensor of the state (weights and BatchNorm statistics); the decay ramps up
    over the first steps, (1 + t) / (10 + t), so the average does not start from the random init."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m, alpha=1.0 - d)
            else:
                e.copy_(m)


def _card(model, cfg: DistillConfig, videos: list[CachedVideo], tp: TeacherPass, info: dict, history: list[dict],
          agree: dict | None, complete: bool) -> ModelCard:
    base = model.card
    teacher = videos[0].meta["teacher"]
    expr = base.task == "expr"
    name = teacher["expr"]["name"] if expr else teacher["au"]["name"]
    T = info["num_frames"]
    training = {
        "kind": "distilled",
        "teacher": {"expr": teacher["expr"]} if expr else teacher,
        "data": (f"pseudo-labels of {name} on {len(videos)} unlabeled video(s); "
                 + ("no human expression labels" if expr else "no human FACS coding")),
        "videos": [{"name": v.meta["name"], "path": v.meta["video"], "bytes": v.meta["bytes"], "fps": v.meta["fps"],
                    "frames": v.meta.get("frames"), "faces": len(v.rows)} for v in videos],
        "frames": int(sum(v.meta.get("frames") or 0 for v in videos)),
        "faces": int(sum(len(v.rows) for v in videos)),
        f"train_{'windows' if expr else 'faces'}": info["n_train"],
        f"heldout_{'windows' if expr else 'faces'}": info["n_test"],
        "split": info["split"],
        "objective": (f"{'soft cross-entropy' if cfg.loss == 'bce' else 'mse'} with the mean of {name}'s expression "
                      f"probabilities over the window's {T} frames" if expr else
                      f"{cfg.loss} on the teacher's AU values as soft targets (+0.5 × auxiliary probability heads)"),
        "weights": f"exponential moving average, decay {cfg.ema} per step" if cfg.ema else "the last step's",
        "augmentation": (("upper/lower face halves mixed between faces, " if cfg.mix_halves and not expr else "")
                         + "colour jitter, ±4 % shift, ±8 % scale, ±5° rotation, random erasing; no flip"
                         + ("; one draw per window" if expr else "")
                         + ("; blur and JPEG compression on 30 % of the faces each" if info.get("degrade") else ""))
                        if cfg.augment else "none",
        "epochs": cfg.epochs,
        "epochs_done": int(history[-1]["epoch"]) if history else 0,
        "complete": complete,
        "config": cfg.model_dump(mode="json"),
        "agreement": None if agree is None else {"split": "heldout", **agree},
        "note": ((f"distilled: trained to imitate {name}'s per-frame expressions (FER2013-trained; errors included), "
                  f"averaged over windows of {T} frames of a track, on the videos above; not trained on any labelled "
                  "video expression dataset (RML, AFEW, Aff-Wild2); its held-out agreement is with the teacher, "
                  "not with human annotators") if expr else
                 ("distilled: trained to imitate the teacher (errors included, see docs/teachers.md) on the videos above; "
                  "not trained on any FACS-coded dataset (DISFA, BP4D); its held-out agreement is with the teacher, "
                  "not with human coders")),
    }
    if expr:
        training["windows"] = {"num_frames": T, "stride": 1, "target": f"mean of the teacher's probabilities over the {T} frames",
                               "frames": "a track's own cached frames in frame order (track >= 0); all T on one side of the split"}
    return ModelCard(name=base.name, task=base.task, labels=base.labels, config=dict(base.config), input_size=base.input_size,
                     input_channels=base.input_channels, mean=base.mean, std=base.std, kind="distilled",
                     multilabel=base.multilabel, training=training, paper=base.paper)


def _write(out: Path, model, card: ModelCard, history: list[dict]) -> Path:
    tmp = out / (MODEL_FILE + ".tmp")
    save_checkpoint(model, tmp, card)
    os.replace(tmp, out / MODEL_FILE)
    (out / METRICS_FILE).write_text(json.dumps({"history": history, "agreement": card.training.get("agreement")}, indent=2))
    return out / MODEL_FILE


def load_distill_config(path: str | Path | None, overrides: dict[str, Any]) -> DistillConfig:
    """A YAML file of DistillConfig keys (optional; read by auflow's one config loader: line-numbered
    errors) with the command line's values on top."""
    return load_yaml_model(DistillConfig, path, (), what="distill options file", updates=overrides)[0]