"""The one optimisation loop of auflow's training: an epoch of steps, shared by :func:`.trainer.train`
(every paper recipe) and :func:`.distill.distill` (the distillation recipe).

A step: the batch goes through the recipe's ``prepare`` hook (augmentation, lower-face mixing), its
loss terms are computed, a loss that is not finite stops the run with one clear error, the
optimiser and the per-step schedule step, then the ``after_step`` hook runs (an EMA of the
weights). The epoch returns the mean of each loss term over its steps.

Determinism is the caller's: it seeds the epoch and hands in the batches in their order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from auflow.engine.errors import ModelError

__all__ = ["StepHooks", "run_epoch"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StepHooks:
    """What a recipe (or a progress display) does around each step; all optional."""

    prepare: Callable[[torch.Tensor, torch.Tensor], Batch] | None = None  # the batch before its loss
    after_step: Callable[[int], None] | None = None  # after the optimiser step, with the step's index in the stage
    on_step: Callable[[int, int, float], None] | None = None  # batch (1-based), batches, loss


def run_epoch(batches: Iterable[Batch], n_batches: int, loss_fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
              opt: torch.optim.Optimizer, sched, first_step: int, hooks: StepHooks, where: str, hint: str,
              per_sample: bool = False) -> dict[str, float]:
    """Run at most ``n_batches`` steps over ``batches`` (``(inputs, targets)`` pairs); the mean of each
    loss term over the steps (``per_sample``: over the samples, each batch weighted by its size).
    ``sched``: stepped after every optimiser step (None: the caller steps its own, e.g. per epoch).
    ``first_step``: the stage's step index of the first batch (what ``after_step`` gets); a loss that
    is NaN or infinite is the error "``where`` batch N: loss is V; ``hint``"."""
    sums: dict[str, float] = {}
    n = 0
    for b, (x, y) in enumerate(batches):
        if b >= n_batches:
            break
        if hooks.prepare is not None:
            x, y = hooks.prepare(x, y)
        terms = loss_fn(x, y)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise ModelError(f"{where} batch {b + 1}: loss is {loss.item()}; {hint}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if hooks.after_step is not None:
            hooks.after_step(first_step + b)
        w = len(x) if per_sample else 1
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * w
        n += w
        if hooks.on_step is not None:
            hooks.on_step(b + 1, n_batches, float(loss.detach()))
    return {k: v / max(n, 1) for k, v in sums.items()}
