"""Every registered plugin provides what its kind's Protocol says (engine/contracts.py)."""

from __future__ import annotations

import inspect

import pytest
from auflow.engine.contracts import OPTIONAL_HOOKS, PROTOCOLS, Sink, missing
from auflow.engine.errors import ConfigError
from auflow.engine.plugin import CPU


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_every_registered_plugin_provides_its_kinds_methods(kind):
    registry, protocol = PROTOCOLS[kind]
    names = registry.names()
    assert names, f"no {kind} registered"
    lacking = {name: missing(registry.get(name), protocol) for name in names}
    assert {n: m for n, m in lacking.items() if m} == {}


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_every_registered_plugin_starts_from_one_context_with_a_default(kind):
    """start(ctx) in every kind: one parameter, a StartContext, defaulting to the CPU with no run directory; a
    sink started without a run directory says which sink needs one."""
    registry, _ = PROTOCOLS[kind]
    for name in registry.names():
        params = list(inspect.signature(registry.get(name).start).parameters.values())[1:]
        assert [p.name for p in params] == ["ctx"] and params[0].default is CPU, (kind, name, params)
    if kind == "sink":
        with pytest.raises(ConfigError, match="JsonlSink writes into a run directory"):
            registry.get("jsonl")().start()


def test_the_check_fails_on_a_plugin_without_its_method():
    class NoWrite:
        def start(self, run_dir):
            pass

        def stop(self):
            pass

    assert missing(NoWrite, Sink) == ["write"]


def test_the_engine_looks_up_only_declared_optional_hooks():
    """Every hasattr/getattr on a plugin in the engine names a hook of OPTIONAL_HOOKS."""
    import re
    from pathlib import Path

    import auflow.engine as engine

    declared = {h for hooks in OPTIONAL_HOOKS.values() for h in hooks}
    root = Path(engine.__file__).parent
    looked_up = set()
    for path in [root / "pipeline" / "publishing.py", root / "pipeline" / "core.py", root / "analyzer" / "core.py"]:
        looked_up |= set(re.findall(r"(?:hasattr|getattr)\((?:s|p|sink|plugin), \"(\w+)\"", path.read_text()))
    assert looked_up and looked_up <= declared, looked_up - declared
