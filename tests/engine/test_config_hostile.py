"""Hostile config files and overrides: each is one ConfigError line (exit 2 from the CLI), never a traceback.

The findings of issue 22: bytes that are not UTF-8 (was a UnicodeDecodeError traceback), a recursive
alias ``a: &a [*a]`` (was a RecursionError traceback), an override's bad value reported at a line of
the packaged default.yaml the user never wrote, an endpoint whose port ZeroMQ silently replaced.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from auflow.engine.config import load_config
from auflow.engine.errors import ConfigError
from typer.testing import CliRunner


def write(tmp_path, content: bytes | str, name: str = "cfg.yaml"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def one_line_error(args: list[str]) -> str:
    """Run the CLI in-process; assert exit 2 and one error line without a traceback; return that line."""
    from auflow.engine.cli.main import app

    result = CliRunner().invoke(app, args, env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.output
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert result.exit_code == 2, text
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


def test_non_utf8_bytes_are_one_line_with_their_line(tmp_path):
    path = write(tmp_path, b"analyzer:\n  batch: 8\nout: \"caf\xe9\"\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"line 3: not UTF-8 text \(byte 0xe9"):
        load_config(path)
    line = one_line_error(["config", "validate", str(path)])
    assert "UTF-8" in line and "line 3" in line


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "source: &s\n  x: [1, *s]\n"])
def test_recursive_alias_is_one_line(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="recursive"):
        load_config(path)
    assert "recursive" in one_line_error(["config", "validate", str(path)])


def test_alias_bomb_is_refused_fast(tmp_path):
    """Nine levels of nine aliases each: 387 million values once expanded (a "billion laughs")."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(path)
    assert time.perf_counter() - t0 < 5.0


def test_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path):
    path = write(tmp_path, "source:\n  queue: 4\nanalyzer: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg and "line 4, column 1: not valid YAML" in msg


def test_override_error_names_the_override_not_default_yaml():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["analyzer.batch=-3"])
    msg = str(info.value)
    assert msg.startswith("analyzer.batch=-3 (from the command line): analyzer.batch:"), msg
    assert "default.yaml" not in msg and not re.search(r"line \d", msg)
    line = one_line_error(["config", "show", "--set", "analyzer.batch=-3"])
    assert "analyzer.batch=-3" in line and "default.yaml" not in line


def test_override_of_a_plugin_option_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["face.detector.score_threshold=high"])
    assert str(info.value).startswith("face.detector.score_threshold=high (from the command line):"), str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(None, ["analyzer.models=[{name: nosuch}]"])
    assert str(info.value).startswith("analyzer.models=[{name: nosuch}] (from the command line):"), str(info.value)


def test_an_error_the_override_did_not_cause_keeps_the_file_line(tmp_path):
    path = write(tmp_path, "analyzer:\n  batch: 0\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml, line 2: analyzer.batch"):
        load_config(path, ["analyzer.max_wait_ms=2"])


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1:-1",
                                      "tcp://127.0.0.1", "tcp://:5555", "tcp://127.0.0.1:55a5", "tcp://300.1.1.1:5555",
                                      "tcp://[::zz]:5555", "tcp://bad host:5555", "udp://127.0.0.1:5555",
                                      "tcp://127.0.0.1:5555\n", "ipc://"])
def test_invalid_publish_endpoint_is_a_config_error(tmp_path, endpoint):
    path = write(tmp_path, f"publish:\n  endpoint: {json.dumps(endpoint)}\n")  # a JSON string is a YAML string
    with pytest.raises(ConfigError, match="publish.endpoint: .*endpoint"):
        load_config(path)


def test_invalid_port_in_a_file_names_its_line(tmp_path):
    path = write(tmp_path, "publish:\n  endpoint: tcp://0.0.0.0:99999\n")
    with pytest.raises(ConfigError, match=r"line 2: publish.endpoint: .*port '99999' is not a number from 1 to 65535"):
        load_config(path)
    assert "99999" in one_line_error(["config", "validate", str(path)])
    assert "99999" in one_line_error(["run", "nothing.mp4", "--publish", "tcp://0.0.0.0:99999"])


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://0.0.0.0:1", "tcp://127.0.0.1:*",
                                      "tcp://[::1]:65535", "tcp://localhost:5555", "tcp://eth0:5555",
                                      "ipc:///tmp/auflow.sock", "inproc://results"])
def test_valid_publish_endpoints_pass(endpoint):
    assert load_config(None, [f"publish.endpoint={endpoint}"]).publish.endpoint == endpoint
