"""Decode-only throughput of auflow's file source, one stream and several at once.

    python bench/sources_bench.py [--sizes 720p 1080p] [--streams 1 4] [--frames 240] [--hwaccel cpu|auto|cuda]

For each size a H.264 clip is generated (libx264, 25 fps, a moving textured scene; cached in the
system temp folder). Measured in the same run:

- ``pyav``: the same work with PyAV alone (demux, decode, convert to BGR numpy) — the baseline,
  so the ratio is what auflow's source layer costs;
- ``auflow``: :class:`FileSource` as the pipeline uses it (decode + conversion to BGR numpy), one stream
  (both single-stream figures are the median of ``--repeat`` interleaved runs);
- ``auflow xN``: N streams at once, each in its own spawned process (as the pipeline's workers),
  started together; per-stream and total fps.

With ``--hwaccel cuda`` (or ``auto`` on a GPU machine) the sources decode with NVDEC. Prints JSON and
a markdown table and keeps the JSON in bench/results/sources-<machine>-<date>.json. Timings are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, percentiles, save  # noqa: E402

SIZES = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def make_clip(size: str, frames: int) -> Path:
    w, h = SIZES[size]
    path = Path(tempfile.gettempdir()) / f"auflow-bench-{size}-{frames}.mp4"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (h, w * 2, 3), dtype=np.uint8)  # detail, so the decoder has work to do
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "23", "g": "50"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x = (i * 8) % w
            img = np.ascontiguousarray(texture[:, x:x + w])
            img[h // 3:h // 3 + 80, (i * 12) % (w - 80):(i * 12) % (w - 80) + 80] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def plain_pyav(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        t0 = time.perf_counter()
        n = 0
        for packet in c.demux(s):
            for frame in packet.decode():
                frame.to_ndarray(format="bgr24")
                n += 1
        dt = time.perf_counter() - t0
    return {"frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 1)}


def auflow_source(path: str, hwaccel: str = "cpu") -> dict:
    from auflow.engine.config import SourceSection
    from auflow.engine.sources import make_source

    src = make_source(path, SourceSection(hwaccel=hwaccel))
    src.open()
    lat = []
    t0 = time.perf_counter()
    n = 0
    for pkt in src.frames():
        lat.append(pkt.latency_ms["decode"])
        n += 1
    dt = time.perf_counter() - t0
    decoder = getattr(src, "decoder", "cpu")
    src.close()
    return {"frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 1), "decode_ms": percentiles(lat), "decoder": decoder}


def _stream_worker(path: str, hwaccel: str, start, out) -> None:
    start.wait()
    out.put(auflow_source(path, hwaccel))


def concurrent(path: Path, n: int, hwaccel: str) -> dict:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_stream_worker, args=(str(path), hwaccel, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let every worker import and wait at the start line
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    frames = sum(r["frames"] for r in results)
    per = sorted(r["fps"] for r in results)
    return {"streams": n, "frames": frames, "seconds": round(wall, 3), "total_fps": round(frames / wall, 1),
            "per_stream_fps_min": per[0], "per_stream_fps_median": per[len(per) // 2], "decoder": results[0]["decoder"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["720p", "1080p"], choices=sorted(SIZES))
    ap.add_argument("--streams", nargs="+", type=int, default=[1, 4], help="stream counts to run at once")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--hwaccel", default="cpu", choices=["cpu", "auto", "cuda"])
    ap.add_argument("--repeat", type=int, default=3, help="single-stream runs per size (the median is kept)")
    args = ap.parse_args()

    runs = []
    rows = []
    for size in args.sizes:
        path = make_clip(size, args.frames)
        auflow_source(str(path), args.hwaccel)  # warm-up: page cache, codec init
        bases, ones = [], []
        for _ in range(args.repeat):  # interleaved, so a busy moment of the machine hits both
            bases.append(plain_pyav(path))
            ones.append(auflow_source(str(path), args.hwaccel))
        base = sorted(bases, key=lambda r: r["fps"])[len(bases) // 2]
        one = sorted(ones, key=lambda r: r["fps"])[len(ones) // 2]
        entry = {"size": size, "resolution": "x".join(map(str, SIZES[size])), "frames": args.frames,
                 "pyav_plain": base, "auflow_1": one, "concurrent": []}
        rows.append({"size": size, "streams": "1 (plain PyAV)", "total fps": base["fps"], "per stream fps": base["fps"],
                     "decoder": "cpu", "note": "baseline: PyAV alone, same work"})
        rows.append({"size": size, "streams": "1", "total fps": one["fps"], "per stream fps": one["fps"],
                     "decoder": one["decoder"],
                     "note": f"decode+BGR p50/p95 {one['decode_ms']['p50']}/{one['decode_ms']['p95']} ms; "
                             f"{round(one['fps'] / base['fps'] * 100)}% of the baseline"})
        for n in args.streams:
            if n == 1:
                continue
            c = concurrent(path, n, args.hwaccel)
            entry["concurrent"].append(c)
            rows.append({"size": size, "streams": str(n), "total fps": c["total_fps"],
                         "per stream fps": f"{c['per_stream_fps_min']}-{c['per_stream_fps_median']}", "decoder": c["decoder"],
                         "note": f"{n} spawned processes at once"})
        runs.append(entry)
    payload = {"bench": "sources", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "load_average_1m": round(os.getloadavg()[0], 2),
               "hwaccel": args.hwaccel, "codec": "h264 (libx264 veryfast crf 23, 25 fps)", "runs": runs}
    path = save("sources", payload)
    print(json.dumps(payload, indent=2))
    print()
    print(markdown_table(rows, ["size", "streams", "total fps", "per stream fps", "decoder", "note"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
