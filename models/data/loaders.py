"""The registry of the real AU datasets' loaders (each module registers its own: bp4d, disfa, emotionet;
imported on the first lookup), as every other name lookup in auflow is a :class:`Registry`."""

from __future__ import annotations

from auflow.engine.registry import Registry

AU_DATASET_LOADERS: Registry = Registry(
    "AU dataset",
    "Real AU datasets by name; entry: loader(root, fold=, split=, input_size=, augment=) -> Dataset.",
    modules=("auflow.models.data.bp4d", "auflow.models.data.disfa", "auflow.models.data.emotionet"),
)

__all__ = ["AU_DATASET_LOADERS"]
