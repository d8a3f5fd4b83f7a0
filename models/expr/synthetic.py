"""Generated faces for the expression models, deterministic by seed (no licensed data needed).

Both sets draw the same cartoon face (numpy, anti-aliased): a face ellipse on a background, two
eyes, two brows, a nose and a mouth, each moved by a few expression parameters (brow raise and
slant, eye opening, mouth opening and curvature, nose wrinkle). Images are float32 RGB in [0, 1],
(N, 3, S, S); normalise them as the model's card says.

(a) :func:`motion_sequences` — for ARPGNet: the label is the *direction* of the mouth's motion over
    the clip (``mouth_opening`` vs ``mouth_closing``). A class-1 clip is a class-0 clip played
    backwards — every per-frame parameter, jitter and noise pattern included — and the forward clip
    is drawn independently of the class, so the frames of both classes come from exactly the same
    distribution, and the *set* of frames of a clip says nothing about its label. Any model that
    pools per-frame predictions without regard to their order (a mean of per-frame softmaxes) is at
    chance; the brows move too, in a direction unrelated to the label, as a distractor.

(b) :func:`multilabel_faces` — for SVML-RGCN: RAF-ML's six labels drawn from compound patterns
    with positive correlations (anger + disgust, fear + surprise, happiness + surprise,
    sadness + fear) and negative ones (happiness never with anger, disgust, fear or sadness). Each
    label moves several facial parameters and labels share them (fear and surprise both raise the
    brows and open the eyes; anger and disgust both lower the brows; an open mouth hides much of
    its curve), every cue's strength varies, and in a fifth of the faces some labels' cues are faded
    to about a third, so a single image is partly ambiguous and the co-occurrence structure carries
    information the pixels alone blur.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MOTION_LABELS",
    "MULTILABEL_LABELS",
    "MULTILABEL_PATTERNS",
    "FACE_PARAMETERS",
    "draw_faces",
    "face_parameter_frames",
    "motion_sequences",
    "multilabel_faces",
    "single_label_faces",
]

#: class names of :func:`motion_sequences`
MOTION_LABELS: tuple[str, ...] = ("mouth_opening", "mouth_closing")
#: RAF-ML's six basic expressions, the order of :func:`multilabel_faces`' columns
MULTILABEL_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

#: compound patterns and their weights (label sets as in RAF-Compound's blends)
MULTILABEL_PATTERNS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("happiness",), 0.14),
    (("happiness", "surprise"), 0.10),
    (("surprise",), 0.08),
    (("fear", "surprise"), 0.12),
    (("fear",), 0.06),
    (("fear", "sadness"), 0.08),
    (("sadness",), 0.10),
    (("anger", "disgust"), 0.14),
    (("anger",), 0.06),
    (("disgust",), 0.06),
    (("disgust", "sadness"), 0.06),
)

#: how each label moves the face parameters (label → {parameter: displacement at full strength})
CUES: dict[str, dict[str, float]] = {
    "anger": {"brow_raise": -0.7, "brow_slant": -0.9, "eye_open": -0.3},
    "disgust": {"brow_raise": -0.5, "nose_wrinkle": 1.0, "mouth_curve": -0.3, "eye_open": -0.3},
    "fear": {"brow_raise": 0.6, "brow_slant": 0.7, "eye_open": 0.6, "mouth_open": 0.3},
    "happiness": {"mouth_curve": 1.0, "eye_open": -0.2},
    "sadness": {"mouth_curve": -0.8, "brow_slant": 0.6},
    "surprise": {"brow_raise": 0.8, "eye_open": 0.5, "mouth_open": 0.8},
}
NEUTRAL = {"brow_raise": 0.0, "brow_slant": 0.0, "eye_open": 0.4, "mouth_open": 0.0, "mouth_curve": 0.0, "nose_wrinkle": 0.0}


# -- drawing -------------------------------------------------------------------------------------------
def _alpha(dist: np.ndarray) -> np.ndarray:
    """Coverage of a pixel from the signed distance (in pixels) of its centre to a shape's edge."""
    return np.clip(0.5 - dist, 0.0, 1.0)


def _ellipse(xx, yy, cx, cy, rx, ry) -> np.ndarray:
    r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return _alpha((r - 1.0) * np.minimum(rx, ry))


def _segment(xx, yy, x0, y0, x1, y1, width) -> np.ndarray:
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    return _alpha(d - width / 2)


def _paint(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> np.ndarray:
    a = alpha[:, None]
    return img * (1 - a) + color[:, :, None, None] * a


def draw_faces(p: dict[str, np.ndarray], size: int, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    """Render N faces from per-face parameters (each an (N,) array, colours (N, 3)) → (N, 3, S, S).

    Geometry is in units of S/48 so every size draws the same face. Parameters: ``cx, cy`` (face
    centre offset), ``bg, skin`` (RGB), ``brow_raise, brow_slant`` in [-1, 1], ``eye_open`` in
    [0, 1], ``mouth_open`` in [0, 1], ``mouth_curve`` in [-1, 1], ``nose_wrinkle`` in [0, 1].
    """
    n = len(p["cx"])
    u = size / 48.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    xx, yy = xx[None], yy[None]

    def col(v):  # (N,) → (N, 1, 1) for broadcasting over the grid
        return np.asarray(v, np.float32)[:, None, None]

    cx, cy = col(24 * u + p["cx"] * u), col(24 * u + p["cy"] * u)
    img = np.broadcast_to(p["bg"][:, :, None, None], (n, 3, size, size)).astype(np.float32)
    img = _paint(img, _ellipse(xx, yy, cx, cy, 15 * u, 19 * u), p["skin"])
    dark = np.tile(np.array([[0.1, 0.08, 0.08]], np.float32), (n, 1))
    # eyes: height grows with eye_open
    for side in (-1, 1):
        ex = cx + side * 6.5 * u
        ey = cy - 4 * u
        img = _paint(img, _ellipse(xx, yy, ex, ey, col(np.full(n, 2.6 * u)), col((0.5 + 2.2 * p["eye_open"]) * u)), dark)
        # brows: raised or lowered as a whole; slant lifts the inner end (+) or drops it (−)
        by = ey - col((4.5 + 3.0 * p["brow_raise"]) * u)
        inner, outer = ex - side * 3.2 * u, ex + side * 3.2 * u
        img = _paint(img, _segment(xx, yy, outer, by, inner, by - col(2.2 * p["brow_slant"] * u), 1.3 * u), dark)
    # nose, and its wrinkle lines (disgust)
    img = _paint(img, _segment(xx, yy, cx, cy - 2 * u, cx, cy + 4 * u, 1.0 * u), dark * 0.5 + p["skin"] * 0.5)
    wrinkle = sum(_segment(xx, yy, cx - 3 * u, cy + k * u, cx + 3 * u, cy + k * u, 0.8 * u) for k in (-1.0, 1.0))
    img = _paint(img, np.clip(wrinkle, 0, 1) * col(p["nose_wrinkle"]), dark)
    # mouth: a parabola through the corners, its middle lowered by curve > 0 (corners up: a smile)
    my = cy + 10 * u
    half_w = 6.0 * u
    curve_y = my + col(p["mouth_curve"] * 3.0 * u) * (1 - ((xx - cx) / half_w) ** 2)
    lips = _alpha(np.abs(yy - curve_y) - 0.8 * u) * (np.abs(xx - cx) < half_w)
    lips = np.maximum(lips, _ellipse(xx, yy, cx, my, col(np.full(n, 4.5 * u)), col((0.3 + 4.0 * p["mouth_open"]) * u)))
    img = _paint(img, lips, np.tile(np.array([[0.45, 0.08, 0.1]], np.float32), (n, 1)))
    img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _identity(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-face nuisance: position, colours, resting expression."""
    skin = rng.uniform(0.45, 0.9, (n, 1)) * np.array([[1.0, 0.8, 0.65]]) + rng.uniform(-0.05, 0.05, (n, 3))
    return {
        "cx": rng.uniform(-2.5, 2.5, n), "cy": rng.uniform(-2.5, 2.5, n),
        "bg": rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32), "skin": np.clip(skin, 0, 1).astype(np.float32),
        **{k: np.full(n, v) for k, v in NEUTRAL.items()},
    }


# -- single frames with their drawing parameters (trunk pre-training) ---------------------------------
#: the expression parameters :func:`face_parameter_frames` returns, and their ranges
FACE_PARAMETERS: dict[str, tuple[float, float]] = {
    "brow_raise": (-1.0, 1.0), "brow_slant": (-1.0, 1.0), "eye_open": (0.0, 1.0),
    "mouth_open": (0.0, 1.0), "mouth_curve": (-1.0, 1.0), "nose_wrinkle": (0.0, 1.0),
}


def face_parameter_frames(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` single faces (n, 3, S, S) with every expression parameter uniform over its range, and
    those parameters (n, 6) float32 in :data:`FACE_PARAMETERS` order.

    A label-free face-analysis task for pre-training a per-frame trunk — the stand-in for the
    pre-trained face networks the papers start from (InsightFace in paper 003) — which knows faces
    but nothing of any clip-level label.
    """
    rng = np.random.default_rng(seed)
    p = _identity(n, rng)
    for name, (lo, hi) in FACE_PARAMETERS.items():
        p[name] = rng.uniform(lo, hi, n)
    return draw_faces(p, size, rng), np.stack([p[k] for k in FACE_PARAMETERS], axis=1).astype(np.float32)


# -- (a) motion sequences --------------------------------------------------------------------------
def _monotone(n: int, t: int, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, t) trajectories rising from ``lo`` to ``hi`` with random positive steps (random speed)."""
    steps = rng.gamma(2.0, 1.0, (n, t - 1))
    ramp = np.concatenate([np.zeros((n, 1)), np.cumsum(steps, axis=1)], axis=1)
    ramp /= ramp[:, -1:]
    return lo[:, None] + (hi - lo)[:, None] * ramp


def motion_sequences(
    n: int, num_frames: int = 8, size: int = 48, seed: int = 0, paired: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips (n, T, 3, S, S) float32 in [0, 1] and labels (n,) int64 into :data:`MOTION_LABELS`.

    ``paired=True`` (n even): clips 2i and 2i+1 are the same draw played forward (label 0) and
    backward (label 1), so an order-blind model scores exactly 1/2 on them. Otherwise each draw's
    label is a fair coin.
    """
    if num_frames < 2:
        raise ValueError(f"motion needs at least 2 frames, got num_frames={num_frames}")
    if paired and n % 2:
        raise ValueError(f"paired sequences come in forward/backward pairs: n must be even, got {n}")
    rng = np.random.default_rng(seed)
    draws = n // 2 if paired else n
    t = num_frames
    ident = _identity(draws, rng)
    mouth = _monotone(draws, t, rng.uniform(0.0, 0.25, draws), rng.uniform(0.75, 1.0, draws), rng)
    # distractor: brows move up or down, independently of the mouth
    b_lo, b_hi = rng.uniform(-0.8, -0.2, draws), rng.uniform(0.2, 0.8, draws)
    brows = _monotone(draws, t, b_lo, b_hi, rng)
    brows = np.where(rng.random(draws)[:, None] < 0.5, brows, brows[:, ::-1])
    per_frame = {k: np.repeat(v, t, axis=0) for k, v in ident.items()}
    per_frame["cx"] = per_frame["cx"] + rng.normal(0, 0.4, draws * t)  # head jitter
    per_frame["cy"] = per_frame["cy"] + rng.normal(0, 0.4, draws * t)
    per_frame["mouth_open"] = mouth.reshape(-1)
    per_frame["brow_raise"] = brows.reshape(-1)
    per_frame["eye_open"] = np.clip(per_frame["eye_open"] + rng.normal(0, 0.1, draws * t), 0, 1)
    frames = draw_faces(per_frame, size, rng).reshape(draws, t, 3, size, size)
    if paired:
        clips = np.stack([frames, frames[:, ::-1]], axis=1).reshape(n, t, 3, size, size)
        labels = np.tile(np.array([0, 1]), draws)
    else:
        labels = (rng.random(n) < 0.5).astype(np.int64)
        clips = np.where(labels[:, None, None, None, None] == 1, frames[:, ::-1], frames)
    return np.ascontiguousarray(clips, dtype=np.float32), labels.astype(np.int64)


# -- (b) multi-label faces -----------------------------------------------------------------------------
def _render_labels(y: np.ndarray, size: int, rng: np.random.Generator, fade: float) -> np.ndarray:
    n = len(y)
    p = _identity(n, rng)
    strength = rng.uniform(0.5, 1.0, y.shape) * y
    # sometimes one present label's own cues are faded: the image alone is then ambiguous
    faded = (rng.random(n) < fade)[:, None] & (rng.random(y.shape) < 0.5) & (y == 1)
    strength = np.where(faded, strength * 0.35, strength)
    for c, name in enumerate(MULTILABEL_LABELS):
        for param, shift in CUES[name].items():
            p[param] = p[param] + shift * strength[:, c]
    for param in NEUTRAL:
        p[param] = p[param] + rng.normal(0.0, 0.1, n)  # individual resting face
    for param, (lo, hi) in {"brow_raise": (-1, 1), "brow_slant": (-1, 1), "eye_open": (0, 1), "mouth_open": (0, 1),
                            "mouth_curve": (-1, 1), "nose_wrinkle": (0, 1)}.items():
        p[param] = np.clip(p[param], lo, hi)
    return draw_faces(p, size, rng)


def multilabel_faces(n: int, size: int = 48, seed: int = 0, fade: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces (n, 3, S, S) float32 in [0, 1] and labels (n, 6) int64 over :data:`MULTILABEL_LABELS`.

    Label sets are drawn from :data:`MULTILABEL_PATTERNS`; ``fade`` is the chance that a face has
    some of its labels' cues weakened to about a third.
    """
    rng = np.random.default_rng(seed)
    sets, weights = zip(*MULTILABEL_PATTERNS)
    w = np.asarray(weights) / np.sum(weights)
    choice = rng.choice(len(sets), size=n, p=w)
    y = np.zeros((n, len(MULTILABEL_LABELS)), np.int64)
    for k, labels in enumerate(sets):
        for name in labels:
            y[choice == k, MULTILABEL_LABELS.index(name)] = 1
    return _render_labels(y, size, rng, fade), y


def single_label_faces(per_class: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Basic-expression faces, ``per_class`` of each of the six labels (one label each, no fading):
    the "basic expression images" from which SVML-RGCN's visual node features come (paper 004,
    Eq. 5). Returns images (6·per_class, 3, S, S) and class indices (6·per_class,)."""
    rng = np.random.default_rng(seed)
    c = len(MULTILABEL_LABELS)
    cls = np.repeat(np.arange(c), per_class)
    return _render_labels(np.eye(c, dtype=np.int64)[cls], size, rng, fade=0.0), cls
