"""All-GPU face path: CPU-vs-device parity and the batched face stage's throughput, as JSON.

    python bench/gpu_parity.py --device cuda --out parity.json [--streams 1,8,32,64] [--iters 5]

On the demo clip's first ``--frames`` frames:

- ``retinaface``: the torch RetinaFace on the CPU and on ``--device``: faces per frame equal?, max
  |Δ| of boxes and landmarks (px) and of scores;
- ``warp``: ``align_torch.warp_crops`` on ``--device`` against the Aligner's crops (norm_crop where
  insightface is installed, else the numpy transform + cv2.warpAffine): max and mean |Δ| gray levels
  at 112 and 224;
- ``stage``: :class:`BatchedFaceStage` on ``--device`` for 1080p frames (the demo frames upscaled), one
  frame from each of N streams per batch: median batch time, frames/s, faces/s and the detect /
  track / align split, for each N; on CUDA with the detector eager and from CUDA graphs;
- ``nvdec_dlpack``: NVDEC decoding into device memory (``is_hw_owned``), planes to torch by DLPack,
  NV12 → BGR on the device (:func:`nvdec_probe`).

Figures are printed and written, never asserted (the tests assert parity).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from auflow.engine.assets import asset_path
from auflow.engine.config import FaceSection
from auflow.engine.pipeline.batched_face_stage import BatchedFaceStage
from auflow.engine.types import Faces, FrameMeta
from auflow.plugins.align import Aligner
from auflow.plugins.align_torch import warp_crops
from auflow.plugins.detectors.retinaface import RetinaFaceDetector
from common import machine


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def demo_frames(n: int) -> list[np.ndarray]:
    """The demo clip's first ``n`` frames (BGR)."""
    with av.open(str(asset_path("demo_video"))) as c:
        return [f.to_ndarray(format="bgr24") for f in itertools.islice(c.decode(video=0), n)]


def retinaface_parity(frames: list[np.ndarray], device: str) -> dict:
    cpu = RetinaFaceDetector().detect_batch(frames)
    dev = RetinaFaceDetector(RetinaFaceDetector.Config(device=device)).detect_batch(frames)
    same = all(len(a) == len(b) for a, b in zip(cpu, dev))
    pairs = [(a, b) for a, b in zip(cpu, dev) if len(a) == len(b) and len(a)]
    return {
        "frames": len(frames), "faces_cpu": sum(map(len, cpu)), "faces_device": sum(map(len, dev)), "same_counts": same,
        "max_abs_bbox_px": max((float(np.abs(a.bbox - b.bbox).max()) for a, b in pairs), default=None),
        "max_abs_kps_px": max((float(np.abs(a.kps - b.kps).max()) for a, b in pairs), default=None),
        "max_abs_score": max((float(np.abs(a.score - b.score).max()) for a, b in pairs), default=None),
    }, cpu


def warp_parity(frames: list[np.ndarray], faces: list[Faces], device: str) -> dict:
    try:
        import insightface.utils.face_align  # noqa: F401

        impl = "insightface"
    except ImportError:
        impl = "numpy"
    keep = [(f, d) for f, d in zip(frames, faces) if len(d)]
    x = torch.from_numpy(np.stack([f for f, _ in keep])).permute(0, 3, 1, 2).to(device)
    kps = np.stack([d.kps[0] for _, d in keep])
    out = {"reference": "norm_crop" if impl == "insightface" else "numpy transform + cv2.warpAffine", "faces": len(keep)}
    for size in (112, 224):
        own = warp_crops(x, torch.from_numpy(kps).to(device), size).permute(0, 2, 3, 1).cpu().numpy().astype(np.int16)
        aligner = Aligner(Aligner.Config(size=size, impl=impl))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref = np.stack([aligner.crop(f, d[:1])[0] for f, d in keep])
        diff = np.abs(own - ref)
        out[str(size)] = {"max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 5),
                          "share_over_1": round(float((diff > 1).mean()), 6)}
    return out


def stage_throughput(frames: list[np.ndarray], device: str, streams: list[int], iters: int) -> list[dict]:
    big = [cv2.resize(f, (1920, 1080), interpolation=cv2.INTER_LINEAR) for f in frames]
    cfg = FaceSection.model_validate({"detector": {"name": "retinaface", "max_side": 640},
                                      "align": {"name": "norm_crop", "size": 112}, "tracker": {"name": "bytetrack"}})
    on_dev = [torch.from_numpy(f).permute(2, 0, 1).to(device) for f in big]
    rows = []
    for n, graphs in [(n, g) for g in ((False, True) if device.startswith("cuda") else (False,)) for n in streams]:
        stage = BatchedFaceStage(cfg.model_copy(update={"cuda_graphs": graphs, "batch": max(streams)}), device=device)
        stage.start()
        times, faces, parts = [], 0, {"detect": [], "track": [], "align": []}
        for it in range(iters + 2):  # 2 warm-up batches
            batch = [(FrameMeta(f"cam{s}", "s", it, it, (1, 25), 0, 1920, 1080), on_dev[(it + s) % len(on_dev)])
                     for s in range(n)]
            sync(device)
            t0 = time.perf_counter()
            out = stage.process(batch)
            sync(device)
            if it >= 2:
                times.append(time.perf_counter() - t0)
                faces += sum(len(o.faces) for o in out)
                for k in parts:
                    parts[k].append(out[0].latency_ms[k])
        stage.stop()
        med = statistics.median(times)
        rows.append({"streams": n, "cuda_graphs": graphs, "batch_ms_p50": round(med * 1e3, 2),
                     "frames_per_s": round(n / med, 1), "faces_per_s": round(faces / sum(times), 1), "iters": iters,
                     "ms_p50": {k: round(statistics.median(v), 2) for k, v in parts.items()}})
        print(rows[-1], flush=True)
    return rows


def nvdec_probe(device: str, frames: int) -> dict:
    """NVDEC into device memory, handed to torch by DLPack, converted to BGR on the device: the path
    ``source.device_frames`` runs (engine/sources/hwaccel.py, device_frames.py), through FileSource.

    What the open chose, the BGR pixels against the CPU decoder's ``bgr24`` (first 8 frames), and
    decode(+convert) frames/s of a 1080p H.264 clip with nothing copied to the host. Off CUDA (the dry
    run) the CPU decoder's frames reformatted to NV12 stand in, so the conversion runs. Errors are
    recorded, not raised.
    """
    from auflow.engine.sources import FileSource
    from auflow.engine.sources.device_frames import frame_to_bgr_tensor
    from sources_bench import make_clip

    path = make_clip("1080p", frames)
    with av.open(str(path)) as c:
        ref = [f.to_ndarray(format="bgr24") for _, f in zip(range(8), c.decode(video=0))]
    out: dict = {"clip": path.name, "frames": frames}
    cuda = device.startswith("cuda")
    try:
        diffs, n = [], 0
        if cuda:
            src = FileSource(str(path), hwaccel_mode="cuda", frames_device=device)
            src.open()
            out["decoder"] = src.decoder
            frames_iter = (p.image for p in src.frames())
        else:
            src = None

            def cpu_frames():
                from types import SimpleNamespace

                with av.open(str(path)) as c:
                    for f in c.decode(video=0):
                        nv = f.reformat(format="nv12")
                        yield frame_to_bgr_tensor(SimpleNamespace(format=nv.format, planes=nv.planes,
                                                                  colorspace=f.colorspace, color_range=f.color_range))
            frames_iter = cpu_frames()
        sync(device)
        t0 = time.perf_counter()
        for bgr in frames_iter:
            if n == 0:
                out["tensor"] = {"type": type(bgr).__name__, "shape": list(getattr(bgr, "shape", ())),
                                 "device": str(getattr(bgr, "device", "host"))}
            if n < len(ref):
                img = bgr.permute(1, 2, 0).cpu().numpy() if isinstance(bgr, torch.Tensor) else bgr
                diffs.append(np.abs(img.astype(np.int16) - ref[n]))
            n += 1
        sync(device)
        dt = time.perf_counter() - t0
        if src is not None:
            src.close()
        d = np.stack(diffs)
        out.update(decoded=n, fps_decode_to_bgr_tensor=round(n / dt, 1),
                   bgr_vs_cpu_bgr24={"mean_abs": round(float(d.mean()), 3), "max_abs": int(d.max())})
    except Exception as e:  # noqa: BLE001 - a probe: what failed is the finding
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--streams", default="1,8,32,64", help="comma-separated stream counts (frames per batch)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--nvdec-frames", type=int, default=240, help="frames of the 1080p clip for the NVDEC probe (0: skip)")
    ap.add_argument("--out", default=None, help="JSON path (default: print only)")
    args = ap.parse_args()
    frames = demo_frames(args.frames)
    t0 = time.perf_counter()
    rf, cpu_faces = retinaface_parity(frames, args.device)
    print("retinaface", rf, flush=True)
    wp = warp_parity(frames, cpu_faces, args.device)
    print("warp", wp, flush=True)
    st = stage_throughput(frames, args.device, [int(s) for s in args.streams.split(",")], args.iters)
    nv = nvdec_probe(args.device, args.nvdec_frames) if args.nvdec_frames else None
    print("nvdec", nv, flush=True)
    payload = {"bench": "gpu_parity", "device": args.device, "machine": machine(),
               "torch": torch.__version__, "cuda": torch.version.cuda,
               "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
               "retinaface": rf, "warp": wp, "stage_1080p": st, "nvdec_dlpack": nv, "wall_s": round(time.perf_counter() - t0, 1)}
    text = json.dumps(payload, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
