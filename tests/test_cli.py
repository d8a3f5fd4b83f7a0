"""The CLI's errors are one clear line and a non-zero exit; doctor works without GPU/TensorRT."""

from __future__ import annotations

import os
import subprocess
import sys


AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([*AUFLOW, *args], capture_output=True, text=True, timeout=timeout, env=env)


def error_lines(p: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.strip()]


def test_missing_file(tmp_path):
    p = run_cli("run", str(tmp_path / "missing.mp4"), "--publish", "none", "--out", str(tmp_path / "o"))
    assert p.returncode != 0
    lines = error_lines(p)
    assert len(lines) == 1, p.stderr
    assert "missing.mp4: no such file" in lines[0]
    assert "Traceback" not in p.stderr


def test_text_file_renamed_mp4(not_a_video, tmp_path):
    p = run_cli("run", str(not_a_video), "--publish", "none", "--out", str(tmp_path / "o"))
    assert p.returncode != 0
    lines = error_lines(p)
    assert len(lines) == 1, p.stderr
    assert "notes.mp4: not a readable video" in lines[0]


def test_config_with_typo(tmp_path, face_video):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("analyzer:\n  batch: 4\n  max_wiat_ms: 3\n")
    p = run_cli("run", str(face_video), "--config", str(cfg), "--publish", "none")
    assert p.returncode != 0
    lines = error_lines(p)
    assert len(lines) == 1, p.stderr
    assert "max_wiat_ms" in lines[0] and "line 3" in lines[0] and "max_wait_ms" in lines[0]

    p = run_cli("config", "validate", str(cfg))
    assert p.returncode != 0 and "max_wiat_ms" in p.stderr


def test_config_show_applies_overrides():
    p = run_cli("config", "show", "--set", "analyzer.batch=48")
    assert p.returncode == 0, p.stderr
    assert "batch: 48" in p.stdout and "detector:" in p.stdout


def test_doctor_without_gpu_or_tensorrt():
    p = run_cli("doctor")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "torch cuda" in out and "no CUDA device" in out
    assert "tensorrt" in out.lower() and "not available" in out
    assert "demo_video" in out and "fer_hdf5" in out
    assert "me_graphau" in out and "untrained" in out


def test_models_list():
    p = run_cli("models", "list")
    assert p.returncode == 0, p.stderr
    assert "fer" in p.stdout and "trained" in p.stdout and "happiness" in p.stdout


def test_export_onnx_with_card(tmp_path):
    target = tmp_path / "fer.onnx"
    p = run_cli("export", "fer", "--backend", "onnx", "--out", str(target))
    assert p.returncode == 0, p.stderr
    assert target.is_file() and (tmp_path / "fer.onnx.card.json").is_file()
    p = run_cli("export", "fer", "--backend", "tensorrt")
    assert p.returncode != 0 and "built at run time" in p.stderr


def test_one_override_syntax_export_takes_set_options_and_option_is_a_deprecated_alias(tmp_path):
    p = run_cli("export", "baseline_au", "--backend", "torch", "--out", str(tmp_path / "a.pt"), "--set", "options.input_size=64")
    assert p.returncode == 0 and "input 3x64" in p.stdout and "deprecated" not in p.stderr, p.stderr
    p = run_cli("export", "baseline_au", "--backend", "torch", "--out", str(tmp_path / "b.pt"), "--option", "input_size=64")
    assert p.returncode == 0 and "--option is deprecated: write --set options.KEY=VALUE" in p.stderr, p.stderr
    assert "input 3x64" in p.stdout
    p = run_cli("export", "baseline_au", "--set", "input_size=64")
    assert p.returncode == 2 and "as options.KEY=VALUE" in p.stderr and "Traceback" not in p.stderr


def test_distill_set_goes_to_the_distill_options_or_the_run_config_by_its_first_key():
    import pytest
    from auflow.engine.cli.distill_cmd import split_sets
    from auflow.engine.errors import ConfigError

    distill, run = split_sets(["epochs=5", "options.input_size=96", "face.detector.name=yunet", "source.queue=8"])
    assert distill == ["epochs=5", "options.input_size=96"] and run == ["face.detector.name=yunet", "source.queue=8"]
    with pytest.raises(ConfigError, match="'epoch' is neither a distill option .*epochs.* nor a run config section .*face"):
        split_sets(["epoch=5"])


def test_run_realtime_plays_the_file_at_its_rate(face_video, tmp_path):
    """`--realtime` (source.realtime): the 40-frame 25 fps clip is played as a camera would send it; each
    result's t_capture_ns is when its frame was due, 40 ms apart, and the summary reports the stream."""
    import json

    p = run_cli("run", str(face_video), "--realtime", "--publish", "none", "--out", str(tmp_path / "o"),
                "--set", "sinks=[{name: jsonl}]")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for f in (tmp_path / "o").glob("*.jsonl") for line in f.read_text().splitlines()]
    results = [r for r in rows if r["type"] == "result"]
    eos = [r for r in rows if r["type"] == "eos"]
    assert eos and len(results) + eos[-1]["dropped"] == 40
    t0 = results[0]["t_capture_ns"] - results[0]["frame"] * 40_000_000
    assert all(r["t_capture_ns"] - t0 == r["frame"] * 40_000_000 for r in results)
