"""The benchmark scripts still run. A GPU session is rare and short (bench/GPU.md): a script that broke
since the last one would waste it, so the whole GPU suite runs here in its dry-run form (tiny sizes, the
CPU, every step and flag), and the README's figures table must match bench/results/. No timing is
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


def test_readme_figures_are_generated_from_bench_results():
    r = subprocess.run([sys.executable, "bench/readme_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, "README.md's figures are out of date: run `python bench/readme_table.py`"


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
