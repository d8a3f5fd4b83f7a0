"""The seed (and, for a sweep, the torch thread count) of the tests whose verdict rests on a training run.

- ``AUFLOW_TEST_SEED`` (default 0): the seed of the synthetic and distillation training tests: their
  model initialisation, shuffling and augmentation, and the generated data's draw where there is one
  (``train.seed`` and ``data.seed`` of a training config; ``seed`` of a distillation config). The suite
  runs one configuration, seed 0; ``AUFLOW_TEST_SEED=1`` and ``2`` are how the margins recorded beside
  each test were measured, and each must pass too.
- ``AUFLOW_TEST_THREADS`` (default: unset, the config's own ``train.threads``, which the configs these
  tests use pin): the torch intra-op thread count of those runs, for measuring 1 against 2 threads.

::

    AUFLOW_TEST_SEED=1 AUFLOW_TEST_THREADS=2 .venv/bin/python -m pytest -rP tests/models/train
"""

from __future__ import annotations

import os

import pytest


def _env_int(name: str, low: int) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{name}={raw!r}: expected an integer >= {low}") from None
    if value < low:
        raise pytest.UsageError(f"{name}={value}: expected an integer >= {low}")
    return value


@pytest.fixture(scope="session")
def train_seed() -> int:
    """AUFLOW_TEST_SEED, default 0."""
    seed = _env_int("AUFLOW_TEST_SEED", 0)
    return 0 if seed is None else seed


@pytest.fixture(scope="session")
def train_threads() -> int | None:
    """AUFLOW_TEST_THREADS, or None: the config's own thread count."""
    return _env_int("AUFLOW_TEST_THREADS", 1)


@pytest.fixture(scope="session")
def train_overrides(train_seed: int, train_threads: int | None) -> list[str]:
    """``--set``-style overrides of a training config for this seed (and thread count, when given)."""
    return [f"train.seed={train_seed}", f"data.seed={train_seed}",
            *([f"train.threads={train_threads}"] if train_threads is not None else [])]
