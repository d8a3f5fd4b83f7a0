"""One loader for every YAML file auflow reads (issue 20): the run config, training configs, distill
options files and fleet files share its refusals (bytes that are not UTF-8, recursive aliases, brackets
nested too deep, unknown keys) and name the line of the bad key or the override that set it.

Before, the distill options file and the fleet file were read by plain ``yaml.safe_load``: a recursive
alias was a RecursionError traceback and no error named a line."""

from __future__ import annotations

import pytest
from auflow.engine.config import load_config
from auflow.engine.configfile import Strict, load_yaml_model
from auflow.engine.distributed.fleet import load_fleet
from auflow.engine.errors import ConfigError
from auflow.engine.plugin import PluginConfig
from auflow.models.train.config import Section as TrainSection
from auflow.models.train.config import load_train_config
from auflow.models.train.distill import DistillConfig, load_distill_config

LOADERS = {
    "run": lambda p: load_config(p),
    "train": lambda p: load_train_config(p),
    "distill": lambda p: load_distill_config(p, {}),
    "fleet": lambda p: load_fleet(p),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize(("content", "says"), [
    (b"a: 1\nb: \xff\xfe\n", r"line 2: not UTF-8"),
    (b"a: &a [*a]\n", r"recursive"),
    (b"a: " + b"[" * 200 + b"\n", r"nested more than 64"),
    (b"a: [1, 2\n", r"line \d+, column \d+: not valid YAML"),
    (b"- 1\n- 2\n", r"top level must be a mapping"),
])
def test_every_config_file_is_refused_the_same_way(tmp_path, kind, content, says):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as e:
        LOADERS[kind](path)
    assert "\n" not in str(e.value)


def test_an_unknown_key_is_named_with_its_line_in_every_kind(tmp_path):
    cases = {
        "distill": "model: me_graphau\nepochs: 3\nepoch: 4\n",
        "fleet": "name: f\ncameras:\n  - cam: a\n    uri: rtsp://h/a\n    gpus: 1\n",
    }
    expect = {"distill": ("line 3", "epoch"), "fleet": ("line 5", "gpus")}
    for kind, text in cases.items():
        path = tmp_path / f"{kind}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            LOADERS[kind](path)
        line, key = expect[kind]
        assert f"{path}, {line}: unknown key '" in str(e.value) and key in str(e.value), str(e.value)


def test_a_command_line_value_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError, match=r"epochs=-2 \(from the command line\): epochs"):
        load_distill_config(None, {"epochs": -2})
    with pytest.raises(ConfigError, match=r"analyzer.batch=0 \(from the command line\)"):
        load_config(None, ["analyzer.batch=0"])


def test_one_base_for_every_config():
    for cls in (TrainSection, DistillConfig, PluginConfig):
        assert issubclass(cls, Strict) or cls is Strict, cls
    model, lines = load_yaml_model(DistillConfig, None, (), updates={"epochs": 3, "lr": None})
    assert model.epochs == 3 and lines == {("epochs",): "epochs=3"}
