from __future__ import annotations

import pytest

from auflow.engine.errors import RegistryError
from auflow.engine.registry import ANALYZERS, DETECTORS, MODELS, SINKS, TRACKERS, Registry


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
