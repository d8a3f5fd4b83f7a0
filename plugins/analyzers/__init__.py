"""Per-face analyzers: registry models wrapped as analyzers, teachers, and the student-or-teacher gate."""

from . import mediapipe_au, student, torch_model  # noqa: F401
