"""The base every registered stage, detector, tracker, analyzer and sink derives from.

A plugin declares a pydantic ``Config`` (unknown keys are an error that names the key and lists
the valid ones); ``__init__`` only stores the validated config (no I/O); ``start(ctx)`` loads models
and opens files or sockets, given the same :class:`StartContext` whatever the kind (an analyzer reads
its ``device``, a sink its ``run_dir``); ``stop()`` releases them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from .configfile import Strict, format_validation_error
from .errors import ConfigError
from .registry import Registry

__all__ = ["CPU", "Plugin", "PluginConfig", "StartContext", "build", "format_validation_error"]


@dataclass(frozen=True)
class StartContext:
    """What ``start`` gives every plugin, of every kind: the torch device the run places models on and
    the run directory (None where there is none: a plugin built outside a run)."""

    device: str = "cpu"
    run_dir: Path | None = None

    def need_run_dir(self, who: str) -> Path:
        """The run directory, or a clear error naming the plugin that needs one."""
        if self.run_dir is None:
            raise ConfigError(f"{who} writes into a run directory: start it with StartContext(run_dir=...)")
        return Path(self.run_dir)


#: the context of a plugin started on its own: the CPU, no run directory
CPU = StartContext()


class PluginConfig(Strict):
    """Base of plugin configs: extra keys forbidden, values validated on assignment too."""


class Plugin:
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    name: ClassVar[str] = ""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def start(self, ctx: StartContext = CPU) -> None:  # noqa: B027 - optional hook
        """Load weights, open files/sockets. Called once before the first item."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release everything start() acquired. Safe to call twice."""


def build(registry: Registry, name: str, options: dict[str, Any] | None = None, where: str = "") -> Plugin:
    """Look up ``name`` in ``registry`` and build it with its validated config."""
    cls = registry.get(name)
    cfg_cls = getattr(cls, "Config", PluginConfig)
    try:
        cfg = cfg_cls(**(options or {}))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where or f"{registry.kind} {name}", cfg_cls)) from None
    return cls(cfg)
