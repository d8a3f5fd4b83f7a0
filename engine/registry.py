"""One registry pattern for stages, detectors, trackers, analyzers, sinks and models.

A :class:`Registry` maps names to classes (or factory functions). Lookups of an unknown name fail
with the list of registered names; ``package.module:Class`` loads an external plugin. Registering a
name twice is an error (it would silently replace the first).

The engine never imports plugins directly: each registry knows the module paths that define its
entries (``modules``) and imports them on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → class. ``doc`` states the contract of what is registered here."""

    def __init__(self, kind: str, doc: str = "", modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self.__doc__ = doc or f"Registry of {kind}s."
        self._modules = tuple(modules)
        self._entries: dict[str, T] = {}
        self._loaded = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@DETECTORS.register("yunet")``. The name defaults to the object's. A class with a
        ``name`` attribute (a :class:`~auflow.engine.plugin.Plugin`) gets the registered one, so that it is
        written once."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            existing = self._entries.get(key)
            if existing is not None and existing is not obj:
                raise RegistryError(
                    f"{self.kind} {key!r} is already registered by "
                    f"{getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)}"
                )
            own = vars(obj).get("name") if isinstance(obj, type) else None
            if own not in (None, "", key):
                raise RegistryError(f"{obj.__qualname__} declares name {own!r} but is registered as {self.kind} {key!r}")
            if isinstance(obj, type) and hasattr(obj, "name") and not own:
                obj.name = key
            self._entries[key] = obj
            return obj

        return deco

    # -- lookup ---------------------------------------------------------------------------------
    def _load_builtin(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._modules:
            importlib.import_module(mod)

    def names(self) -> list[str]:
        self._load_builtin()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_builtin()
        return name in self._entries

    def get(self, name: str) -> T:
        """Entry by registered name, or by ``package.module:Class`` for an external plugin."""
        if ":" in name:
            return self._load_external(name)
        self._load_builtin()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {valid} "
                f"(or give an external plugin as 'package.module:Class')"
            ) from None

    def _load_external(self, spec: str) -> T:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise RegistryError(f"cannot import plugin module {module_name!r} for {self.kind} {spec!r}: {e}") from e
        try:
            obj: Any = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise RegistryError(f"module {module_name!r} has no attribute {attr!r} ({self.kind} {spec!r})") from None
        return obj

    def __iter__(self):
        """The registered names, sorted (``sorted(REG)``, ``", ".join(REG)``, ``name in REG``)."""
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


DETECTORS: Registry = Registry(
    "detector",
    "Face detectors with 5 landmarks. Entry: a class with a pydantic ``Config``, built as "
    "``cls(config)``; ``start(ctx)`` loads weights; ``detect(image_bgr) -> Faces`` (track = -1).",
    modules=["auflow.plugins.detectors"],
)
ALIGNERS: Registry = Registry(
    "aligner",
    "Face alignment. Entry: class with ``Config``; ``crop(image_bgr, faces) -> (N, S, S, 3) uint8``.",
    modules=["auflow.plugins.align"],
)
TRACKERS: Registry = Registry(
    "tracker",
    "Multi-object trackers. Entry: class with ``Config``; ``update(faces, frame_index) -> Faces`` "
    "with ``track`` filled (stable id per person, -1 where not yet confirmed); ``reset()``.",
    modules=["auflow.plugins.trackers"],
)
ANALYZERS: Registry = Registry(
    "analyzer",
    "Per-face analyzers. Entry: class with ``Config``; ``start(ctx)`` (reads ``ctx.device``); "
    "``analyze(crops_bgr uint8 (N,S,S,3)) -> dict[output, np.ndarray (N, C)]``; attributes "
    "``outputs: dict[output, tuple[label, ...]]`` and ``provenance: dict[output, ModelInfo]``.",
    modules=["auflow.plugins.analyzers"],
)
SINKS: Registry = Registry(
    "sink",
    "Result sinks. Entry: class with ``Config``; ``start(ctx)`` (writes under ``ctx.run_dir``); ``write(message: dict)`` for "
    "every wire message; ``stop()`` flushes and closes.",
    modules=["auflow.plugins.sinks"],
)
MODELS: Registry = Registry(
    "model",
    "Torch models of the papers. Entry: a factory ``fn(**cfg) -> nn.Module`` whose module carries "
    "``card: ModelCard``. Use ``auflow.models.create_model(name, **cfg)``.",
    modules=["auflow.models.zoo"],
)
