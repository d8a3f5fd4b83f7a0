from __future__ import annotations

import pytest

from auflow.engine.errors import RegistryError
from auflow.engine.registry import ALIGNERS, ANALYZERS, DETECTORS, MODELS, SINKS, TRACKERS, Registry


def test_unknown_name_lists_registered_names():
    reg = Registry("widget")
    reg.register("a")(object)
    with pytest.raises(RegistryError, match=r"unknown widget 'b'; registered widgets: a"):
        reg.get("b")


def test_duplicate_registration_is_refused():
    reg = Registry("widget")

    class A: ...

    class B: ...

    reg.register("x")(A)
    reg.register("x")(A)  # the same object again is harmless (module re-import)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("x")(B)


def test_external_plugin_by_module_path():
    reg = Registry("widget")
    assert reg.get("collections:OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(RegistryError, match="cannot import"):
        reg.get("no_such_module_xyz:Thing")
    with pytest.raises(RegistryError, match="has no attribute"):
        reg.get("collections:NoSuchThing")


def test_builtin_registries_find_their_plugins():
    assert "yunet" in DETECTORS.names() and "retinaface" in DETECTORS.names()
    assert "bytetrack" in TRACKERS.names()
    assert "jsonl" in SINKS.names()
    assert "model" in ANALYZERS.names()
    assert {"fer", "me_graphau"} <= set(MODELS.names())


def test_backends_and_backbones_are_registries_and_the_config_choices_are_the_backends():
    import typing

    from auflow.engine.analyzer.backends import BACKENDS, load_backend
    from auflow.engine.config import Backend
    from auflow.engine.errors import ConfigError, ModelError
    from auflow.engine.registry import Registry
    from auflow.models.backbones import BACKBONES, build_backbone

    assert isinstance(BACKENDS, Registry) and isinstance(BACKBONES, Registry)
    assert set(typing.get_args(Backend)) == set(BACKENDS)  # declared once: a config validates exactly these
    assert sorted(BACKBONES) == ["mobilenet_v2", "resnet18", "resnet50"]
    with pytest.raises(ConfigError, match="unknown backend 'nope'; valid: compile, eager, graphs, onnx, tensorrt"):
        load_backend("nope", None, None)
    with pytest.raises(ModelError, match="unknown backbone 'os:system'"):
        build_backbone("os:system")  # no external-plugin lookup through a backbone name


def test_a_plugin_is_named_by_its_registration_alone():
    from auflow.engine.plugin import Plugin

    reg: Registry = Registry("thing")

    @reg.register("first")
    class First(Plugin):
        pass

    @reg.register("second")
    class Second(First):  # a subclass registered under its own name gets that one, not its parent's
        pass

    assert (First.name, Second.name) == ("first", "second")
    with pytest.raises(RegistryError, match="Third declares name 'other' but is registered as thing 'third'"):
        @reg.register("third")
        class Third(Plugin):
            name = "other"
    # the built-in plugins too: every detector, aligner, tracker, analyzer and sink answers to its name
    for registry in (DETECTORS, ALIGNERS, TRACKERS, ANALYZERS, SINKS):
        for name in registry:
            assert registry.get(name).name == name, (registry.kind, name)
