"""BP4D-Spontaneous (Zhang et al., 2014): 41 subjects, 8 tasks each, 12 AUs occurrence-coded.

Expected layout under the directory you point at (the official AU coding files and one image per
coded frame, as ME-GraphAU's data preparation leaves them)::

    BP4D_ROOT/
      AUCoding/AU_OCC/F001_T1.csv     official occurrence codes, one file per subject and task:
                                      header "0,1,2,4,...", first column the frame number, then
                                      one column per AU number; 1 present, 0 absent, 9 not coded
      img/F001/T1/2440.jpg            the face image of frame 2440 (an aligned crop, as from
                                      MTCNN or auflow's norm_crop); .jpg or .png, leading zeros ok

A frame is used when its image exists and all 12 AUs are coded (0 or 1); frames coded 9 for any of
them, or without an image, are skipped and counted in the log. Labels: AU01, 02, 04, 06, 07, 10,
12, 14, 15, 17, 23, 24 (ME-GraphAU Table 1, AU-GCN Table 2).

Protocol: subject-exclusive 3-fold cross-validation, the split every paper here uses (ME-GraphAU
Sec. 3, "the same protocol as previous studies"; JAA-Net's lists): :data:`BP4D_FOLDS` ``[k]`` is
the test subjects of fold k, which trains on the other two parts. The parts and their numbering
are those of the ME-GraphAU authors' lists (``tool/BP4D_image_label_process.py``: fold 1 tests
part 3, fold 2 part 2, fold 3 part 1), so a fold-k number here compares with theirs.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from .core import AU_SETS, DatasetError, ImageListDataset, SampleIndex, au_number, image_map, select_fold
from .loaders import AU_DATASET_LOADERS

log = logging.getLogger(__name__)

__all__ = ["BP4D_AUS", "BP4D_FOLDS", "BP4D_LAYOUT", "BP4D_SUBJECTS", "bp4d", "index_bp4d"]

BP4D_AUS = AU_SETS["bp4d"]
_PART1 = ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008")
_PART2 = ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005")
_PART3 = ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014")
#: fold k → its test subjects (the other two parts train it)
BP4D_FOLDS: dict[int, tuple[str, ...]] = {1: _PART3, 2: _PART2, 3: _PART1}
BP4D_SUBJECTS: tuple[str, ...] = tuple(sorted(_PART1 + _PART2 + _PART3))
BP4D_TASKS = tuple(f"T{i}" for i in range(1, 9))
BP4D_LAYOUT = ("Expected BP4D layout: ROOT/AUCoding/AU_OCC/<subject>_<task>.csv (official occurrence codes, "
               "e.g. F001_T1.csv) and ROOT/img/<subject>/<task>/<frame>.jpg (one face image per frame, "
               "e.g. img/F001/T1/2440.jpg); see auflow.models.data.bp4d.")
UNCODED = 9


def _read_occ(path: Path, aus: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Frame numbers and (frames, AUs) codes of one official AU_OCC csv."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetError(f"{path} is empty. {BP4D_LAYOUT}")
    header = [h.strip() for h in rows[0]]
    try:
        cols = [header.index(str(au_number(a))) for a in aus]
    except ValueError:
        missing = [a for a in aus if str(au_number(a)) not in header]
        raise DatasetError(f"{path}: no column for {', '.join(missing)} in header {header[:16]}…; "
                           f"the header must name AU numbers (0 = frame, 1, 2, 4, …). {BP4D_LAYOUT}") from None
    frames, codes = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        try:
            frames.append(str(int(float(row[0]))))
            codes.append([int(float(row[c])) for c in cols])
        except (ValueError, IndexError):
            raise DatasetError(f"{path}, line {line}: expected a frame number and 0/1/9 codes, got {row[:6]}…") from None
    return frames, np.array(codes, np.int64).reshape(-1, len(aus))


def index_bp4d(root: str | Path, aus: tuple[str, ...] = BP4D_AUS) -> SampleIndex:
    """Every usable frame under ``root`` (all subjects found), with labels and subject ids."""
    root = Path(root)
    occ = root / "AUCoding" / "AU_OCC"
    if not occ.is_dir() or not (root / "img").is_dir():
        raise DatasetError(f"{root} is not a BP4D directory: {'AUCoding/AU_OCC' if not occ.is_dir() else 'img'} is missing. {BP4D_LAYOUT}")
    files = sorted(occ.glob("*_T*.csv"))
    if not files:
        raise DatasetError(f"{occ} holds no <subject>_<task>.csv files. {BP4D_LAYOUT}")
    paths, labels, subjects = [], [], []
    uncoded = no_image = 0
    for csv_path in files:
        subject, _, task = csv_path.stem.partition("_")
        frames, codes = _read_occ(csv_path, aus)
        images = image_map(root / "img" / subject / task)
        for frame, code in zip(frames, codes):
            if np.any((code != 0) & (code != 1)):
                uncoded += 1
                continue
            img = images.get(frame)
            if img is None:
                no_image += 1
                continue
            paths.append(img)
            labels.append(code)
            subjects.append(subject)
    return SampleIndex.collected(
        paths, labels, subjects,
        f"{root}: {sum(1 for _ in files)} label files but no frame with an image and all of {', '.join(aus)} coded 0/1 "
        f"({uncoded} frames not coded, {no_image} without image). {BP4D_LAYOUT}",
        f"BP4D {root}: skipped {uncoded} frames with an AU coded 9 and {no_image} without an image" if uncoded or no_image
        else None, log)


@AU_DATASET_LOADERS.register("bp4d")
def bp4d(root: str | Path, fold: int | None = None, split: str = "train", input_size: int = 224,
         augment: bool | None = None) -> ImageListDataset:
    """One split (``train`` | ``test`` | ``all``) of one fold (1-3) of BP4D under ``root``.

    ``augment`` defaults to True for the training split (random crop + flip), False otherwise.
    """
    index = select_fold(index_bp4d(root), BP4D_FOLDS, fold, split, "BP4D", BP4D_LAYOUT)
    aug = (split == "train") if augment is None else augment
    desc = f"BP4D ({root}), subject-exclusive 3-fold protocol, fold {fold}, {split} split: {len(index.paths)} frames, {len(set(index.subjects))} subjects"
    return ImageListDataset("bp4d", index, BP4D_AUS, input_size, aug, desc)
