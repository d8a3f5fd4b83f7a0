"""Expression datasets of issue 7: RML, AFEW (frames), Aff-Wild2 (EXPR track), RAF-ML.

All are licensed and never downloaded: each loader reads a directory the user supplies and raises
:class:`DatasetError` naming the expected layout when it does not match. Video items are
``{"frames": uint8 (T, 3, S, S) RGB, "label": int64 ()}``; RAF-ML items are
``{"image": uint8 (3, S, S), "labels": float32 (6,) 0/1}`` (the AU loaders' multi-label contract).
Frames are resized to S×S (no crop, no flip here: augmentation is the trainer's business).

Layouts (frames must be extracted beforehand; file names sort in temporal order):

RML (paper 003 §4.1.1: 8 subjects, 6 emotions, leave-one-subject-out = 8 folds)::

    root/<subject>/<emotion>/<clip>/<frame>.jpg|png
    emotion in: anger disgust fear happiness sadness surprise   (label order = this order)

  UNSURE: the official release ships .avi per subject folder with emotion codes in file names; this
  loader expects those videos extracted to frames and sorted into emotion folders by the user.
  ``fold`` = the held-out subject (1-based over sorted subject names); split train = the others.

AFEW (paper 003 §4.1.2: EmotiW Train 773 / Val 383; results reported on Val)::

    root/Train/<Emotion>/<clip>/<frame>.jpg|png
    root/Val/<Emotion>/<clip>/<frame>.jpg|png
    Emotion in: Angry Disgust Fear Happy Neutral Sad Surprise   (the EmotiW folder names; label order)

  The official release has ``Train/<Emotion>/<clip>.avi``; extract frames (faces) per clip.

RML and AFEW sample 16 frames per clip by sparse (TSN) sampling: :func:`sampling.sparse_indices`.

Aff-Wild2 EXPR (ABAW release layout)::

    root/annotations/EXPR_Set/Train_Set/<video>.txt
    root/annotations/EXPR_Set/Validation_Set/<video>.txt
    root/cropped_aligned/<video>/00001.jpg ...   (frame n of the video = file n, 1-based, 5 digits)

  Each annotation file: a header line of comma-separated class names, then one integer per video
  frame; -1 = unannotated, skipped. Classes come from the header (ABAW 2020: 7 — Neutral, Anger,
  Disgust, Fear, Happiness, Sadness, Surprise; ABAW 3+: 8, adding Other). Items are 8 frames at
  dilation 3 around each annotated frame (:func:`sampling.dilated_indices`), frames missing on disk
  (face not detected) replaced by the nearest existing one. The split is the challenge's: the video
  lists are the file names in ``Train_Set`` / ``Validation_Set``.
  Metric: paper 003 Eq. 10, the ABAW 2020 one: ``M = 0.67·F1 + 0.33·Acc``, F1 macro over classes
  (:func:`affwild2_metric`). Later ABAW editions use macro F1 alone (``affwild2_metric(..., f1_only=True)``).

RAF-ML (paper 004 §4: 4908 images, 3926 train / 982 test, 6 labels)::

    root/Image/aligned/<name>_aligned.jpg   (or root/Image/original/<name>.jpg)
    root/EmoLabel/distribution.txt          "<name>.jpg s1 s2 s3 s4 s5 s6" per line
    root/EmoLabel/partition_label.txt       "<name>.jpg 0|1" per line (0 = train, 1 = test)

  Label order: Surprise Fear Disgust Happiness Sadness Anger (RAF's order). UNSURE: the exact file
  names of the release and the distribution→multi-label threshold: neither paper 004 nor its text
  here states it; default ``threshold=1/6`` (an emotion is on when its share of the normalised
  distribution exceeds uniform) — configurable.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .core import IMAGE_SUFFIXES, DatasetError, read_rgb
from .sampling import (
    AFFWILD2_DILATION,
    AFFWILD2_FRAMES,
    SPARSE_FRAMES,
    dilated_indices,
    sparse_indices,
)

__all__ = ["AFEW_LABELS", "EXPR_DATASETS", "RAFML_LABELS", "RML_LABELS", "affwild2_metric", "build_expr_dataset"]

RML_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
AFEW_LABELS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
RAFML_LABELS = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger")
EXPR_DATASETS = ("rml", "afew", "affwild2", "rafml")

RML_LAYOUT = "Expected RML layout: root/<subject>/<emotion>/<clip>/<frame>.jpg with emotion in " + ", ".join(RML_LABELS)
AFEW_LAYOUT = ("Expected AFEW layout: root/{Train,Val}/<Emotion>/<clip>/<frame>.jpg with Emotion in "
               + ", ".join(AFEW_LABELS))
AFFWILD2_LAYOUT = ("Expected Aff-Wild2 layout: root/annotations/EXPR_Set/{Train_Set,Validation_Set}/<video>.txt "
                   "and root/cropped_aligned/<video>/00001.jpg ...")
RAFML_LAYOUT = ("Expected RAF-ML layout: root/Image/aligned/<name>_aligned.jpg, root/EmoLabel/distribution.txt, "
                "root/EmoLabel/partition_label.txt")


def _frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _load(path: Path, size: int) -> np.ndarray:
    img = cv2.resize(read_rgb(path), (size, size), interpolation=cv2.INTER_AREA)
    return img.transpose(2, 0, 1)


class ClipDataset(Dataset):
    """Clips (lists of frame paths) with one label each; 16 frames by sparse sampling."""

    def __init__(self, clips: list[list[Path]], labels: list[int], label_names: tuple[str, ...], input_size: int,
                 train: bool, num_frames: int = SPARSE_FRAMES, groups: list[str] | None = None):
        self.clips, self.labels, self.label_names = clips, np.asarray(labels, np.int64), label_names
        self.input_size, self.train, self.num_frames = int(input_size), train, num_frames
        self.groups = groups

    def __len__(self) -> int:
        return len(self.clips)

    def indices(self, i: int) -> np.ndarray:
        """Frame indices of clip ``i``: segment middles (eval) or a random frame per segment (train,
        drawn from torch's generator like the AU loaders' crops, so the trainer's seeding repeats runs)."""
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()))) if self.train else None
        return sparse_indices(len(self.clips[i]), self.num_frames, self.train, rng)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        frames = np.stack([_load(self.clips[i][k], self.input_size) for k in self.indices(i)])
        return {"frames": torch.from_numpy(np.ascontiguousarray(frames)), "label": torch.tensor(self.labels[i])}


def _scan_clips(emotion_root: Path, names: tuple[str, ...], layout: str) -> tuple[list[list[Path]], list[int]]:
    clips, labels = [], []
    for k, name in enumerate(names):
        d = emotion_root / name
        if not d.is_dir():
            continue
        for clip in sorted(p for p in d.iterdir() if p.is_dir()):
            fr = _frames(clip)
            if fr:
                clips.append(fr)
                labels.append(k)
    if not clips:
        raise DatasetError(f"no clips with frames under {emotion_root}. {layout}")
    return clips, labels


def rml(root: str | Path, split: str = "train", fold: int = 1, input_size: int = 112) -> ClipDataset:
    """RML, leave-one-subject-out: ``fold`` k holds out the k-th subject (sorted names)."""
    root = Path(root)
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not subjects:
        raise DatasetError(f"RML: no subject folders in {root}. {RML_LAYOUT}")
    if not 1 <= fold <= len(subjects):
        raise DatasetError(f"RML: fold must be 1..{len(subjects)} (one per subject); got {fold}")
    if split not in ("train", "test"):
        raise DatasetError(f"RML: split must be train or test; got {split!r}")
    held = subjects[fold - 1]
    chosen = [held] if split == "test" else [s for s in subjects if s != held]
    clips, labels, groups = [], [], []
    for s in chosen:
        c, l = _scan_clips(root / s, RML_LABELS, RML_LAYOUT)
        clips += c
        labels += l
        groups += [s] * len(c)
    return ClipDataset(clips, labels, RML_LABELS, input_size, split == "train", groups=groups)


def afew(root: str | Path, split: str = "train", input_size: int = 112) -> ClipDataset:
    """AFEW, EmotiW split: ``train`` = Train/, ``val`` = Val/ (the test set has no public labels)."""
    folder = {"train": "Train", "val": "Val"}.get(split)
    if folder is None:
        raise DatasetError(f"AFEW: split must be train or val; got {split!r}")
    d = Path(root) / folder
    if not d.is_dir():
        raise DatasetError(f"AFEW: {d} is missing. {AFEW_LAYOUT}")
    clips, labels = _scan_clips(d, AFEW_LABELS, AFEW_LAYOUT)
    return ClipDataset(clips, labels, AFEW_LABELS, input_size, split == "train")


class AffWild2Expr(Dataset):
    """Aff-Wild2 EXPR: one item per annotated frame, 8 frames at dilation 3 around it."""

    def __init__(self, root: str | Path, split: str = "train", input_size: int = 112,
                 num_frames: int = AFFWILD2_FRAMES, dilation: int = AFFWILD2_DILATION, causal: bool = False):
        sub = {"train": "Train_Set", "val": "Validation_Set"}.get(split)
        if sub is None:
            raise DatasetError(f"Aff-Wild2: split must be train or val; got {split!r}")
        root = Path(root)
        ann_dir = root / "annotations" / "EXPR_Set" / sub
        img_root = root / "cropped_aligned"
        if not ann_dir.is_dir() or not img_root.is_dir():
            raise DatasetError(f"Aff-Wild2: {ann_dir} or {img_root} is missing. {AFFWILD2_LAYOUT}")
        self.input_size, self.num_frames, self.dilation, self.causal = int(input_size), num_frames, dilation, causal
        self.label_names: tuple[str, ...] = ()
        self.videos: list[str] = []
        self._frames: dict[str, dict[int, Path]] = {}
        self._length: dict[str, int] = {}
        items: list[tuple[str, int, int]] = []
        for txt in sorted(ann_dir.glob("*.txt")):
            lines = txt.read_text().split()
            if not lines or not lines[0][0].isalpha():
                raise DatasetError(f"Aff-Wild2: {txt} lacks the class-name header line. {AFFWILD2_LAYOUT}")
            names = tuple(n.strip() for n in lines[0].split(","))
            if self.label_names and names != self.label_names:
                raise DatasetError(f"Aff-Wild2: {txt} has classes {names}, others {self.label_names}")
            self.label_names = names
            vid = txt.stem
            vdir = img_root / vid
            if not vdir.is_dir():
                raise DatasetError(f"Aff-Wild2: frames of {vid} missing at {vdir}. {AFFWILD2_LAYOUT}")
            frames = {int(p.stem): p for p in _frames(vdir) if p.stem.isdigit()}
            labels = np.array([int(v) for v in lines[1:]], np.int64)
            if labels.size and (labels.min() < -1 or labels.max() >= len(names)):
                raise DatasetError(f"Aff-Wild2: {txt} has labels outside -1..{len(names) - 1}. {AFFWILD2_LAYOUT}")
            self.videos.append(vid)
            self._frames[vid], self._length[vid] = frames, len(labels)
            items += [(vid, int(f), int(labels[f])) for f in np.flatnonzero(labels >= 0) if f + 1 in frames]
        if not items:
            raise DatasetError(f"Aff-Wild2: no annotated frames with images under {ann_dir}. {AFFWILD2_LAYOUT}")
        self.items = items
        self.labels = np.array([it[2] for it in items], np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def indices(self, i: int) -> np.ndarray:
        """0-based frame indices of item ``i``'s clip (file number = index + 1)."""
        vid, f, _ = self.items[i]
        return dilated_indices(f, self._length[vid], self.num_frames, self.dilation, self.causal)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        vid, _, label = self.items[i]
        have = np.array(sorted(self._frames[vid]))
        paths = [self._frames[vid][int(have[np.abs(have - (k + 1)).argmin()])] for k in self.indices(i)]
        frames = np.stack([_load(p, self.input_size) for p in paths])
        return {"frames": torch.from_numpy(np.ascontiguousarray(frames)), "label": torch.tensor(label)}


def affwild2_metric(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, f1_only: bool = False) -> float:
    """Paper 003 Eq. 10 (ABAW 2020 EXPR): 0.67 · macro-F1 + 0.33 · accuracy; ``f1_only``: macro-F1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    f1s = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)
        f1s.append(2 * tp / denom if denom else 0.0)
    f1 = float(np.mean(f1s))
    return f1 if f1_only else 0.67 * f1 + 0.33 * float(np.mean(y_true == y_pred))


class RafML(Dataset):
    """RAF-ML multi-label images; labels = normalised distribution > ``threshold``."""

    def __init__(self, root: str | Path, split: str = "train", input_size: int = 224, threshold: float = 1 / 6):
        if split not in ("train", "test"):
            raise DatasetError(f"RAF-ML: split must be train or test; got {split!r}")
        root = Path(root)
        dist, part = root / "EmoLabel" / "distribution.txt", root / "EmoLabel" / "partition_label.txt"
        if not dist.is_file() or not part.is_file():
            raise DatasetError(f"RAF-ML: {dist} or {part} is missing. {RAFML_LAYOUT}")
        parts = {}
        for line in part.read_text().splitlines():
            if line.strip():
                name, p = line.split()[:2]
                parts[name] = int(p)
        want = 0 if split == "train" else 1
        self.label_names, self.input_size = RAFML_LABELS, int(input_size)
        self.paths, rows = [], []
        for line in dist.read_text().splitlines():
            f = line.split()
            if not f:
                continue
            if len(f) != 7:
                raise DatasetError(f"RAF-ML: bad line in {dist}: {line!r} (want name + 6 scores). {RAFML_LAYOUT}")
            if parts.get(f[0]) != want:
                continue
            stem = Path(f[0]).stem
            path = root / "Image" / "aligned" / f"{stem}_aligned.jpg"
            if not path.is_file():
                path = root / "Image" / "original" / f[0]
            if not path.is_file():
                raise DatasetError(f"RAF-ML: image of {f[0]} not found. {RAFML_LAYOUT}")
            self.paths.append(path)
            d = np.array([float(v) for v in f[1:]], np.float32)
            rows.append(d / max(d.sum(), 1e-12))
        if not self.paths:
            raise DatasetError(f"RAF-ML: no {split} images listed. {RAFML_LAYOUT}")
        self.labels = (np.stack(rows) > threshold).astype(np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = _load(self.paths[i], self.input_size)
        return {"image": torch.from_numpy(np.ascontiguousarray(img)), "labels": torch.from_numpy(self.labels[i].copy())}


def build_expr_dataset(name: str, root: str | Path, **kw) -> Dataset:
    """``rml`` | ``afew`` | ``affwild2`` | ``rafml`` at ``root`` (see the module docstring)."""
    factories = {"rml": rml, "afew": afew, "affwild2": AffWild2Expr, "rafml": RafML}
    if name not in factories:
        raise DatasetError(f"unknown expression dataset {name!r}; choose one of {', '.join(EXPR_DATASETS)}")
    return factories[name](root, **kw)
