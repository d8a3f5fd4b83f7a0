"""AU datasets: BP4D, DISFA and EmotioNet from a directory you supply, and generated faces.

``build_dataset(name, split=..., fold=..., root=..., input_size=...)`` returns a torch ``Dataset``
whose items are ``{"image": uint8 (3, S, S) RGB, "labels": float32 (N,)}`` (see :mod:`.core`).
Each real dataset's module documents the directory layout it expects and the papers' fold lists;
a wrong layout is a :class:`DatasetError` naming what it expected. The licensed datasets are never
downloaded: request them from their owners and point ``root`` at your copy.

=========== ==== ======= =========================================================
name        AUs  folds   protocol
=========== ==== ======= =========================================================
bp4d        12   3       subject-exclusive, ME-GraphAU / JAA-Net lists (41 subjects)
disfa       8    3       subject-exclusive, ME-GraphAU lists (27 subjects), intensity ≥ 2
emotionet   12   3       by image (no subject ids): a "fold" column or sha1 of the name
synthetic   10   —       generated cartoon faces with known labels, train/test streams
=========== ==== ======= =========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core import AU_SETS, DatasetError
from .loaders import AU_DATASET_LOADERS

__all__ = ["AU_DATASET_LOADERS", "AU_SETS", "DATASETS", "DatasetError", "build_dataset", "dataset_au_names"]

DATASETS: tuple[str, ...] = ("bp4d", "disfa", "emotionet", "synthetic")


def dataset_au_names(name: str) -> tuple[str, ...]:
    """The label names a dataset yields, without touching any files."""
    if name == "synthetic":
        from .synthetic_au import SYNTHETIC_AUS

        return SYNTHETIC_AUS
    if name not in AU_SETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return AU_SETS[name]


def build_dataset(
    name: str,
    split: str = "train",
    fold: int | None = None,
    root: str | Path | None = None,
    input_size: int = 224,
    augment: bool | None = None,
    **synthetic: Any,
):
    """A dataset by name. Real datasets need ``root`` (and ``fold`` unless ``split="all"``);
    ``synthetic`` takes ``size`` and ``seed`` (its images are drawn at ``input_size``)."""
    if name == "synthetic":
        from .synthetic_au import SyntheticAU

        if split not in ("train", "test"):
            raise DatasetError(f"the synthetic dataset has splits train and test, not {split!r}")
        return SyntheticAU(split=split, image_size=input_size, **synthetic)
    if synthetic:
        raise DatasetError(f"options {sorted(synthetic)} apply to the synthetic dataset only, not {name!r}")
    if name not in AU_SETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if root is None:
        raise DatasetError(f"dataset {name!r} needs root: the directory of your copy (see auflow.models.data.{name})")
    if not Path(root).is_dir():
        raise DatasetError(f"{name} root {root} is not a directory (see auflow.models.data.{name} for the layout)")
    factory = AU_DATASET_LOADERS.get(name)
    return factory(root, fold=fold, split=split, input_size=input_size, augment=augment)
