"""Parquet for large runs: one row per face per frame (the CSV's columns), in ``<run>/<cam>.parquet/``.

Fused windows (``window`` messages) go to their own dataset, ``<cam>.windows.parquet/``, one row per window.

``<cam>.parquet`` is a folder of part files (a Parquet dataset, read by ``pandas.read_parquet``,
pyarrow, polars, DuckDB and Spark alike). Rows are buffered and each flush writes one complete
part file (``part-00000.parquet``, …; written under a temporary name, then renamed), so a crash
loses at most the rows not yet flushed, never a file that was. A single Parquet file could not
give that: its footer is written only when it is closed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from auflow.engine.errors import ConfigError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import SINKS
from auflow.engine.results import (
    STRING_COLUMNS,
    WINDOWS_STEM,
    column_order,
    face_rows,
    is_int_column,
    window_column_order,
    window_rows,
)


@SINKS.register("parquet")
class ParquetSink(Plugin):
    class Config(PluginConfig):
        row_group_rows: int = 10_000  # rows buffered per camera before a part file is written
        compression: str = "zstd"  # zstd | snappy | gzip | none

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.run_dir: Path | None = None
        self.paths: dict[str, Path] = {}
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._schema: dict[str, Any] = {}  # cam -> pyarrow schema, fixed by its first part
        self._parts: dict[str, int] = {}
        self._pa = self._pq = None

    def start(self, ctx: StartContext = CPU) -> None:
        run_dir = ctx.need_run_dir(type(self).__name__)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("the parquet sink needs pyarrow: pip install 'auflow[parquet]'") from None
        self._pa, self._pq = pa, pq
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write(self, message: dict) -> None:
        rows = face_rows(message)
        key = rows[0]["cam"] if rows else None
        if not rows:  # a fused window: a row of its own dataset, <cam>.windows.parquet
            rows = window_rows(message)
            key = rows[0]["cam"] + WINDOWS_STEM if rows else None
        if rows:
            buf = self._rows.setdefault(key, [])
            buf.extend(rows)
            if len(buf) >= self.config.row_group_rows:
                self._write_part(key)
        if message.get("type") == "eos":
            self._write_part(str(message.get("cam")))
            self._write_part(str(message.get("cam")) + WINDOWS_STEM)

    def _schema_for(self, rows: list[dict[str, Any]]):
        pa = self._pa
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        fields = []
        order = window_column_order if "at_seq" in names else column_order
        for c in order(list(names)):
            t = pa.string() if c in STRING_COLUMNS else pa.int64() if is_int_column(c) else pa.float64()
            fields.append(pa.field(c, t))
        return pa.schema(fields)

    def _write_part(self, cam: str) -> None:
        rows = self._rows.get(cam)
        if not rows:
            return
        schema = self._schema.get(cam)
        if schema is None:
            schema = self._schema[cam] = self._schema_for(rows)
        # same columns in every part of a camera: missing cells are null, unknown outputs are left out
        columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
        table = self._pa.Table.from_pydict(columns, schema=schema)
        folder = self.paths.setdefault(cam, self.run_dir / f"{cam}.parquet")
        folder.mkdir(exist_ok=True)
        n = self._parts.get(cam)
        if n is None:  # continue after the parts of an earlier run into the same folder
            n = len(list(folder.glob("part-*.parquet")))
        final = folder / f"part-{n:05d}.parquet"
        tmp = folder / f".part-{n:05d}.parquet.tmp"  # hidden: readers skip names starting with '.'
        compression = None if self.config.compression == "none" else self.config.compression
        self._pq.write_table(table, tmp, compression=compression)
        os.replace(tmp, final)
        self._parts[cam] = n + 1
        rows.clear()

    def flush(self) -> None:
        for cam in list(self._rows):
            self._write_part(cam)

    def stop(self) -> None:
        if self._pa is not None:
            self.flush()
