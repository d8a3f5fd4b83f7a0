"""Per-face analyzers: registry models wrapped as analyzers, teachers, and the student-or-teacher gate."""

from . import mediapipe_au, student, temporal_encoder, torch_model  # noqa: F401
