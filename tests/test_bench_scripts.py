"""The benchmark scripts still run. A GPU session is rare and short (bench/GPU.md): a script that broke
since the last one would waste it, so the whole GPU suite runs here in its dry-run form (tiny sizes, the
CPU, every step and flag), and the figures tables of docs/benchmarks.md must match bench/results/. No timing is
asserted: the suite's own figures are printed, never checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_figures_are_generated_from_bench_results():
    r = subprocess.run([sys.executable, "bench/readme_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or "docs/benchmarks.md's figures are out of date: run `python bench/readme_table.py`"


def test_figures_check_fails_when_a_table_is_stale(tmp_path, monkeypatch):
    """--check reads docs/benchmarks.md (the README links to it): a stale row there is a failure."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "bench/readme_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.TARGET == ROOT / "docs" / "benchmarks.md"
    text = table.TARGET.read_text()
    assert text.count(table.START) == 1 and text.count(table.END) == 1
    row = next(line for line in text.splitlines() if line.startswith("| 20"))
    stale = tmp_path / "benchmarks.md"
    stale.write_text(text.replace(row, row.replace("|", "| stale", 1)))
    monkeypatch.setattr(table, "TARGET", stale)
    monkeypatch.setattr(sys, "argv", ["readme_table.py", "--check"])
    with pytest.raises(SystemExit) as exc:
        table.main()
    assert "out of date" in str(exc.value)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_suite_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(out), "PY": sys.executable}
    r = subprocess.run(["bash", "bench/gpu_suite.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=560)
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [line.split()[0:2] for line in summary.splitlines() if " rc=" in line]
    assert [s[0] for s in steps] == ["tests_gpu", "parity", "train_bench", "pipeline_gpu", "pipeline_live", "sources_cpu",
                                     "models_bench", "temporal"], summary  # profile: on the device only
    assert all(rc == "rc=0" for _, rc in steps), summary
    with tarfile.open(out / "gpu_suite.tar.gz") as tar:
        names = tar.getnames()
        live = [n for n in names if Path(n).name.startswith("pipeline-gpu-live-")]
        assert live and any(Path(n).name.startswith("pipeline-gpu-set-") for n in names), names
        payload = json.load(tar.extractfile(live[0]))
    row = payload["live_sweep"][0]
    assert row["realtime"] and row["streams"] == 2 and row["end_to_end"]["frames"] + row["end_to_end"]["dropped"] == 2 * 24
    assert (out / "gpu_parity.json").exists()
