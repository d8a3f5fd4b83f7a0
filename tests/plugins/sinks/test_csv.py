"""The csv sink: OpenFace's column names, one row per face per frame, one file per camera."""

from __future__ import annotations

import csv

import pytest

from auflow.engine.plugin import build
from auflow.engine.registry import SINKS
from fake_messages import AUS, EXPRS, fake_run
from auflow.engine.plugin import StartContext

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[parquet]')")


def test_registered_with_the_other_sinks():
    assert {"jsonl", "csv", "parquet", "video"} <= set(SINKS.names())


def test_one_file_per_camera_with_openface_columns(tmp_path):
    sink = build(SINKS, "csv", {"flush_every": 3})
    sink.start(StartContext(run_dir=tmp_path))
    msgs = fake_run("cam1", frames=20) + fake_run("cam10", sid="s9", frames=8, tracks=(1,))
    for m in msgs:
        sink.write(m)
    sink.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam1.csv", "cam10.csv"]

    df = pd.read_csv(tmp_path / "cam1.csv")  # plain pandas, as an OpenFace script would read it
    header = list(df.columns)
    assert header[:6] == ["cam", "sid", "seq", "frame", "timestamp", "t_capture_ns"]
    for name in ("face_id", "confidence", "success"):
        assert name in header
    assert [c for c in header if c.startswith("AU")] == [f"{a}_{k}" for a in AUS for k in ("r", "c")]
    assert [c for c in header if c.startswith("expr_")] == [f"expr_{e}" for e in EXPRS]
    results = [m for m in msgs if m["type"] == "result" and m["cam"] == "cam1"]
    assert len(df) == sum(len(m["faces"]) for m in results)
    assert set(df.cam) == {"cam1"}  # cam1 did not catch cam10's rows
    # OpenFace's meanings: AUxx_c is AUxx_r >= 0.5 (0/1), success 1 for a tracked face
    both = df.dropna(subset=["AU12_r"])
    assert ((both.AU12_r >= 0.5).astype(int) == both.AU12_c).all()
    assert set(df.success) == {0, 1} and (df.success == (df.face_id >= 0)).all()


def test_appending_keeps_the_first_header(tmp_path):
    for _ in range(2):
        sink = build(SINKS, "csv")
        sink.start(StartContext(run_dir=tmp_path))
        for m in fake_run(frames=4):
            sink.write(m)
        sink.stop()
    with open(tmp_path / "cam1.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert sum(r[0] == "cam" for r in rows) == 1
