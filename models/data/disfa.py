"""DISFA (Mavadati et al., 2013): 27 subjects watching video clips, 8 AUs coded by intensity 0-5.

Expected layout under the directory you point at (the official label files and the left-camera
frames extracted one image per frame, as ME-GraphAU's data preparation leaves them)::

    DISFA_ROOT/
      ActionUnit_Labels/SN001/SN001_au1.txt   official intensity codes, one file per subject and
                                              AU (au1, au2, au4, au6, au9, au12, au25, au26): one
                                              line per frame, "frame,intensity" (frame from 1)
      img/SN001/0.png                         the face image of the first frame (line 1) — images
                                              are numbered from 0, as the authors' lists number
                                              them; .png or .jpg, leading zeros ok

An AU is present when its intensity is 2 or more (ME-GraphAU, AU-GCN Sec. 4.1: "frames with
intensities equal or greater than 2 are considered as positive"). Frames without an image are
skipped and counted in the log. Labels: AU01, 02, 04, 06, 09, 12, 25, 26.

Protocol: subject-exclusive 3-fold cross-validation. :data:`DISFA_FOLDS` ``[k]`` is the test
subjects of fold k, in the ME-GraphAU authors' numbering (``tool/DISFA_image_label_process.py``:
fold 1 tests part 3, fold 2 part 2, fold 3 part 1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .core import AU_SETS, DatasetError, ImageListDataset, SampleIndex, au_number, image_map, select_fold
from .loaders import AU_DATASET_LOADERS

log = logging.getLogger(__name__)

__all__ = ["DISFA_AUS", "DISFA_FOLDS", "DISFA_LAYOUT", "DISFA_SUBJECTS", "PRESENT_INTENSITY", "disfa", "index_disfa"]

DISFA_AUS = AU_SETS["disfa"]
_PART1 = ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016")
_PART2 = ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024")
_PART3 = ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004")
#: fold k → its test subjects (the other two parts train it)
DISFA_FOLDS: dict[int, tuple[str, ...]] = {1: _PART3, 2: _PART2, 3: _PART1}
DISFA_SUBJECTS: tuple[str, ...] = tuple(sorted(_PART1 + _PART2 + _PART3))
#: intensity from which an AU counts as present
PRESENT_INTENSITY = 2
DISFA_LAYOUT = ("Expected DISFA layout: ROOT/ActionUnit_Labels/<subject>/<subject>_au<N>.txt (official "
                "'frame,intensity' lines, e.g. SN001/SN001_au1.txt) and ROOT/img/<subject>/<i>.png (frame of "
                "label line i+1, numbered from 0); see auflow.models.data.disfa.")


def _read_intensity(path: Path) -> np.ndarray:
    """Intensities of one ``SNxxx_auN.txt``, indexed by frame - 1."""
    values: dict[int, int] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            frame, intensity = (int(float(v)) for v in line.split(",")[:2])
        except ValueError:
            raise DatasetError(f"{path}, line {line_no}: expected 'frame,intensity', got {line!r}") from None
        values[frame] = intensity
    if not values:
        raise DatasetError(f"{path} holds no 'frame,intensity' lines. {DISFA_LAYOUT}")
    out = np.zeros(max(values), np.int64)
    for frame, intensity in values.items():
        if frame < 1:
            raise DatasetError(f"{path}: frame numbers start at 1, found {frame}")
        out[frame - 1] = intensity
    return out


def index_disfa(root: str | Path, aus: tuple[str, ...] = DISFA_AUS) -> SampleIndex:
    """Every usable frame under ``root`` (all subjects found), with labels and subject ids."""
    root = Path(root)
    label_root = root / "ActionUnit_Labels"
    if not label_root.is_dir() or not (root / "img").is_dir():
        raise DatasetError(f"{root} is not a DISFA directory: {'ActionUnit_Labels' if not label_root.is_dir() else 'img'} is missing. {DISFA_LAYOUT}")
    subjects_found = sorted(p.name for p in label_root.iterdir() if p.is_dir())
    if not subjects_found:
        raise DatasetError(f"{label_root} holds no subject folders (SN001, …). {DISFA_LAYOUT}")
    paths, labels, subjects = [], [], []
    no_image = 0
    for subject in subjects_found:
        columns = []
        for au in aus:
            f = label_root / subject / f"{subject}_au{au_number(au)}.txt"
            if not f.is_file():
                raise DatasetError(f"missing label file {f}. {DISFA_LAYOUT}")
            columns.append(_read_intensity(f))
        n = min(len(c) for c in columns)
        if any(len(c) != n for c in columns):
            log.warning("DISFA %s: label files differ in length (%s); using the first %d frames",
                        subject, [len(c) for c in columns], n)
        present = (np.stack([c[:n] for c in columns], axis=1) >= PRESENT_INTENSITY).astype(np.float32)
        images = image_map(root / "img" / subject)
        for i in range(n):
            img = images.get(str(i))
            if img is None:
                no_image += 1
                continue
            paths.append(img)
            labels.append(present[i])
            subjects.append(subject)
    return SampleIndex.collected(
        paths, labels, subjects,
        f"{root}: labels for {len(subjects_found)} subjects but no frame image found under img/<subject>/. {DISFA_LAYOUT}",
        f"DISFA {root}: skipped {no_image} labelled frames without an image" if no_image else None, log)


@AU_DATASET_LOADERS.register("disfa")
def disfa(root: str | Path, fold: int | None = None, split: str = "train", input_size: int = 224,
          augment: bool | None = None) -> ImageListDataset:
    """One split (``train`` | ``test`` | ``all``) of one fold (1-3) of DISFA under ``root``."""
    index = select_fold(index_disfa(root), DISFA_FOLDS, fold, split, "DISFA", DISFA_LAYOUT)
    aug = (split == "train") if augment is None else augment
    desc = (f"DISFA ({root}), intensity >= {PRESENT_INTENSITY} = present, subject-exclusive 3-fold protocol, "
            f"fold {fold}, {split} split: {len(index.paths)} frames, {len(set(index.subjects))} subjects")
    return ImageListDataset("disfa", index, DISFA_AUS, input_size, aug, desc)
