"""What does detecting less cost? A fast face stage against the accurate one, per variant and video.

    python bench/detect_every_study.py [--video NAME|PATH ...] [--every 1,3,5] [--reference accurate]
                                       [--candidate default] [--set key=value ...]

Videos: by default the four of ``bench/study_videos.py`` — the demo clip, a pan over a photo of five
people, a man who leaves the frame and comes back, the demo clip under a fast camera shake. The
reference is the ``accurate`` profile (YuNet on the whole frame at max_side 640, every frame; norm_crop
by scikit-image; its models). Each variant is the candidate config (``default``) with
``face.detector.detect_every`` set to N — YuNet every Nth frame, the landmarks tracked by optical
flow between (plugins/detectors/yunet_roi.py) — plus the ``--set`` overrides. Per variant, on the
same decoded frames, over **every face** both find (matched by box IoU >= 0.3):

- face-stage time per frame (detect/track + ByteTrack + align, one thread), and how the detector
  spent its frames (full-frame, ROI, tracked, tracking lost);
- the share of the reference's faces it finds; landmark distance to the reference's (mean and p95,
  in box widths);
- the share of faces whose dominant expression (fer's argmax) is the reference's, and the Pearson
  correlation with the reference's over the clip of each AU that varies there (reference std >= 0.05;
  AUs the model cannot measure left out) — the accuracy
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
    """The face stage over ``frames``: per frame every face's landmarks and box (lists, maybe empty) and the FaceCrops."""
    stage = FaceStage(cfg.face)
    stage.start()
    kps, items, boxes = [], [], []
    t0 = time.perf_counter()
    for i, img in enumerate(frames):
        fc = stage.process(FramePacket(FrameMeta("s", "s", i, i, (1, 24), 0, img.shape[1], img.shape[0]), img))
        kps.append(list(fc.faces.kps)), items.append(fc), boxes.append(list(fc.faces.bbox))
    ms = (time.perf_counter() - t0) / len(frames) * 1e3
    stats = dict(getattr(stage.detector, "stats", {}))
    stage.stop()
    return {"kps": kps, "items": items, "boxes": boxes, "ms_per_frame": round(ms, 2), "detector_stats": stats}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(var: dict, ref: dict, min_iou: float = 0.3) -> list[tuple[int, int, int]]:
    """(frame, ref face, var face) for faces found by both: greedy on box IoU >= ``min_iou``."""
    pairs = []
    for i, (rb, vb) in enumerate(zip(ref["boxes"], var["boxes"])):
        cand = sorted(((_iou(r, v), a, b) for a, r in enumerate(rb) for b, v in enumerate(vb)), reverse=True)
        used_r, used_v = set(), set()
        for iou, a, b in cand:
            if iou >= min_iou and a not in used_r and b not in used_v:
                pairs.append((i, a, b))
                used_r.add(a), used_v.add(b)
    return pairs


def model_pass(cfg, items: list, frames_per_call: int = 8) -> tuple[dict[tuple[int, int], dict[str, np.ndarray]], dict]:
    """Each model's output for every face, (frame, face) → {output: values}: the analyzer as the pipeline
    runs it (frames in order, a few per call, so models that follow each person see them as a run does)."""
    analyzer = Analyzer(cfg.analyzer)
    analyzer.start()
    out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for k in range(0, len(items), frames_per_call):
        for res in analyzer.run(items[k:k + frames_per_call]):
            for j in range(len(res.faces)):
                out[(res.meta.frame, j)] = {name: v[j] for name, v in res.outputs.items()}
    labels = {name: list(lbl) for name, lbl in analyzer.labels.items()}
    analyzer.stop()
    return out, labels


def compare(var: dict, ref: dict, var_out: dict, ref_out: dict, labels: dict) -> dict:
    """Every face both found (matched by box): landmark error, dominant expression, AU correlation over the clip."""
    pairs = match(var, ref)
    ref_faces = sum(len(b) for b in ref["boxes"])
    err = [float(np.linalg.norm(var["kps"][i][b] - ref["kps"][i][a], axis=1).mean() / (ref["boxes"][i][a][2] - ref["boxes"][i][a][0]))
           for i, a, b in pairs]
    res = {"frames": len(ref["kps"]), "frames_with_face": sum(bool(k) for k in var["kps"]),
           "reference_frames_with_face": sum(bool(k) for k in ref["kps"]),
           "faces": sum(len(b) for b in var["boxes"]), "reference_faces": ref_faces,
           "reference_faces_found": round(len(pairs) / max(ref_faces, 1), 4),
           "landmark_error_box_widths": {"mean": round(float(np.mean(err)), 4) if err else None,
                                         "p95": round(float(np.percentile(err, 95)), 4) if err else None}}
    if pairs and "expr" in labels:
        same = [int(np.argmax(var_out[(i, b)]["expr"]) == np.argmax(ref_out[(i, a)]["expr"])) for i, a, b in pairs]
        res["expr_agreement"] = round(float(np.mean(same)), 4)
    if pairs and "au" in labels:
        a_ = np.array([var_out[(i, b)]["au"] for i, a, b in pairs], dtype=np.float64)
        b_ = np.array([ref_out[(i, a)]["au"] for i, a, b in pairs], dtype=np.float64)
        r = {}
        for k, name in enumerate(labels["au"]):
            x, y = a_[:, k], b_[:, k]
            if np.isnan(y).all() or np.isnan(x).all():
                continue  # an AU the model cannot measure
            if y.std() >= VARY_STD and x.std() > 1e-6:  # AUs that move on the clip
                r[name] = round(float(np.corrcoef(x, y)[0, 1]), 3)
        res["au_pearson_with_reference"] = r
        res["au_pearson_min"] = min(r.values()) if r else None
        res["au_mean_abs_diff"] = round(float(np.nanmean(np.abs(a_ - b_))), 4)
    return res


def study(video: str, ref_cfg, cand_path, every: list[int], overrides: list[str]) -> dict:
    frames = decode(video)
    ref = face_pass(ref_cfg, frames)
    ref_out, labels = model_pass(ref_cfg, ref["items"])
    variants = []
    for n in every:
        cfg = load_config(cand_path, ([f"face.detector.detect_every={n}"] if n else []) + overrides)  # 0: as configured
        var = face_pass(cfg, frames)
        out, _ = model_pass(cfg, var["items"])
        res = {"detect_every": n, "face_stage_ms_per_frame": var["ms_per_frame"], "detector_stats": var["detector_stats"],
               **compare(var, ref, out, ref_out, labels)}
        variants.append(res)
        print(json.dumps({"video": Path(video).name, **res}), flush=True)
    return {"video": Path(video).name, "frames": len(frames),
            "reference": {"face_stage_ms_per_frame": ref["ms_per_frame"], "faces": sum(len(b) for b in ref["boxes"])},
            "variants": variants}


def main() -> None:
    from study_videos import study_videos

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", action="append", default=None,
                    help="a video file, or a study video by name (demo, group_pan, leave_return, shaky; bench/study_videos.py); "
                         "repeatable; default: all four")
    ap.add_argument("--every", default="1,3,5", help="detect_every values to try (0: the candidate's own detector as "
                                                     "configured, e.g. to compare two settings of the accurate profile)")
    ap.add_argument("--reference", default="accurate", help="the reference profile (configs/NAME.yaml): every frame, full "
                                                            "resolution")
    ap.add_argument("--candidate", default="default", help="the config (configs/NAME.yaml) whose detect_every is varied")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override on the candidate")
    ap.add_argument("--set-both", dest="both", action="append", default=[],
                    help="override on the reference and the candidate (e.g. a model option both should run)")
    args = ap.parse_args()
    named = study_videos()
    videos = [str(named.get(v, v)) for v in (args.video or list(named))]
    profiles = default_config_path().parent
    ref_cfg = load_config(profiles / f"{args.reference}.yaml", args.both)
    every = [int(v) for v in args.every.split(",")]
    runs, rows = [], []
    for video in videos:
        run = study(video, ref_cfg, profiles / f"{args.candidate}.yaml", every, args.both + args.overrides)
        runs.append(run)
        for res in run["variants"]:
            lm = res["landmark_error_box_widths"]
            rows.append({"video": run["video"], "detect_every": res["detect_every"],
                         "face stage ms/frame": f"{res['face_stage_ms_per_frame']} (ref {run['reference']['face_stage_ms_per_frame']})",
                         "faces found / ref": f"{res['reference_faces_found']:.3f} ({res['faces']}/{res['reference_faces']})",
                         "landmark err mean/p95": f"{lm['mean']}/{lm['p95']}",
                         "expr = ref's": res.get("expr_agreement"), "AU Pearson min": res.get("au_pearson_min"),
                         "tracked/full/roi": "{}/{}/{}".format(res["detector_stats"].get("tracked"),
                                                             res["detector_stats"].get("full"), res["detector_stats"].get("roi"))})
    payload = {"bench": "detect_every", "videos": [r["video"] for r in runs], "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "reference": args.reference, "candidate": args.candidate,
               "overrides": args.overrides, "overrides_both": args.both, "runs": runs, "load_average_1min": round(os.getloadavg()[0], 2)}
    path = save("detect-every", payload)
    print(markdown_table(rows, list(rows[0])))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
