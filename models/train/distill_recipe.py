"""Distillation as a recipe of the trainer: one stage (``distill``), its loss on the teacher's soft
targets, and its hooks on the shared step loop (:mod:`.loop`): lower-face mixing, augmentation and,
for still images, degradation before the loss; an exponential moving average of the weights after
each step. The distilled model's card (:func:`distilled_card`) says all of it."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import ClassVar

import torch
from auflow.models.card import ModelCard

from .distill_augment import augment, degrade, lower_face_mask, mix_halves
from .distill_cache import CachedVideo, TeacherPass
from .distill_config import DistillConfig
from .distill_student import _expr_loss, _loss
from .loop import StepHooks
from .recipes import RecipeOptions, TrainingRecipe

__all__ = ["DistillRecipe", "distilled_card", "ema_update"]


class DistillRecipe(TrainingRecipe):
    """The student's objective against the teacher (``bce`` or ``mse``; soft cross-entropy on windows
    for an expression student) and the batch hooks; ``ema`` holds the averaged weights (the model
    itself with ``cfg.ema`` 0)."""

    stages: ClassVar[tuple[str, ...]] = ("distill",)
    Options: ClassVar[type[RecipeOptions]] = RecipeOptions
    objective: ClassVar[str] = "the teacher's values as soft targets"

    def __init__(self, cfg: DistillConfig, model: torch.nn.Module, labels: tuple[str, ...], expr: bool, stills: bool) -> None:
        super().__init__(None)
        self.cfg, self.expr, self.stills = cfg, expr, stills
        self.T = int(getattr(model, "num_frames", 1)) if expr else 1
        self.lower = lower_face_mask(labels) if cfg.mix_halves and not expr else None
        self.ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema else model
        self._model = model

    def loss(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, stage: str) -> dict[str, torch.Tensor]:
        out = model.forward_aux(images)
        return _expr_loss(out, labels, self.cfg.loss) if self.expr else _loss(out, labels, self.cfg.loss)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch in [0, 1] (faces (B, 3, S, S) or windows (B, T, 3, S, S)) as the loss sees it; the
        draws come from ``gen``, in this order: halves, augmentation, degradation."""
        if not self.cfg.augment:
            return x, y
        if self.lower is not None:
            x, y = mix_halves(x, y, self.lower, gen)
        if self.expr:
            return augment(x.flatten(0, 1), gen, repeat=self.T).view_as(x), y
        x = augment(x, gen)
        return (degrade(x, gen) if self.stills else x), y

    def hooks(self, gen: torch.Generator, on_step=None) -> StepHooks:
        """The step loop's hooks for one epoch: ``prepare`` with the epoch's generator, the EMA update."""
        after = None
        if self.cfg.ema:
            def after(step: int) -> None:
                ema_update(self.ema, self._model, self.cfg.ema, step)
        return StepHooks(prepare=lambda x, y: self.prepare(x, y, gen), after_step=after, on_step=on_step)

    def describe(self) -> dict:
        return {"recipe": type(self).__name__, "objective": self.objective, "loss": self.cfg.loss, "ema": self.cfg.ema,
                "mix_halves": self.lower is not None, "augment": self.cfg.augment, "degrade": bool(self.stills)}


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """EMA of every float tensor of the state (weights and BatchNorm statistics); the decay ramps up
    over the first steps, (1 + t) / (10 + t), so the average does not start from the random init."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m, alpha=1.0 - d)
            else:
                e.copy_(m)


def distilled_card(model, cfg: DistillConfig, videos: list[CachedVideo], tp: TeacherPass, info: dict, history: list[dict],
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
    return replace(base, config=dict(base.config), kind="distilled", training=training)
