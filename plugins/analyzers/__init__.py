"""Per-face analyzers: registry models wrapped as analyzers, and teachers."""

from . import torch_model  # noqa: F401
