"""Fused windows in the table sinks (issue 19): their own table beside each camera's results."""

from __future__ import annotations

import csv

import pytest
from auflow.engine.results import read_results
from auflow.engine.wire import format as wire
from auflow.plugins.sinks.csv import CsvSink
from fake_messages import fake_run
from auflow.engine.plugin import StartContext


def _with_windows() -> list[dict]:
    msgs = fake_run("cam1", sid="s1", frames=20)
    out = []
    for m in msgs:
        out.append(m)
        if m["type"] == "result" and m["seq"] % 4 == 0:
            w = wire.window_message("cam1", "s1", 0, max(0, m["seq"] - 3), m["seq"], {"happiness": 0.75, "neutral": 0.25})
            w["at_seq"], w["models"] = m["seq"], {"expr": {"name": "fer_mean", "kind": "trained"}}
            out.append(w)
    return out


def test_csv_writes_a_windows_table_and_the_results_reader_keeps_to_the_faces(tmp_path):
    sink = CsvSink()
    sink.start(StartContext(run_dir=tmp_path))
    msgs = _with_windows()
    for m in msgs:
        sink.write(m)
    sink.stop()
    with open(tmp_path / "cam1.windows.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    n = sum(m["type"] == "window" for m in msgs)
    assert len(rows) == n == 5
    assert list(rows[0])[:10] == ["cam", "sid", "face_id", "start_seq", "end_seq", "at_seq", "mode", "frames", "padded",
                                  "missing"]
    assert rows[0]["model_expr"] == "fer_mean" and rows[0]["kind_expr"] == "trained"
    assert float(rows[0]["expr_happiness"]) == 0.75 and [int(r["at_seq"]) for r in rows] == [0, 4, 8, 12, 16]
    df = read_results(tmp_path)  # the run's face rows only: the windows table is not a camera
    assert set(df["cam"]) == {"cam1"} and "at_seq" not in df.columns


def test_parquet_writes_a_windows_dataset(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from auflow.plugins.sinks.parquet import ParquetSink

    sink = ParquetSink()
    sink.start(StartContext(run_dir=tmp_path))
    for m in _with_windows():
        sink.write(m)
    sink.stop()
    w = pd.read_parquet(tmp_path / "cam1.windows.parquet")
    assert len(w) == 5 and str(w["at_seq"].dtype) == "int64" and (w["model_expr"] == "fer_mean").all()
    assert len(read_results(tmp_path)) == len(read_results(tmp_path / "cam1.parquet"))
