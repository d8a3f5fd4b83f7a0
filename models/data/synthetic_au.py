"""A generated AU dataset whose ground truth is known exactly: drawn faces, labels set by the generator.

No licensed dataset is needed to check that a model, its loss and the trainer work end to end: every
image here is a cartoon face drawn with OpenCV, and its AU labels are the ones the generator drew it
with. Nothing here is a real face, and a model trained on it has learnt these drawings, not FACS:
its card says "trained on synthetic data" (the trainer writes that).

Each **visible** AU moves one part of the face, by an amount that is large when the AU is present
(intensity 0.6–1) and small when it is absent (0–0.12), so presence is always decidable from the
pixels alone:

======  =====================  ===============================================================
AU      name                   what the generator draws
======  =====================  ===============================================================
AU01    inner brow raiser      the inner ends of both brows move up
AU02    outer brow raiser      the outer ends of both brows move up
AU04    brow lowerer           both brows move down, inner ends further (a frown), and two
                               vertical furrow lines appear between the brows
AU09    nose wrinkler          dark horizontal creases across the nose bridge
AU12    lip corner puller      the mouth corners curve up
AU15    lip corner depressor   the mouth corners curve down
AU25    lips part              a dark gap opens between the lips
AU26    jaw drop               the mouth opens tall and the chin moves down (implies AU25)
======  =====================  ===============================================================

Each **hidden** AU has no pixel cue of its own: its label is a fixed function of two visible AUs
(:data:`HIDDEN_RULES`), so only by relating the other AUs' evidence can a model recover it — what
AU relation graphs claim to do:

- ``AU06`` (cheek raiser) is present iff AU12 **and** AU02 are both present: a co-occurrence (a
  Duchenne-like pairing of a mouth cue and a brow cue);
- ``AU17`` (chin raiser) is present iff **exactly one** of AU15 and AU04 is present: an exclusion,
  the kind of negative relation ME-GraphAU's four co-occurrence classes (00, 01, 10, 11) encode.

The two cues of each hidden AU sit at opposite ends of the face (mouth and brows), so no small
image patch shows both. The two relations differ in one way that matters for models: "both" is a
linearly separable function of the two cues (a threshold on their sum), so a linear classifier on
pooled features that already detect AU12 and AU02 can express it; "exactly one" (an XOR) is not,
so a model must combine the two AUs' evidence non-linearly — in a relation module, or deep inside
its backbone.

Visible AUs are drawn independently with :data:`VISIBLE_RATE` each, except that AU12 and AU15
exclude each other (a mouth corner goes up or down) and AU26 implies AU25, so the labels also
carry the kind of co-occurrence structure real datasets have. Everything else varies per image
and carries no label: skin tone, face shape and size, eye, brow and mouth placement, hair, the
background, in-plane rotation (±10°), scale (±8 %), shift (±4 %), blur and pixel noise.

Determinism: sample ``i`` of split ``s`` under seed ``k`` comes from
``numpy.random.default_rng([k, s, i])`` alone, so a dataset of any size is reproducible image by
image, in any order, in any worker process, with nothing stored on disk. The train and test splits
draw from different streams (``s`` = 0 and 1) and so share no image.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .core import DatasetError

__all__ = ["HIDDEN_AUS", "HIDDEN_RULES", "SYNTHETIC_AUS", "VISIBLE_AUS", "SyntheticAU", "render_face", "sample_labels"]

#: AUs with their own pixel cue, in label order
VISIBLE_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU09", "AU12", "AU15", "AU25", "AU26")
#: hidden AU → (relation, the two visible AUs it is a function of); no pixel cue of its own.
#: "both": present iff both are present (co-occurrence); "either": present iff exactly one is (exclusion)
HIDDEN_RULES: dict[str, tuple[str, tuple[str, str]]] = {"AU06": ("both", ("AU12", "AU02")), "AU17": ("either", ("AU15", "AU04"))}
RELATIONS = ("both", "either")
HIDDEN_AUS: tuple[str, ...] = tuple(HIDDEN_RULES)
#: every label, in the order of the label vector: the visible AUs, then the hidden ones
SYNTHETIC_AUS: tuple[str, ...] = VISIBLE_AUS + HIDDEN_AUS
#: probability that each visible AU is drawn present (before AU12/AU15 exclusion and AU26 ⇒ AU25)
VISIBLE_RATE = 0.5
#: intensity ranges: a present AU moves its part by 60–100 % of the full amount, an absent one 0–12 %
PRESENT_RANGE = (0.6, 1.0)
ABSENT_RANGE = (0.0, 0.12)
#: drawing resolution; the face is drawn at this size and warped (pose jitter) to the output size
CANVAS = 128
SPLITS = {"train": 0, "test": 1}


def sample_labels(rng: np.random.Generator) -> np.ndarray:
    """One label vector over :data:`SYNTHETIC_AUS` (float32 0/1), drawn with the rules above."""
    on = {au: bool(rng.random() < VISIBLE_RATE) for au in VISIBLE_AUS}
    if on["AU12"] and on["AU15"]:  # a mouth corner goes up or down, not both
        on["AU12" if rng.random() < 0.5 else "AU15"] = False
    if on["AU26"]:  # a dropped jaw parts the lips
        on["AU25"] = True
    for hidden, (relation, (a, b)) in HIDDEN_RULES.items():
        on[hidden] = (on[a] and on[b]) if relation == "both" else (on[a] != on[b])
    return np.array([on[au] for au in SYNTHETIC_AUS], np.float32)


@dataclass(frozen=True)
class _Look:
    """Per-image appearance: nothing here depends on the labels."""

    skin: tuple[int, int, int]
    lips: tuple[int, int, int]
    brow: tuple[int, int, int]
    hair: tuple[int, int, int]
    bg0: tuple[int, int, int]
    bg1: tuple[int, int, int]
    face_w: float
    face_h: float
    eye_dx: float
    eye_y: float
    brow_y: float
    brow_t: int
    mouth_y: float
    mouth_w: float
    angle: float
    scale: float
    shift: tuple[float, float]
    noise: float
    blur: bool


def _color(rng: np.random.Generator, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi))


def _look(rng: np.random.Generator) -> _Look:
    tone = rng.random()  # light to dark skin along one line, so every tone is a plausible one
    skin = tuple(int(round(a + (b - a) * tone)) for a, b in zip((236, 208, 190), (110, 72, 52)))
    return _Look(
        skin=skin,
        lips=_color(rng, (150, 60, 60), (200, 110, 110)),
        brow=_color(rng, (20, 15, 10), (90, 70, 50)),
        hair=_color(rng, (10, 10, 10), (160, 120, 80)),
        bg0=_color(rng, (30, 30, 30), (230, 230, 230)),
        bg1=_color(rng, (30, 30, 30), (230, 230, 230)),
        face_w=float(rng.uniform(0.36, 0.40)),
        face_h=float(rng.uniform(0.44, 0.47)),
        eye_dx=float(rng.uniform(0.15, 0.165)),
        eye_y=float(rng.uniform(0.45, 0.47)),
        brow_y=float(rng.uniform(0.355, 0.37)),
        brow_t=int(rng.integers(3, 5)),
        mouth_y=float(rng.uniform(0.81, 0.83)),
        mouth_w=float(rng.uniform(0.12, 0.135)),
        angle=float(rng.uniform(-6.0, 6.0)),
        scale=float(rng.uniform(0.94, 1.06)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
        noise=float(rng.uniform(2.0, 6.0)),
        blur=bool(rng.random() < 0.3),
    )


def _pt(x: float, y: float) -> tuple[int, int]:
    """Unit coordinates → canvas pixels, fixed point with 4 fractional bits (cv2 ``shift=4``)."""
    return int(round(x * CANVAS * 16)), int(round(y * CANVAS * 16))


def _pts(xy) -> np.ndarray:
    """:func:`_pt` of every point of ``xy`` (N, 2) at once (the same float64 products, rounded half to even as
    ``round`` does)."""
    return np.rint(np.asarray(xy, np.float64) * CANVAS * 16).astype(np.int32)


def render_face(intensity: dict[str, float], look: _Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one face: ``intensity[au]`` in [0, 1] for every visible AU → RGB uint8 (size, size, 3)."""
    i = {au: float(intensity.get(au, 0.0)) for au in VISIBLE_AUS}
    img = np.empty((CANVAS, CANVAS, 3), np.uint8)
    ramp = np.linspace(0.0, 1.0, CANVAS, dtype=np.float32)[:, None, None]
    img[:] = (np.array(look.bg0, np.float32) * (1 - ramp) + np.array(look.bg1, np.float32) * ramp).astype(np.uint8)
    aa, sh = cv2.LINE_AA, 4

    # face: two half ellipses; AU26 lengthens the lower one only (the chin drops, nothing above moves)
    drop = 0.05 * i["AU26"]
    fw = int(look.face_w * CANVAS * 16)
    cv2.ellipse(img, _pt(0.5, 0.54 - look.face_h * 0.55), (fw + 16, int(look.face_h * 0.55 * CANVAS * 16)),
                0, 180, 360, look.hair, -1, aa, sh)  # hair cap
    cv2.ellipse(img, _pt(0.5, 0.54), (fw, int(look.face_h * CANVAS * 16)), 0, 180, 360, look.skin, -1, aa, sh)
    cv2.ellipse(img, _pt(0.5, 0.54), (fw, int((look.face_h + drop) * CANVAS * 16)), 0, 0, 180, look.skin, -1, aa, sh)

    def shade(amount: float) -> tuple[int, ...]:
        """The skin darkened by ``amount`` (0 = skin, 1 = black): creases fade in with intensity."""
        return tuple(int(v * (1 - amount)) for v in look.skin)

    # eyes
    for side in (-1, 1):
        ex = 0.5 + side * look.eye_dx
        cv2.ellipse(img, _pt(ex, look.eye_y), (int(0.062 * CANVAS * 16), int(0.03 * CANVAS * 16)), 0, 0, 360, (245, 245, 245), -1, aa, sh)
        cv2.circle(img, _pt(ex, look.eye_y), int(0.022 * CANVAS * 16), (40, 30, 20), -1, aa, sh)

    # brows: AU01 lifts the inner ends, AU02 the outer ends, AU04 lowers both and draws them together
    for side in (-1, 1):
        inner_y = look.brow_y - 0.075 * i["AU01"] + 0.04 * i["AU04"] + 0.03 * i["AU04"]
        outer_y = look.brow_y - 0.075 * i["AU02"] + 0.04 * i["AU04"]
        p_in, p_out = (0.5 + side * (0.06 - 0.015 * i["AU04"]), inner_y), (0.5 + side * 0.24, outer_y)
        mid = (0.5 + side * 0.15, (inner_y + outer_y) / 2 - 0.012)
        cv2.polylines(img, [_pts([p_in, mid, p_out])], False, look.brow, look.brow_t, aa, sh)
    if i["AU01"] > 0:  # FACS: AU01 wrinkles the centre of the forehead
        for k in (1, 2):
            y = look.brow_y - 0.06 * k - 0.04 * i["AU01"]
            cv2.line(img, _pt(0.44, y), _pt(0.56, y), shade(0.4 * i["AU01"]), 2, aa, sh)
    if i["AU02"] > 0:  # … and AU02 its sides, above the outer brows
        for side in (-1, 1):
            y = look.brow_y - 0.1 - 0.03 * i["AU02"]
            cv2.line(img, _pt(0.5 + side * 0.17, y), _pt(0.5 + side * 0.27, y + 0.01), shade(0.4 * i["AU02"]), 2, aa, sh)
    if i["AU04"] > 0:  # vertical furrows between the brows
        for side in (-1, 1):
            cv2.line(img, _pt(0.5 + side * 0.02, look.brow_y + 0.01), _pt(0.5 + side * 0.017, look.brow_y + 0.08),
                     shade(0.5 * i["AU04"]), 3, aa, sh)

    # nose, and AU09's creases across its bridge
    cv2.line(img, _pt(0.5, 0.48), _pt(0.49, 0.62), shade(0.25), 2, aa, sh)
    cv2.ellipse(img, _pt(0.5, 0.64), (int(0.04 * CANVAS * 16), int(0.014 * CANVAS * 16)), 0, 0, 180, shade(0.25), 2, aa, sh)
    if i["AU09"] > 0:
        for k in range(3):
            y = 0.5 + 0.03 * k
            cv2.line(img, _pt(0.43, y), _pt(0.57, y - 0.006), shade(0.75 * i["AU09"]), 4, aa, sh)

    # mouth: corners up (AU12) or down (AU15), lips parted (AU25), jaw dropped (AU26). The lips are
    # bands outside the opening, so even a small parting stays visible
    my = look.mouth_y + drop * 0.4
    corner = -0.07 * i["AU12"] + 0.06 * i["AU15"]
    gap = 0.04 * i["AU25"] + 0.09 * i["AU26"]
    xs = np.linspace(-1.0, 1.0, 17)
    mx, bend, opening = 0.5 + look.mouth_w * xs, corner * xs * xs, gap / 2 * (1 - xs * xs)
    upper, lower = np.stack([mx, my - opening + bend], 1), np.stack([mx, my + opening + bend], 1)
    band = 0.022 * (1 - 0.7 * xs * xs)  # lip thickness, thinner towards the corners
    if gap > 0.004:
        cv2.fillPoly(img, [_pts(np.concatenate([upper, lower[::-1]]))], (60, 15, 25), aa, sh)
    top, bottom = np.stack([mx, upper[:, 1] - band], 1), np.stack([mx, lower[:, 1] + band], 1)  # the lips' outer edges
    cv2.fillPoly(img, [_pts(np.concatenate([top, upper[::-1]]))], look.lips, aa, sh)
    cv2.fillPoly(img, [_pts(np.concatenate([lower, bottom[::-1]]))], look.lips, aa, sh)

    # pose jitter and resize to the output in one warp
    m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), look.angle, look.scale * size / CANVAS)
    m[:, 2] += (size / 2 - CANVAS / 2) + np.array(look.shift) * size
    img = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA if size < CANVAS else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    if look.blur:
        img = cv2.GaussianBlur(img, (3, 3), 0.8)
    noisy = img.astype(np.float32) + rng.normal(0.0, look.noise, img.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _intensities(labels: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    out = {}
    for k, au in enumerate(VISIBLE_AUS):
        lo, hi = PRESENT_RANGE if labels[k] > 0.5 else ABSENT_RANGE
        out[au] = float(rng.uniform(lo, hi))
    return out


#: rendered images kept per (seed, split, image size): a face costs ~1 ms to draw (2-core Zen 4), and training runs
#: over the same stream for several epochs (and, in the tests, several runs share one stream)
RENDER_CACHE_BYTES = 1 << 30
_RENDERED: OrderedDict[tuple[int, str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()


def _render_store(seed: int, split: str, image_size: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, drawn) for the first ``size`` faces of a stream, shared by every dataset of that stream in
    this process; the least recently used streams are let go to stay under :data:`RENDER_CACHE_BYTES`.
    None when one stream alone is over the budget (then every face is drawn each time it is read)."""
    need = size * image_size * image_size * 3
    if need > RENDER_CACHE_BYTES:
        return None
    key = (seed, split, image_size)
    store = _RENDERED.pop(key, None)
    if store is not None and len(store[0]) < size:  # a longer prefix of the same stream: grow it
        images, drawn = np.zeros((size, image_size, image_size, 3), np.uint8), np.zeros(size, bool)
        images[:len(store[0])], drawn[:len(store[1])] = store
        store = (images, drawn)
    store = store or (np.zeros((size, image_size, image_size, 3), np.uint8), np.zeros(size, bool))
    _RENDERED[key] = store
    while sum(v[0].nbytes for v in _RENDERED.values()) > RENDER_CACHE_BYTES:
        _RENDERED.popitem(last=False)
    return store


def clear_render_cache() -> None:
    _RENDERED.clear()


class SyntheticAU(Dataset):
    """``size`` generated faces; item ``i`` → ``{"image": uint8 (3, S, S) RGB, "labels": float32 (N,)}``.

    - ``seed``: the dataset; ``split``: ``"train"`` or ``"test"`` (disjoint streams of one seed)
    - ``image_size``: side S of the square output (drawn at 128, warped to S)

    Labels are in :data:`SYNTHETIC_AUS` order; ``labels`` holds all of them (N samples × AUs),
    computed up front (cheap), for occurrence rates and class weights.
    """

    name = "synthetic"

    def __init__(self, size: int = 2000, seed: int = 0, split: str = "train", image_size: int = 96) -> None:
        if size < 1:
            raise DatasetError(f"synthetic dataset size must be >= 1, got {size}")
        if split not in SPLITS:
            raise DatasetError(f"synthetic split must be one of {', '.join(SPLITS)}, got {split!r}")
        if image_size < 16:
            raise DatasetError(f"synthetic image_size must be >= 16, got {image_size}")
        self.size, self.seed, self.split, self.image_size = size, seed, split, image_size
        self.au_names = SYNTHETIC_AUS
        self.labels = np.stack([sample_labels(self._rng(i)) for i in range(size)])
        self._store = _render_store(seed, split, image_size, size)
        self.description = (f"generated cartoon faces (auflow.models.data.synthetic_au), seed {seed}, split {split}, "
                            f"{size} images {image_size}x{image_size}; hidden AUs {', '.join(HIDDEN_AUS)} have no pixel cue")

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLITS[self.split], index])

    def __len__(self) -> int:
        return self.size

    def image(self, index: int) -> np.ndarray:
        """The RGB uint8 (S, S, 3) image of sample ``index`` (same draw as ``self[index]``)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        if self._store is not None and self._store[1][index]:
            return self._store[0][index].copy()
        rng = self._rng(index)
        labels = sample_labels(rng)  # the same draws as in __init__, so the stream stays aligned
        img = render_face(_intensities(labels, rng), _look(rng), self.image_size, rng)
        if self._store is not None:
            self._store[0][index] = img
            self._store[1][index] = True
        return img

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img = self.image(index)
        return {"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                "labels": torch.from_numpy(self.labels[index].copy())}

    def occurrence_rates(self) -> np.ndarray:
        return self.labels.mean(axis=0)
