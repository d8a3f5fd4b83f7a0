"""CSV with OpenFace's column names, one row per face per frame, in ``<run>/<cam>.csv``.

Columns and their meaning: :mod:`auflow.engine.results` (``frame``, ``face_id``, ``timestamp``,
``confidence``, ``success``, ``AU01_r``, ``AU01_c``, ``expr_<label>``, ``bbox_*``, ``x_i``/``y_i``).
The header is written with the first face of a camera, so it lists that run's AUs and labels.
Fused windows (``window`` messages) go to their own table, ``<run>/<cam>.windows.csv``: one row per
window (:func:`auflow.engine.results.window_rows`).
"""

from __future__ import annotations

import csv
from typing import Any

from auflow.engine.plugin import PluginConfig
from auflow.engine.registry import SINKS
from auflow.engine.results import WINDOWS_STEM, column_order, face_rows, window_column_order, window_rows

from .files import PerCameraFileSink


@SINKS.register("csv")
class CsvSink(PerCameraFileSink):
    suffix = ".csv"

    class Config(PluginConfig):
        flush_every: int = 200  # rows between flushes (eos and stop always flush)

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._writers: dict[str, csv.DictWriter] = {}

    def _writer(self, cam: str, row: dict[str, Any], order=column_order) -> csv.DictWriter:
        w = self._writers.get(cam)
        if w is None:
            f, fresh = self._open(cam, newline="")
            if fresh:
                fields = order(list(row))
            else:  # appending to a file of the same run (a resumed batch): keep its header
                with open(self.paths[cam], encoding="utf-8", newline="") as old:
                    fields = next(csv.reader(old))
            # a face with fewer outputs leaves cells empty; unexpected extra outputs are not written
            w = self._writers[cam] = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
            if fresh:
                w.writeheader()
        return w

    def write(self, message: dict) -> None:
        rows = face_rows(message)
        for row in rows:
            self._writer(row["cam"], row).writerow({k: "" if v is None else v for k, v in row.items()})
        # a fused window is a row of its own table, <cam>.windows.csv
        wrows = window_rows(message)
        for row in wrows:
            self._writer(row["cam"] + WINDOWS_STEM, row, window_column_order).writerow(
                {k: "" if v is None else v for k, v in row.items()})
        self._written(len(rows) + len(wrows), message)

    def stop(self) -> None:
        super().stop()
        self._writers.clear()
