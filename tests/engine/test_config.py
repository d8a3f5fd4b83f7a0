from __future__ import annotations

from contextlib import nullcontext as does_not_raise
from pathlib import Path

import pytest

from auflow.engine.config import RunConfig, default_config_path, dump_config, load_config, parse_override
from auflow.engine.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_default_config_loads_and_is_what_runconfig_defaults_to_except_models():
    cfg = load_config()
    assert cfg.face.detector.name == "yunet_roi"  # the former fast profile (issue 19)
    assert [m.name for m in cfg.analyzer.models] == ["fer", "me_graphau"]
    assert cfg.publish.endpoint.startswith("tcp://127.0.0.1:")  # loopback by default
    assert default_config_path().name == "default.yaml"


def test_override_sets_nested_values_with_yaml_types():
    cfg = load_config(None, ["analyzer.batch=32", "publish.endpoint=null", "face.detector.score_threshold=0.8",
                             "analyzer.models.1.options.backbone=mobilenet_v2"])
    assert cfg.analyzer.batch == 32 and isinstance(cfg.analyzer.batch, int)
    assert cfg.publish.endpoint is None
    assert cfg.face.detector.options["score_threshold"] == 0.8
    assert cfg.analyzer.models[1].options["backbone"] == "mobilenet_v2"


@pytest.mark.parametrize(
    "text, expectation, must_contain",
    [
        ("analyzer:\n  batch: 8\n", does_not_raise(), []),
        ("analyzer:\n  bacth: 8\n", pytest.raises(ConfigError), ["analyzer.bacth", "line 2", "batch", "max_wait_ms"]),
        ("source:\n  queue: 4\nanalyzr:\n  batch: 8\n", pytest.raises(ConfigError), ["'analyzr'", "line 3", "analyzer"]),
        ("analyzer:\n  batch: -1\n", pytest.raises(ConfigError), ["analyzer.batch", "line 2"]),
        ("face:\n  detector:\n    name: yunet\n    scor_threshold: 0.5\n", pytest.raises(ConfigError),
         ["scor_threshold", "line 4", "score_threshold"]),
        ("face:\n  detector:\n    name: nosuch\n", pytest.raises(ConfigError), ["nosuch", "yunet"]),
        ("analyzer:\n  models:\n    - name: nosuch_model\n", pytest.raises(ConfigError), ["nosuch_model", "me_graphau", "fer"]),
        ("sinks:\n  - name: jsonl\n    flush_evry: 3\n", pytest.raises(ConfigError), ["flush_evry", "flush_every", "line 3"]),
        ("- just\n- a list\n", pytest.raises(ConfigError), ["mapping"]),
        ("analyzer: [unclosed\n", pytest.raises(ConfigError), ["YAML"]),
        ("publish:\n  endpoint: localhost:5555\n", pytest.raises(ConfigError), ["tcp://"]),
    ],
)
def test_config_errors_name_key_line_and_valid_keys(tmp_path, text, expectation, must_contain):
    with expectation as info:
        load_config(write(tmp_path, text))
    if must_contain:
        msg = str(info.value)
        for s in must_contain:
            assert s in msg, f"{s!r} not in {msg!r}"


@pytest.mark.parametrize("item", ["noequals", "=5", "a.b=[unclosed"])
def test_bad_overrides(item):
    with pytest.raises(ConfigError):
        parse_override(item)


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="is a value"):
        load_config(None, ["analyzer.batch.x=1"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["analyzer.batch=7"])
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg
    assert isinstance(again, RunConfig)


def test_no_unsafe_yaml(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "out: !!python/object/apply:os.system ['echo hi']\n"))
