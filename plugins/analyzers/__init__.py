"""Per-face analyzers: registry models wrapped as analyzers, and teachers."""

from . import mediapipe_au, torch_model  # noqa: F401
