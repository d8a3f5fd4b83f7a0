"""MediaPipe's 52 ARKit-style blendshapes → FACS action units: the table and the function.

The blendshape model (``face_blendshapes.tflite`` in MediaPipe's face landmarker) scores 52
coefficients in [0, 1] named as Apple's ARKit names them. ARKit blendshapes are defined on a
face mesh, not by FACS, but most of them were designed after single action units, so a table maps
them onto the AUs the paper models predict. Where a blendshape comes in a Left/Right pair, the AU
is the mean of the two and the pair is kept as ``AUxx_L`` / ``AUxx_R`` columns.

Sides: ``L``/``R`` are the *subject's* left and right (FACS convention), which is also what
MediaPipe's ``…Left``/``…Right`` mean: closing the eye on the image's left (the subject's right)
raises ``eyeBlinkRight`` and leaves ``eyeBlinkLeft`` unchanged (checked on the demo clip by
editing landmarks 157–161 of a frame before the blendshape model, 2026-11-24).

Three rows are not one-to-one; why each is what it is:

- **AU23 (lip tightener) ← mouthPressLeft/Right.** No blendshape is AU23. ``mouthPucker``
  protrudes the lips (AU18), ``mouthRollLower/Upper`` roll them inwards (AU28); ``mouthPress``
  presses them together (AU24), which shares AU23's visible sign (thinner lip red) and which FACS
  coders see with AU23 so often that they are usually scored together (AU23+24). The weakest row.
- **AU25 (lips part) ← max(jawOpen − mouthClose, mouthLowerDown, mouthUpperUp), clipped to
  [0, 1].** ARKit's ``mouthClose`` means "lips closed *while the jaw is open*", so lip aperture is
  ``jawOpen − mouthClose``; lips also part without a jaw drop when the lower lip is pulled down
  (AU16, ``mouthLowerDown``) or the upper lip raised (AU10, ``mouthUpperUp``).
- **AU26 (jaw drop) ← jawOpen**, although ``jawOpen`` also rises for AU27 (mouth stretch): the
  blendshapes do not tell the two apart.
"""

from __future__ import annotations

import numpy as np

#: MediaPipe's blendshape names, in the model's output order (face_blendshapes_graph.cc)
BLENDSHAPES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
_BS = {n: i for i, n in enumerate(BLENDSHAPES)}

#: AU → (FACS name, blendshapes). Two names ending in Left/Right: a bilateral AU (mean, plus _L/_R
#: columns); one name: that blendshape. AU25 is computed by :func:`_au25` (see the module docstring).
AU_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "AU01": ("inner brow raiser", ("browInnerUp",)),
    "AU02": ("outer brow raiser", ("browOuterUpLeft", "browOuterUpRight")),
    "AU04": ("brow lowerer", ("browDownLeft", "browDownRight")),
    "AU05": ("upper lid raiser", ("eyeWideLeft", "eyeWideRight")),
    "AU06": ("cheek raiser", ("cheekSquintLeft", "cheekSquintRight")),
    "AU07": ("lid tightener", ("eyeSquintLeft", "eyeSquintRight")),
    "AU09": ("nose wrinkler", ("noseSneerLeft", "noseSneerRight")),
    "AU10": ("upper lip raiser", ("mouthUpperUpLeft", "mouthUpperUpRight")),
    "AU12": ("lip corner puller", ("mouthSmileLeft", "mouthSmileRight")),
    "AU14": ("dimpler", ("mouthDimpleLeft", "mouthDimpleRight")),
    "AU15": ("lip corner depressor", ("mouthFrownLeft", "mouthFrownRight")),
    "AU17": ("chin raiser", ("mouthShrugLower",)),
    "AU20": ("lip stretcher", ("mouthStretchLeft", "mouthStretchRight")),
    "AU23": ("lip tightener", ("mouthPressLeft", "mouthPressRight")),
    "AU25": ("lips part", ("jawOpen", "mouthClose", "mouthLowerDownLeft", "mouthLowerDownRight",
                           "mouthUpperUpLeft", "mouthUpperUpRight")),
    "AU26": ("jaw drop", ("jawOpen",)),
    "AU45": ("blink", ("eyeBlinkLeft", "eyeBlinkRight")),
}


def _bilateral(names: tuple[str, ...]) -> bool:
    return len(names) == 2 and names[0].endswith("Left") and names[1].endswith("Right")


def _labels() -> tuple[str, ...]:
    main = tuple(AU_TABLE)
    sides = tuple(f"{au}_{s}" for au, (_, names) in AU_TABLE.items() if _bilateral(names) for s in ("L", "R"))
    return main + sides


#: column labels of :func:`blendshapes_to_au`: the 17 AUs in order, then the _L/_R pairs
AU_LABELS: tuple[str, ...] = _labels()


def _au25(bs: np.ndarray) -> np.ndarray:
    aperture = bs[:, _BS["jawOpen"]] - bs[:, _BS["mouthClose"]]
    lower = bs[:, [_BS["mouthLowerDownLeft"], _BS["mouthLowerDownRight"]]].mean(1)
    upper = bs[:, [_BS["mouthUpperUpLeft"], _BS["mouthUpperUpRight"]]].mean(1)
    return np.clip(np.maximum(aperture, np.maximum(lower, upper)), 0.0, 1.0)


def blendshapes_to_au(bs: np.ndarray) -> np.ndarray:
    """(N, 52) blendshape scores in MediaPipe's order → (N, len(AU_LABELS)) float32 AU values in [0, 1]."""
    bs = np.asarray(bs, np.float32)
    if bs.ndim != 2 or bs.shape[1] != len(BLENDSHAPES):
        raise ValueError(f"blendshapes must have shape (N, {len(BLENDSHAPES)}), got {bs.shape}")
    main, sides = [], []
    for au, (_, names) in AU_TABLE.items():
        if au == "AU25":
            main.append(_au25(bs))
            continue
        cols = bs[:, [_BS[n] for n in names]]
        main.append(cols.mean(1))
        if _bilateral(names):
            sides += [cols[:, 0], cols[:, 1]]
    out = np.stack(main + sides, axis=1) if len(bs) else np.zeros((0, len(AU_LABELS)), np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
