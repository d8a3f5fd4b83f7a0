"""AU-GCN's regions of interest (Liu et al., MMM 2020, Sec. 3.2), placed in auflow's aligned crops.

How the paper's ROI rules are applied here
------------------------------------------
The paper takes its AU centres from EAC-Net (Li et al., TPAMI 2018) and cuts an n×n region
(n = 25 on its 200×200 similarity-aligned face) around each. EAC-Net states the centres in
"scale" units, the distance between the inner eye corners; JAA-Net (Shao et al., ECCV 2018)
wrote the same rules on 49 landmarks, which are the 68-point scheme's points 17-67 without the
inner mouth corners 60 and 64. On the 68 points (0-based, iBUG order) they read:

=============== ===================== ================================= ===========
region          AUs                   centres (68-point indices)         offset (y)
=============== ===================== ================================= ===========
inner_brow      AU01                  21 | 22                            -1/2 scale
outer_brow      AU02                  18 | 25                            -1/3 scale
brow_center     AU04                  19 | 24                            +1/3 scale
cheek           AU06                  41 | 46 (lower eyelids)            +1 scale
eye             AU07                  38 | 43 (upper eyelids)            0
nose            AU09                  mean(32, 34) (one ROI)             -1/2 scale
upper_lip       AU10                  61 | 63 (inner upper lip)          0
lip_corner      AU12, AU14, AU15      48 | 54                            0
chin            AU17                  58 | 56 (lower lip)                +1/2 scale
lip_center      AU23, AU24, AU25, AU26  51 (up) | 57 (down)              0
=============== ===================== ================================= ===========

scale = ‖p39 − p42‖ (JAA-Net takes |x39 − x42|; the same on an aligned face), y grows downwards,
"left" is image-left (the face's right side).

The paper's counts fix what is shared: "AU12, AU14 and AU15 share a ROI, AU23, AU24, AU25 and AU26
share a ROI", two ROIs per region (left/right, or up/down for the lip centre) except AU09's single
ROI, plus one ROI for the whole face: BP4D's 12 AUs give 9 regions → 18 + 1 = 19 ROIs, DISFA's 8
give 6 × 2 + 1 + 1 = 14, the paper's R (Sec. 4.1). JAA-Net gives AU09 two centres (32 and 34);
the paper's DISFA count leaves one, so here it is their midpoint, on the nose's midline.

Regions are squares of ``roi_ratio`` × the face side (default 25/200, the paper's n on its face;
the face side is the 112 crop's at ``crop_scale`` 1, so a looser crop gets smaller squares),
resampled to n×n; the whole-face ROI is the full crop resampled to n×n. auflow's crops are
aligned by a 5-point similarity onto InsightFace's ArcFace template, so a mean face in crop
coordinates gives fixed ROIs: :data:`MEAN_FACE_68` is the mean of dlib's 68 landmarks published
by OpenFace (Amos et al. 2016, ``openface/align_dlib.py`` ``TEMPLATE``, Apache-2.0), mapped into
the crop by the least-squares similarity that takes its 5 points (eye centres = means of 36-41 and
42-47, nose tip 30, mouth corners 48 and 54) onto the ArcFace template — the transform norm_crop
would apply to that face. Per-face 68-point landmarks, when given, place the same rules per face.

Coordinates here are grid_sample's normalised ones (align_corners=False): pixel centre x of a crop
of width W is at (2x + 1) / W − 1, so a rule holds for any crop size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auflow.engine.errors import ModelError

#: InsightFace's ArcFace template for a 112×112 crop (``insightface.utils.face_align.arcface_dst``;
#: the same constant as ``auflow.plugins.align.ARCFACE_112``, checked by a test)
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
CROP_112 = 112

#: Mean positions of dlib's 68 landmarks (iBUG order), OpenFace's ``TEMPLATE`` rounded to 1e-4
#: (Apache-2.0, Carnegie Mellon University); units: OpenFace's normalised face box
MEAN_FACE_68 = np.array([
    # 0-16 jaw
    (0.0792, 0.3392), (0.0829, 0.4570), (0.0968, 0.5756), (0.1221, 0.6919), (0.1687, 0.8003), (0.2398, 0.8957),
    (0.3257, 0.9771), (0.4223, 1.0433), (0.5318, 1.0608), (0.6413, 1.0398), (0.7381, 0.9723), (0.8244, 0.8896),
    (0.8948, 0.7925), (0.9394, 0.6815), (0.9611, 0.5622), (0.9706, 0.4418), (0.9712, 0.3221),
    # 17-26 brows
    (0.1638, 0.2492), (0.2178, 0.2043), (0.2913, 0.1924), (0.3675, 0.2036), (0.4393, 0.2331), (0.5864, 0.2281),
    (0.6602, 0.1959), (0.7375, 0.1824), (0.8132, 0.1928), (0.8708, 0.2353),
    # 27-35 nose
    (0.5153, 0.3186), (0.5162, 0.3962), (0.5171, 0.4738), (0.5182, 0.5532), (0.4337, 0.6041), (0.4755, 0.6208),
    (0.5207, 0.6343), (0.5659, 0.6188), (0.6071, 0.6016),
    # 36-47 eyes
    (0.2524, 0.3311), (0.2987, 0.3026), (0.3557, 0.3030), (0.4037, 0.3387), (0.3525, 0.3500), (0.2968, 0.3505),
    (0.6313, 0.3341), (0.6791, 0.2965), (0.7360, 0.2947), (0.7829, 0.3213), (0.7403, 0.3418), (0.6850, 0.3437),
    # 48-67 mouth
    (0.3532, 0.7462), (0.4146, 0.7191), (0.4777, 0.7068), (0.5227, 0.7171), (0.5698, 0.7054), (0.6352, 0.7157),
    (0.6995, 0.7394), (0.6394, 0.8052), (0.5764, 0.8354), (0.5254, 0.8417), (0.4764, 0.8375), (0.4138, 0.8100),
    (0.3801, 0.7500), (0.4780, 0.7451), (0.5234, 0.7489), (0.5711, 0.7433), (0.6724, 0.7442), (0.5725, 0.7766),
    (0.5240, 0.7834), (0.4776, 0.7785),
], dtype=np.float64)
NUM_LANDMARKS = 68
#: the inner eye corners, whose distance is EAC-Net's "scale"
INNER_EYE_CORNERS = (39, 42)

#: AU → the region its centre rule names (EAC-Net's rules; shared regions as the paper says)
AU_REGION: dict[str, str] = {
    "AU01": "inner_brow", "AU02": "outer_brow", "AU04": "brow_center", "AU06": "cheek", "AU07": "eye",
    "AU09": "nose", "AU10": "upper_lip", "AU12": "lip_corner", "AU14": "lip_corner", "AU15": "lip_corner",
    "AU17": "chin", "AU23": "lip_center", "AU24": "lip_center", "AU25": "lip_center", "AU26": "lip_center",
}
#: region → its ROIs: (side name, landmark indices averaged, y offset in scale units)
REGION_RULES: dict[str, tuple[tuple[str, tuple[int, ...], float], ...]] = {
    "inner_brow": (("left", (21,), -1 / 2), ("right", (22,), -1 / 2)),
    "outer_brow": (("left", (18,), -1 / 3), ("right", (25,), -1 / 3)),
    "brow_center": (("left", (19,), 1 / 3), ("right", (24,), 1 / 3)),
    "cheek": (("left", (41,), 1.0), ("right", (46,), 1.0)),
    "eye": (("left", (38,), 0.0), ("right", (43,), 0.0)),
    "nose": (("mid", (32, 34), -1 / 2),),
    "upper_lip": (("left", (61,), 0.0), ("right", (63,), 0.0)),
    "lip_corner": (("left", (48,), 0.0), ("right", (54,), 0.0)),
    "chin": (("left", (58,), 1 / 2), ("right", (56,), 1 / 2)),
    "lip_center": (("up", (51,), 0.0), ("down", (57,), 0.0)),
}
FACE_REGION = "face"
#: the paper's n on its 200×200 face: ROIs are 25/200 of the face side (Sec. 4.1)
PAPER_ROI_RATIO = 25 / 200


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity (Umeyama) taking src (K, 2) onto dst (K, 2): a (2, 3) matrix,
    the fit skimage's SimilarityTransform.estimate makes for norm_crop."""
    ms, md = src.mean(0), dst.mean(0)
    p, q = src - ms, dst - md
    norm = (p**2).sum()
    a = (p * q).sum() / norm
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / norm
    rot = np.array([[a, -b], [b, a]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], axis=1)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The ArcFace 5 points of a 68-point shape: eye centres, nose tip, mouth corners, (5, 2)."""
    lm = np.asarray(landmarks68, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def mean_face_in_crop(size: int = CROP_112, crop_scale: float = 1.0) -> np.ndarray:
    """:data:`MEAN_FACE_68` where the aligner puts it in a ``size``×``size`` crop: (68, 2) pixels.

    ``crop_scale`` is the aligner's ``scale`` (``auflow.plugins.align``): > 1 shrinks the template
    towards the crop centre by 1/scale (a looser crop). Sizes other than 112 are the 112 crop
    resized (pixel centres map as (x + 0.5)·size/112 − 0.5), as the aligner and analyzer do.
    """
    m = _similarity(five_points(MEAN_FACE_68), ARCFACE_112)
    pts = MEAN_FACE_68 @ m[:, :2].T + m[:, 2]
    c = (CROP_112 - 1) / 2.0
    pts = c + (pts - c) / crop_scale
    return (pts + 0.5) * (size / CROP_112) - 0.5


def to_normalized(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pixel-centre coordinates in a ``size`` crop → grid_sample's [-1, 1] (align_corners=False)."""
    return (2.0 * np.asarray(pixels, np.float64) + 1.0) / size - 1.0


@dataclass(frozen=True)
class RoiLayout:
    """The ROIs of an AU set: the R − 1 landmark ROIs in AU order, then the whole face.

    ``center_weights`` (R−1, 68) averages landmarks into each centre and ``center_offsets``
    (R−1, 2) moves it, in scale units: centre_r = Σ_k W[r, k] p_k + offset_r · scale.
    ``membership`` (R, C) is 1 where AU c belongs to ROI r (the whole face holds every AU): the
    support of the ROI-level labels Y^ROI of Eq. (2). ``pairs`` are the symmetric ROI pairs.
    """

    au_names: tuple[str, ...]
    roi_names: tuple[str, ...]
    regions: tuple[str, ...]
    center_weights: np.ndarray
    center_offsets: np.ndarray
    membership: np.ndarray
    pairs: tuple[tuple[int, int], ...]

    @property
    def num_rois(self) -> int:
        return len(self.roi_names)


def roi_layout(au_names: tuple[str, ...] | list[str]) -> RoiLayout:
    """The paper's ROIs for an AU set (BP4D's 12 AUs → 19 ROIs, DISFA's 8 → 14)."""
    unknown = [au for au in au_names if au not in AU_REGION]
    if unknown:
        raise ModelError(f"au_gcn has no ROI rule for {unknown}; AUs with a rule: {', '.join(AU_REGION)}")
    regions: list[str] = []
    for au in au_names:
        if AU_REGION[au] not in regions:
            regions.append(AU_REGION[au])
    names, roi_regions, weights, offsets, pairs = [], [], [], [], []
    for region in regions:
        first = len(names)
        for side, idx, dy in REGION_RULES[region]:
            w = np.zeros(NUM_LANDMARKS)
            w[list(idx)] = 1.0 / len(idx)
            names.append(f"{region}_{side}")
            roi_regions.append(region)
            weights.append(w)
            offsets.append((0.0, dy))
        if len(names) - first == 2:
            pairs.append((first, first + 1))
    names.append(FACE_REGION)
    roi_regions.append(FACE_REGION)
    membership = np.array(
        [[1.0 if r == FACE_REGION or AU_REGION[au] == r else 0.0 for au in au_names] for r in roi_regions]
    )
    return RoiLayout(
        au_names=tuple(au_names),
        roi_names=tuple(names),
        regions=tuple(roi_regions),
        center_weights=np.stack(weights),
        center_offsets=np.array(offsets),
        membership=membership,
        pairs=tuple(pairs),
    )
