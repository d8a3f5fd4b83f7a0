"""Result sinks: files written from the message stream."""

from . import jsonl  # noqa: F401
