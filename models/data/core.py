"""What every AU dataset here shares: the error, the item contract, images read from a list, folds.

An AU dataset is a torch ``Dataset`` whose item ``i`` is ``{"image": uint8 (3, S, S) RGB,
"labels": float32 (N,) 0/1}``, with attributes ``au_names`` (the N label names, "AU01" …),
``labels`` (all labels, (len, N)), ``subjects`` (one id per sample, for subject-exclusive folds;
None where the dataset has no subjects) and ``description`` (what the card records as training
data). Images stay uint8 so a dataset knows nothing of a model: the trainer normalises with the
model card's mean and std, exactly as the analyzer does at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from auflow.engine.errors import ConfigError
from auflow.models.au.labels import BENCHMARK_AUS

log = logging.getLogger(__name__)

__all__ = ["AU_SETS", "DatasetError", "ImageListDataset", "SampleIndex", "fold_subjects", "select_fold"]

#: the benchmarks' label sets (one table: models/au/labels.py)
AU_SETS: dict[str, tuple[str, ...]] = BENCHMARK_AUS
#: ImageNet-style training crops (ME-GraphAU's code): resize to S·256/224, then crop S
RESIZE_RATIO = 256 / 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ConfigError):
    """A dataset directory does not have the documented layout, or a fold/split is invalid."""


def au_number(name: str) -> int:
    """"AU01" → 1."""
    return int(name[2:])


@dataclass
class SampleIndex:
    """Parallel lists: image path, 0/1 labels (len, N), subject id of each sample."""

    paths: list[Path]
    labels: np.ndarray
    subjects: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, np.float32).reshape(len(self.paths), -1)
        self.subjects = np.asarray(self.subjects, dtype=object)
        if len(self.subjects) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.subjects)} subject ids")

    @classmethod
    def collected(cls, paths: list[Path], labels: list, subjects: list, empty: str, skipped: str | None,
                  logger: logging.Logger) -> SampleIndex:
        """What a dataset loader collected: none is the error ``empty``; what it passed over, ``skipped``, is
        logged (None: nothing was)."""
        if not paths:
            raise DatasetError(empty)
        if skipped:
            logger.info(skipped)
        return cls(paths, np.array(labels, np.float32), np.array(subjects, dtype=object))

    def take(self, mask: np.ndarray) -> SampleIndex:
        idx = np.flatnonzero(mask)
        return SampleIndex([self.paths[i] for i in idx], self.labels[idx], self.subjects[idx])


def fold_subjects(folds: dict[int, tuple[str, ...]], fold: int, split: str, dataset: str) -> set[str]:
    """Subjects of ``split`` (``train`` | ``test`` | ``all``) in ``fold``: test = that fold's list,
    train = every other fold's."""
    if split == "all":
        return {s for subjects in folds.values() for s in subjects}
    if fold not in folds:
        raise DatasetError(f"{dataset} has folds {', '.join(map(str, sorted(folds)))}; got fold={fold!r}")
    if split == "test":
        return set(folds[fold])
    if split == "train":
        return {s for k, subjects in folds.items() if k != fold for s in subjects}
    raise DatasetError(f"split must be train, test or all; got {split!r}")


def select_fold(index: SampleIndex, folds: dict[int, tuple[str, ...]], fold: int | None, split: str,
                dataset: str, layout: str) -> SampleIndex:
    """The samples of one split of one fold; ``fold=None`` only with ``split="all"``."""
    if fold is None and split != "all":
        raise DatasetError(f"{dataset}: give a fold (1, 2 or 3) for the {split!r} split, or use split='all'")
    wanted = fold_subjects(folds, fold if fold is not None else 0, split, dataset)
    out = index.take(np.array([s in wanted for s in index.subjects], bool))
    if len(out.paths) == 0:
        raise DatasetError(f"{dataset}: no samples for fold {fold}, split {split!r}; the subjects found were "
                           f"{sorted(set(index.subjects))[:10]}. {layout}")
    return out


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}: missing or not an image file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageListDataset(Dataset):
    """Images on disk with their labels; training crops and flips, evaluation centre-crops.

    ``augment=True``: resize to ``round(S·256/224)``, random S×S crop, horizontal flip with
    probability 1/2 (ME-GraphAU's and Topo-AU's training transform; AU labels are bilateral, so a
    flip keeps them). ``augment=False``: the same resize and the centre crop. Randomness comes from
    torch's generator, which the trainer seeds per epoch and DataLoader per worker, so runs repeat.
    """

    def __init__(self, name: str, index: SampleIndex, au_names: Sequence[str], input_size: int, augment: bool,
                 description: str) -> None:
        self.name = name
        self.paths = index.paths
        self.labels = index.labels
        self.subjects = index.subjects
        self.au_names = tuple(au_names)
        self.input_size = int(input_size)
        self.augment = augment
        self.description = description
        if self.labels.shape[1] != len(self.au_names):
            raise ValueError(f"labels have {self.labels.shape[1]} columns for {len(self.au_names)} AUs")

    def __len__(self) -> int:
        return len(self.paths)

    def _transform(self, img: np.ndarray) -> np.ndarray:
        s = self.input_size
        r = max(s, int(round(s * RESIZE_RATIO)))
        img = cv2.resize(img, (r, r), interpolation=cv2.INTER_AREA if img.shape[0] > r else cv2.INTER_LINEAR)
        if self.augment:
            y, x = (int(v) for v in torch.randint(0, r - s + 1, (2,)))
            img = img[y:y + s, x:x + s]
            if bool(torch.rand(()) < 0.5):
                img = img[:, ::-1]
        else:
            o = (r - s) // 2
            img = img[o:o + s, o:o + s]
        return np.ascontiguousarray(img.transpose(2, 0, 1))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = self._transform(read_rgb(self.paths[i]))
        return {"image": torch.from_numpy(img), "labels": torch.from_numpy(self.labels[i].copy())}

    def occurrence_rates(self) -> np.ndarray:
        return self.labels.mean(axis=0)


def image_map(folder: Path) -> dict[str, Path]:
    """Images in ``folder`` by stem, and digit stems also by their number ("0042" → "42"), from one
    directory listing (a stat per frame would be slow on 140,000 frames)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(entry.stem, entry)
            if entry.stem.isdigit():
                found.setdefault(str(int(entry.stem)), entry)
    return found


class LabelSubset(Dataset):
    """``base`` restricted to some of its AUs: the same images, the label columns of ``au_names``
    (kept in ``base``'s order). Carries ``labels``, ``au_names``, ``description`` like the datasets."""

    def __init__(self, base: Dataset, au_names: Sequence[str]) -> None:
        known = tuple(base.au_names)
        unknown = [a for a in au_names if a not in known]
        if unknown or not au_names:
            raise DatasetError(f"data.aus: {unknown or 'nothing'} is not a subset of this dataset's AUs {list(known)}")
        wanted = set(au_names)
        self.base = base
        self.au_names = tuple(a for a in known if a in wanted)
        self.columns = np.array([known.index(a) for a in self.au_names])
        self.labels = np.asarray(base.labels)[:, self.columns]
        self.subjects = getattr(base, "subjects", None)
        self.description = f"{base.description}; AUs {', '.join(self.au_names)} only"

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[i])
        item["labels"] = item["labels"][torch.from_numpy(self.columns)]
        return item

    def occurrence_rates(self) -> np.ndarray:
        return self.labels.mean(axis=0)
