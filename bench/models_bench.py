"""Faces per second for every registered model and backend, CPU (or the GPU when there is one).

    python bench/models_bench.py [--batch 16] [--backends eager,onnx] [--models fer,me_graphau] [--iters 20]

Each model is built with a light backbone where it has one (mobilenet_v2, 112²) unless --option
says otherwise; each backend's first batches are warm-up. Prints JSON + a markdown table and keeps
the JSON in bench/results/models-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, markdown_table, percentiles, save  # noqa: E402

from auflow.engine.analyzer.backends import load_backend  # noqa: E402
from auflow.models import create_model, list_models  # noqa: E402

LIGHT = {"backbone": "mobilenet_v2", "input_size": 112}


def build(name: str):
    try:
        return create_model(name, **LIGHT)
    except TypeError:
        return create_model(name)  # no backbone option (e.g. fer)


def measure(runner, x: torch.Tensor, iters: int, device: str) -> dict:
    for _ in range(3):
        runner(x)
    times = []
    for _ in range(iters):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        runner(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    p = percentiles(times)
    return {"batch_ms": p, "faces_per_s": round(x.shape[0] / (p["p50"] / 1e3), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--models", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--backends", default="eager,eager+cl,onnx", help="eager, eager+cl (channels-last), compile, onnx")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else list_models()
    rows, results = [], []
    for name in names:
        try:
            model = build(name)
        except Exception as e:  # noqa: BLE001 - a model that cannot be built is reported, not fatal
            results.append({"model": name, "error": f"{type(e).__name__}: {e}"})
            continue
        card = model.card
        if getattr(model, "num_frames", None):  # a clip model (arpgnet): per-face batches do not apply
            results.append({"model": name, "skipped": "takes clips of frames; bench/temporal_bench.py measures it"})
            continue
        x = torch.randn(args.batch, card.input_channels, card.input_size, card.input_size, device=args.device)
        for spec in args.backends.split(","):
            backend, _, flag = spec.partition("+")
            try:
                runner = load_backend(backend, model, card, args.device, args.precision, channels_last=flag == "cl", batch=args.batch)
                r = measure(runner, x, args.iters, args.device)
            except Exception as e:  # noqa: BLE001
                r = {"error": f"{type(e).__name__}: {e}"}
            r.update(model=name, backend=spec, input=f"{card.input_channels}x{card.input_size}", config=card.config)
            results.append(r)
            rows.append({"model": name, "backend": spec, "input": r["input"], "faces/s": r.get("faces_per_s", "error"),
                         "batch p50 ms": r.get("batch_ms", {}).get("p50", "")})
    payload = {"bench": "models", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device,
               "batch": args.batch, "precision": args.precision, "results": results}
    path = save("models", payload)
    print(json.dumps(payload, indent=2))
    print()
    print(markdown_table(rows, ["model", "backend", "input", "faces/s", "batch p50 ms"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
