"""Result sinks: files written from the message stream."""

from . import csv, jsonl, parquet, prometheus, video  # noqa: F401
