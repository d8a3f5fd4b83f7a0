"""Cost per frame of the temporal stage at T = 8, 16, 32 (CPU, or the GPU when there is one).

    python bench/temporal_bench.py [--t 8,16,32] [--stride 4] [--tracks 1] [--frames 96] [--iters 20]

For each T, arpgnet as ``configs/default.yaml`` builds it for the CPU (mobilenet_v2 trunks, 112²,
C' = 512) and, separately:

- ``encode``: the per-frame encoder (``encode_frames``), a batch of ``--batch`` faces; per face.
  It runs once per frame whatever T (that is what the ring buffer buys).
- ``fuse``: the fusion graph (``fuse``) on one window of T frames; per window, and per frame
  (= per window / stride, the stage runs one window every ``stride`` frames of a track).
- ``stage``: :class:`TemporalRunner` on a stream of ``--frames`` results with ``--tracks`` tracks
  of precomputed features: ring buffers, scheduling and the fusion calls, per frame·track.
- ``recompute``: what re-encoding all T frames for every window would cost per frame
  (T × encode / stride): the cost the streaming split avoids.

Prints JSON + a markdown table and keeps the JSON in bench/results/temporal-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from auflow.engine.temporal import TemporalRunner
from auflow.models import create_model
from common import machine, markdown_table, percentiles, save, timed

CPU = {"backbone": "mobilenet_v2", "input_size": 112}


def bench_t(t: int, args, dev: str) -> dict:
    torch.manual_seed(0)
    model = create_model("arpgnet", num_frames=t, **CPU).eval().to(dev)
    s, d = model.input_size, model.dim
    frames = torch.randn(args.batch, 3, s, s, device=dev)
    window = torch.randn(1, t, 2 * d, device=dev)
    with torch.inference_mode():
        enc = percentiles(timed(lambda: model.encode_frames(frames), args.iters, dev))
        fuse = percentiles(timed(lambda: model.fuse(window[..., :d], window[..., d:]), args.iters * 5, dev))

    feats = np.random.default_rng(0).normal(size=(args.frames, args.tracks, 2 * d)).astype(np.float32)

    def fuse_np(w: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(w).to(dev)
            return model.fuse(x[..., :d], x[..., d:]).cpu().numpy()

    def stream() -> int:
        r = TemporalRunner(fuse_np, t, args.stride, evict_after=30)
        tids = np.arange(args.tracks)
        for i in range(args.frames):
            r.push("cam", "sid", i, tids, feats[i], "causal")
        r.end_session("cam", "sid")
        return r.windows_run

    windows = stream()
    stage = percentiles(timed(stream, max(3, args.iters // 4), dev))
    enc_face = enc["p50"] / args.batch
    row = {
        "T": t,
        "encode_ms_per_frame": round(enc_face, 3),
        "fuse_ms_per_window": fuse["p50"],
        "fuse_ms_per_frame": round(fuse["p50"] / args.stride, 3),
        "stage_ms_per_frame": round(stage["p50"] / (args.frames * args.tracks), 3),
        "windows": windows,
        "recompute_ms_per_frame": round(t * enc_face / args.stride, 3),
        "encode_batch_ms": enc, "fuse_window_ms": fuse, "stage_stream_ms": stage,
    }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t", default="8,16,32")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tracks", type=int, default=1)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    rows = []
    for t in [int(x) for x in args.t.split(",")]:
        row = bench_t(t, args, dev)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
    payload = {
        "bench": "temporal", "machine": machine(), "device": dev, "torch_threads": torch.get_num_threads(),
        "model": {"name": "arpgnet", **CPU, "dim": 512, "kind": "untrained"},
        "stride": args.stride, "batch": args.batch, "tracks": args.tracks, "frames": args.frames, "rows": rows,
        "notes": "encode is per face (batch of --batch); fuse per window of T; stage = TemporalRunner with fusion, per "
                 "frame·track; recompute = T·encode/stride, what re-encoding every window's frames would cost",
    }
    path = save("temporal" if args.tracks == 1 else f"temporal-{args.tracks}tracks", payload)
    cols = ["T", "encode_ms_per_frame", "fuse_ms_per_window", "fuse_ms_per_frame", "stage_ms_per_frame", "recompute_ms_per_frame"]
    print(markdown_table(rows, cols))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
