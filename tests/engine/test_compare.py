"""auflow compare: per-AU agreement of two runs' outputs, matched by frame and face, a table and a plot."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from auflow.engine.compare import CompareError, compare_runs, plot_comparison
from auflow.plugins.sinks.jsonl import JsonlSink
from fake_messages import result_message
from auflow.engine.plugin import StartContext

pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[report]')")

FRAMES = 60


def face(track: int, au: dict[str, float], x: float, w: float = 80.0) -> dict:
    return {"track": track, "bbox": [x, 50.0, x + w, 50.0 + w], "score": 0.95,
            "kps": [[x + 20, 80.0], [x + 60, 80.0], [x + 40, 100.0], [x + 25, 125.0], [x + 55, 125.0]],
            "au": {k: round(v, 4) for k, v in au.items()}}


def write_run(run_dir, faces_of_frame, model=("me_graphau", "distilled"), skip=()) -> None:
    sink = JsonlSink()
    sink.start(StartContext(run_dir=run_dir))
    seq = 0
    for f in range(FRAMES):
        if f in skip:
            continue
        msg = result_message("clip", "s1", seq, f, faces_of_frame(f))
        msg["models"] = {"au": {"name": model[0], "kind": model[1]}}
        sink.write(msg)
        seq += 1
    sink.stop()


def wave(f: int) -> float:
    return 0.5 + 0.4 * math.sin(f / 6)


@pytest.fixture()
def two_runs(tmp_path):
    """A: the teacher. B: AU01 tracks A's (scaled, so r = 1 but |Δ| > 0), AU12 is its mirror image
    (r = -1), AU25 is constant (r undefined); B misses frames 10-19 and has an extra small face."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, lambda f: [face(1, {"AU01": wave(f), "AU12": wave(f), "AU25": 0.2 + f / 100}, 100.0)],
              model=("mediapipe_au", "teacher"))
    write_run(b, lambda f: [face(4, {"AU01": 0.5 * wave(f), "AU12": 1 - wave(f), "AU25": 0.3, "AU45": 0.1}, 100.0),
                            face(5, {"AU01": 0.0, "AU12": 0.0, "AU25": 0.0, "AU45": 0.0}, 300.0, w=30.0)],
              skip=range(10, 20))
    return a, b


def test_agreement_per_au_on_matched_frames(two_runs):
    a, b = two_runs
    # B has two faces per frame, so auto matches by track; the runs' track ids differ: a clear error
    with pytest.raises(CompareError, match="match largest"):
        compare_runs(a, b)
    cmp = compare_runs(a, b, match="largest")
    assert cmp.matched == FRAMES - 10
    rows = {r["label"]: r for r in cmp.rows}
    assert set(rows) == {"AU01", "AU12", "AU25"} and cmp.only_b == ["AU45_r"]
    assert rows["AU01"]["pearson"] == pytest.approx(1.0, abs=1e-3)
    assert rows["AU12"]["pearson"] == pytest.approx(-1.0, abs=1e-3)
    assert rows["AU25"]["pearson"] is None  # B never moves
    kept = [f for f in range(FRAMES) if not 10 <= f < 20]
    expected_mad = np.mean([abs(wave(f) - 0.5 * wave(f)) for f in kept])
    assert rows["AU01"]["mad"] == pytest.approx(expected_mad, abs=1e-3)
    assert rows["AU01"]["n"] == FRAMES - 10
    assert cmp.models_a["au"] == {"name": "mediapipe_au", "kind": "teacher"}


def test_same_tracks_match_by_track(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    two = lambda scale: lambda f: [face(1, {"AU12": scale * wave(f)}, 100.0), face(2, {"AU12": 1 - wave(f)}, 300.0)]
    write_run(a, two(1.0))
    write_run(b, two(0.5))
    cmp = compare_runs(a, b)
    assert cmp.match == "track" and cmp.matched == 2 * FRAMES
    # pooled over both people: not the per-person r of 1 (their series are mirror images)
    assert cmp.rows[0]["pearson"] < 0.9


def test_plot_and_cli(two_runs, tmp_path):
    a, b = two_runs
    png = plot_comparison(compare_runs(a, b, match="largest"), tmp_path / "cmp.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    p = subprocess.run([sys.executable, "-m", "auflow.engine.cli.main", "compare", str(a), str(b), "--match", "largest",
                        "--out", str(tmp_path / "cli.png"), "--json", str(tmp_path / "cmp.json")],
                       check=False, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "AU12" in p.stdout and "-1.00" in p.stdout and "50 faces matched" in p.stdout.replace("\n", " ")
    assert (tmp_path / "cli.png").stat().st_size > 1000
    assert (tmp_path / "cmp.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "auflow.engine.cli.main", "compare", str(a), str(tmp_path / "nope")],
                         check=False, capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
