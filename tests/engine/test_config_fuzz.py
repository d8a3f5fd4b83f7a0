"""Generated configs and CLI option values: accepted, or one ConfigError line (exit 2), never a traceback.

Bounded here (a few hundred inputs, seconds); bench/fuzz.py runs the same generators at ≥ 10k configs and
10k CLI invocations. The generators mutate the packaged configs (YAML specials, aliases, tags, bad bytes),
build documents from the real keys with odd values, and nest or alias them pathologically.
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path

import pytest
from auflow.engine.config import load_config
from auflow.engine.errors import ConfigError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

_spec = importlib.util.spec_from_file_location("bench_fuzz", Path(__file__).parents[2] / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)
fuzz.CONFIG_KEYS[:] = fuzz._config_keys()
SEEDS = [p.read_text() for p in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))]
FUZZ = settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def loads_or_one_line(path, overrides=()) -> None:
    t0 = time.perf_counter()
    try:
        load_config(path, list(overrides))
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
    assert time.perf_counter() - t0 < 10.0


@FUZZ
@given(seed=st.integers(0, 2**32))
def test_generated_config_documents(tmp_path, seed):
    rng = random.Random(seed)
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(fuzz.config_text(rng, SEEDS))
    loads_or_one_line(path, [fuzz.override_item(rng) for _ in range(rng.randint(0, 2))])


@FUZZ
@given(text=st.text(max_size=300))
def test_any_unicode_text(tmp_path, text):
    path = tmp_path / "text.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    loads_or_one_line(path)


@FUZZ
@given(key=st.sampled_from(fuzz.CONFIG_KEYS) | st.text(max_size=20), value=st.text(max_size=40))
@example(key="0\n0", value="")  # found in CI: the key's newline was in the error line
def test_any_override_value(key, value):
    loads_or_one_line(None, [f"{key}={value}"])


@pytest.fixture(scope="module")
def cli():
    from auflow.engine.cli.main import app

    runner = CliRunner()
    return lambda args: runner.invoke(app, args, env={"COLUMNS": "400", "NO_COLOR": "1"})


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32))
def test_cli_option_values(cli, seed):
    """`auflow run <missing file>` / `auflow config show` with random --set/--publish/--device/... values:
    exit 0, 2 (config) or 3 (the missing file), one error line, never an exception."""
    args = fuzz.cli_args(random.Random(seed))
    res = cli(args)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.exception)
    assert "Traceback" not in res.output
    assert res.exit_code in (0, 2, 3), (args, res.output)
    if res.exit_code and "Usage:" not in res.output:  # click's usage errors (a non-number count) have their own form
        assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, (args, res.output)
