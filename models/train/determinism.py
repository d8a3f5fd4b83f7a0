"""Reproducible training runs: seeds derived from (seed, stage, epoch) alone, deterministic algorithms
while a run trains, the thread count pinned (the trainer's docstring: "Determinism")."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from auflow.engine.errors import ConfigError


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


__all__ = ["epoch_seed"]
