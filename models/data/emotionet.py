"""EmotioNet (Benitez-Quiroz et al., 2016), the manually annotated set: in-the-wild images, 12 AUs.

Expected layout under the directory you point at::

    EMOTIONET_ROOT/
      labels.csv          one row per image: column "image" (path relative to img/), then one
                          column per AU named AU01 AU02 AU04 AU05 AU06 AU09 AU12 AU17 AU20 AU25
                          AU26 AU43 (also accepted: AU1 … or the bare number); 1 present,
                          0 absent, 999 or empty = not coded. Optional column "fold" (1-3).
      img/<image>         the face images (aligned crops), any of .jpg .jpeg .png .bmp

The labels are the 12 AUs Topo-AU reports on EmotioNet (paper 000, Table 3). Rows with an AU not
coded, or whose image is missing, are skipped and counted in the log.

Protocol: paper 000 uses three-fold cross-validation (Sec. 4.2) but publishes no fold lists, and
EmotioNet has no subject ids, so folds cannot be subject-exclusive. Without a "fold" column the
fold of an image is ``sha1(image name) mod 3 + 1``: deterministic, independent of row order and of
the machine, about a third of the images each. Give your own "fold" column to use another split.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np

from .core import AU_SETS, DatasetError, ImageListDataset, SampleIndex, au_number
from .loaders import AU_DATASET_LOADERS

log = logging.getLogger(__name__)

__all__ = ["EMOTIONET_AUS", "EMOTIONET_LAYOUT", "emotionet", "hash_fold", "index_emotionet"]

EMOTIONET_AUS = AU_SETS["emotionet"]
EMOTIONET_LAYOUT = ("Expected EmotioNet layout: ROOT/labels.csv with columns image, AU01 … AU43 (0/1, 999 = not "
                    "coded) and an optional fold column, and the images under ROOT/img/; see auflow.models.data.emotionet.")
FOLDS = (1, 2, 3)


def hash_fold(image: str) -> int:
    """Fold 1-3 of an image from its name alone."""
    return int(hashlib.sha1(image.encode("utf-8")).hexdigest(), 16) % 3 + 1


def _column(header: list[str], au: str) -> int:
    n = au_number(au)
    for name in (au, f"AU{n}", str(n)):
        if name in header:
            return header.index(name)
    raise DatasetError(f"labels.csv has no column for {au} (looked for {au}, AU{n}, {n}); header: {header}. {EMOTIONET_LAYOUT}")


def index_emotionet(root: str | Path, aus: tuple[str, ...] = EMOTIONET_AUS) -> tuple[SampleIndex, np.ndarray]:
    """Usable rows under ``root`` and the fold of each (the index's ``subjects`` are the image names)."""
    root = Path(root)
    table = root / "labels.csv"
    if not table.is_file() or not (root / "img").is_dir():
        raise DatasetError(f"{root} is not an EmotioNet directory: {'labels.csv' if not table.is_file() else 'img/'} is missing. {EMOTIONET_LAYOUT}")
    with table.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise DatasetError(f"{table} has no rows. {EMOTIONET_LAYOUT}")
    header = [h.strip() for h in rows[0]]
    if "image" not in header:
        raise DatasetError(f"{table} has no 'image' column; header: {header}. {EMOTIONET_LAYOUT}")
    c_img, cols = header.index("image"), [_column(header, a) for a in aus]
    c_fold = header.index("fold") if "fold" in header else None
    paths, labels, names, folds = [], [], [], []
    uncoded = no_image = 0
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[c_img].strip():
            continue
        name = row[c_img].strip()
        try:
            codes = [int(float(row[c])) if row[c].strip() else 999 for c in cols]
        except (ValueError, IndexError):
            raise DatasetError(f"{table}, line {line}: AU codes must be 0, 1 or 999, got {row}") from None
        if any(c not in (0, 1) for c in codes):
            uncoded += 1
            continue
        path = root / "img" / name
        if not path.is_file():
            no_image += 1
            continue
        fold = hash_fold(name)
        if c_fold is not None:
            try:
                fold = int(row[c_fold])
            except (ValueError, IndexError):
                fold = -1
            if fold not in FOLDS:
                raise DatasetError(f"{table}, line {line}: fold must be 1, 2 or 3, got {row[c_fold] if c_fold < len(row) else ''!r}")
        paths.append(path)
        labels.append(codes)
        names.append(name)
        folds.append(fold)
    index = SampleIndex.collected(
        paths, labels, names,
        f"{table}: no row with all 12 AUs coded and its image under img/ ({uncoded} rows not fully coded, {no_image} "
        f"without image). {EMOTIONET_LAYOUT}",
        f"EmotioNet {root}: skipped {uncoded} rows with an AU not coded and {no_image} without an image"
        if uncoded or no_image else None, log)
    return index, np.array(folds)


@AU_DATASET_LOADERS.register("emotionet")
def emotionet(root: str | Path, fold: int | None = None, split: str = "train", input_size: int = 224,
              augment: bool | None = None) -> ImageListDataset:
    """One split (``train`` | ``test`` | ``all``) of one fold (1-3) of EmotioNet under ``root``."""
    index, folds = index_emotionet(root)
    if split == "all":
        mask = np.ones(len(folds), bool)
    elif fold not in FOLDS:
        raise DatasetError(f"EmotioNet has folds 1, 2, 3; got fold={fold!r} for the {split!r} split")
    elif split == "test":
        mask = folds == fold
    elif split == "train":
        mask = folds != fold
    else:
        raise DatasetError(f"split must be train, test or all; got {split!r}")
    index = index.take(mask)
    if not index.paths:
        raise DatasetError(f"EmotioNet: no images in fold {fold}, split {split!r}. {EMOTIONET_LAYOUT}")
    aug = (split == "train") if augment is None else augment
    how = "its fold column" if split != "all" else "all folds"
    desc = f"EmotioNet ({root}), 3-fold protocol by image (no subject ids; {how} or sha1 of the name), fold {fold}, {split} split: {len(index.paths)} images"
    return ImageListDataset("emotionet", index, EMOTIONET_AUS, input_size, aug, desc)
