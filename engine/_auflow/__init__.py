"""auflow: real-time AU and expression analysis of faces in video.

The public API, imported lazily so ``import auflow`` stays cheap:
``auflow.subscribe`` (wire-format v1 subscriber), ``auflow.read_results`` (run outputs → pandas),
``auflow.create_model`` / ``auflow.list_models`` (the model registry).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_API = {
    "subscribe": ("auflow.engine.wire.subscriber", "subscribe"),
    "read_results": ("auflow.engine.results", "read_results"),
    "create_model": ("auflow.models", "create_model"),
    "list_models": ("auflow.models", "list_models"),
}


def __getattr__(name: str):
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'auflow' has no attribute {name!r}") from None
    return getattr(import_module(module), attr)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
