"""The base every registered stage, detector, tracker, analyzer and sink derives from.

A plugin declares a pydantic ``Config`` (unknown keys are an error that names the key and lists
the valid ones); ``__init__`` only stores the validated config (no I/O); ``start()`` loads models
and opens files or sockets; ``stop()`` releases them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError
from .registry import Registry


class PluginConfig(BaseModel):
    """Base of plugin configs: extra keys forbidden, values validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Plugin:
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    name: ClassVar[str] = ""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights, open files/sockets. Called once before the first item."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release everything start() acquired. Safe to call twice."""


def format_validation_error(e: ValidationError, where: str, model: type[BaseModel]) -> str:
    """One line per problem, naming the key and, for unknown keys, the valid ones."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{where}.{loc}" if where and loc else (where or loc)
        if err["type"] == "extra_forbidden":
            parent = model
            for part in err["loc"][:-1]:
                field = parent.model_fields.get(str(part)) if isinstance(parent, type) and issubclass(parent, BaseModel) else None
                ann = getattr(field, "annotation", None)
                parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                if parent is None:
                    break
            valid = ", ".join(parent.model_fields) if parent is not None else "?"
            lines.append(f"unknown key '{key}' (valid keys: {valid})")
        else:
            lines.append(f"{key}: {err['msg']}")
    return "; ".join(lines)


def build(registry: Registry, name: str, options: dict[str, Any] | None = None, where: str = "") -> Plugin:
    """Look up ``name`` in ``registry`` and build it with its validated config."""
    cls = registry.get(name)
    cfg_cls = getattr(cls, "Config", PluginConfig)
    try:
        cfg = cfg_cls(**(options or {}))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where or f"{registry.kind} {name}", cfg_cls)) from None
    return cls(cfg)
