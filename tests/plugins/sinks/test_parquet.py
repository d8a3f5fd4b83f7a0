"""The parquet sink: buffered parts, each a complete file, closed cleanly on stop."""

from __future__ import annotations

import pytest

from auflow.engine.errors import ConfigError
from auflow.engine.plugin import build
from auflow.engine.registry import SINKS
from fake_messages import fake_run
from auflow.engine.plugin import StartContext

pq = pytest.importorskip("pyarrow.parquet")


def test_parts_and_schema(tmp_path):
    sink = build(SINKS, "parquet", {"row_group_rows": 16})
    sink.start(StartContext(run_dir=tmp_path))
    msgs = fake_run(frames=30)
    for m in msgs:
        sink.write(m)
    sink.stop()
    sink.stop()  # twice is harmless
    parts = sorted((tmp_path / "cam1.parquet").glob("*"))
    assert len(parts) >= 3 and all(p.name.startswith("part-") for p in parts)
    table = pq.read_table(tmp_path / "cam1.parquet")
    assert table.num_rows == sum(len(m["faces"]) for m in msgs if m["type"] == "result")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["cam"] == "string" and types["frame"] == "int64" and types["AU01_c"] == "int64"
    assert types["AU01_r"] == "double" and types["timestamp"] == "double"


def test_eos_writes_what_is_buffered(tmp_path):
    sink = build(SINKS, "parquet", {"row_group_rows": 10_000})
    sink.start(StartContext(run_dir=tmp_path))
    msgs = fake_run(frames=5)
    for m in msgs:
        sink.write(m)
    # eos arrived: the camera's rows are on disk before stop()
    assert pq.read_table(tmp_path / "cam1.parquet").num_rows == sum(len(m["faces"]) for m in msgs if m["type"] == "result")
    sink.stop()


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="row_groups"):
        build(SINKS, "parquet", {"row_groups": 3})
