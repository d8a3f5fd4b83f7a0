"""The base every registered stage, detector, tracker, analyzer and sink derives from.

A plugin declares a pydantic ``Config`` (unknown keys are an error that names the key and lists
the valid ones); ``__init__`` only stores the validated config (no I/O); ``start()`` loads models
and opens files or sockets; ``stop()`` releases them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from .configfile import Strict, format_validation_error
from .errors import ConfigError
from .registry import Registry

__all__ = ["Plugin", "PluginConfig", "build", "format_validation_error"]


class PluginConfig(Strict):
    """Base of plugin configs: extra keys forbidden, values validated on assignment too."""


class Plugin:
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    name: ClassVar[str] = ""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def start(self) -> None:  # noqa: B027 - optional hook
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
