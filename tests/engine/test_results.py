"""auflow.read_results: the same DataFrame from JSONL, CSV and Parquet of one run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import auflow
from auflow.engine.results import ResultsError, face_rows, read_results
from auflow.plugins.sinks.csv import CsvSink
from auflow.plugins.sinks.jsonl import JsonlSink
from auflow.plugins.sinks.parquet import ParquetSink
from fake_messages import fake_run
from auflow.engine.plugin import StartContext

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[parquet]')")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'auflow[parquet]')")


def _write_run(run_dir, messages, row_group_rows=7):
    sinks = [JsonlSink(), CsvSink(), ParquetSink(ParquetSink.Config(row_group_rows=row_group_rows))]
    for s in sinks:
        s.start(StartContext(run_dir=run_dir))
    for m in messages:
        for s in sinks:
            s.write(m)
    for s in sinks:
        s.stop()


def test_jsonl_csv_parquet_load_to_equal_dataframes(tmp_path):
    msgs = fake_run("cam1", frames=30) + fake_run("cam2", sid="s2", frames=12, tracks=(5,))
    _write_run(tmp_path, msgs)
    expected_rows = sum(len(m["faces"]) for m in msgs if m["type"] == "result")

    frames = {ext: pd.concat([read_results(tmp_path / f"{cam}.{ext}") for cam in ("cam1", "cam2")], ignore_index=True)
              for ext in ("jsonl", "csv", "parquet")}
    base = frames["jsonl"]
    assert len(base) == expected_rows
    pd.testing.assert_frame_equal(base, frames["csv"])
    pd.testing.assert_frame_equal(base, frames["parquet"])
    # the whole run directory reads the same, and so does the public API
    pd.testing.assert_frame_equal(base, read_results(tmp_path))
    pd.testing.assert_frame_equal(base[base.cam == "cam2"].reset_index(drop=True), auflow.read_results(tmp_path, cam="cam2"))


def test_values_follow_openface_conventions(tmp_path):
    msgs = fake_run(frames=12)
    _write_run(tmp_path, msgs)
    df = read_results(tmp_path / "cam1.csv")
    for col in ("frame", "face_id", "timestamp", "confidence", "success", "AU01_r", "AU01_c", "expr_happiness",
                "bbox_x1", "x_0", "y_4"):
        assert col in df.columns, col
    first = next(m for m in msgs if m["type"] == "result")
    row = df.iloc[0]
    f0 = first["faces"][0]
    assert row.frame == first["frame"] and row.face_id == f0["track"]
    assert row.timestamp == pytest.approx(first["pts"] / 25_000)
    assert row.AU12_r == f0["au"]["AU12"] and row.AU12_c == int(f0["au"]["AU12"] >= 0.5)
    assert row.expr_sadness == f0["expr"]["sadness"] and row.x_2 == f0["kps"][2][0]
    # an unconfirmed face (track -1) is not a success; a missing probability is NaN and not an occurrence
    unconfirmed = df[(df.frame == 5) & (df.face_id == -1)]
    assert len(unconfirmed) == 1 and unconfirmed.success.iloc[0] == 0
    missing = df[(df.frame == 6) & (df.face_id == 0)]
    assert np.isnan(missing.AU04_r.iloc[0]) and missing.AU04_c.iloc[0] == 0
    # frames without a face have no row; every other frame has one row per face
    assert 9 not in set(df.frame)


def test_face_rows_ignores_other_messages():
    msgs = fake_run(frames=3)
    assert face_rows(msgs[0]) == [] and face_rows(msgs[-1]) == []


def test_parquet_parts_survive_a_crash(tmp_path):
    """Flushed parts are complete files: a sink that never reaches stop() still leaves them readable."""
    msgs = fake_run(frames=30)
    sink = ParquetSink(ParquetSink.Config(row_group_rows=20))
    sink.start(StartContext(run_dir=tmp_path))
    for m in msgs[:-1]:  # no eos, no stop: the process "died" here
        sink.write(m)
    df = read_results(tmp_path / "cam1.parquet")
    rows = [r for m in msgs for r in face_rows(m)]
    assert 10 <= len(df) < len(rows)  # the parts written so far, not the rows still buffered
    assert list(zip(df.seq, df.face)) == [(r["seq"], r["face"]) for r in rows[: len(df)]]
    assert not list((tmp_path / "cam1.parquet").glob(".*"))


def test_torn_jsonl_line_is_skipped(tmp_path):
    msgs = fake_run(frames=5)
    text = "".join(json.dumps(m) + "\n" for m in msgs)
    (tmp_path / "cam1.jsonl").write_text(text + text.splitlines()[1][:40], encoding="utf-8")
    assert len(read_results(tmp_path / "cam1.jsonl")) == sum(len(m["faces"]) for m in msgs if m["type"] == "result")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        read_results(tmp_path / "nope.csv")
    with pytest.raises(ResultsError, match="no results"):
        read_results(tmp_path)
