"""Training steps/s and inference faces/s for each AU model and backbone (issue 6's bench).

    python bench/train_bench.py [--models me_graphau,topo_au,au_gcn,baseline_au]
                                [--backbones mobilenet_v2:112,resnet50:224] [--batch 16] [--iters 10]
    python bench/train_bench.py --device cuda --precision fp16 --batch 64 --backbones resnet50:224

Each model is labelled with the generated dataset's ten AUs and set up by its training recipe on a
few generated faces (data-derived buffers such as AU-GCN's co-occurrence graph), then:

- train: one optimiser step (AdamW) of its recipe's first stage on a random batch — forward_aux,
  the paper's loss, backward, step; steps/s and images/s from the median step time;
- infer: forward under ``torch.inference_mode`` (autocast fp16 on CUDA with ``--precision fp16``);
  faces/s from the median batch time.

``baseline_au`` with ResNet-50 is a plain ResNet-50 (global pool + linear), the reference the
graph models' cost is read against: the table gives each model's inference cost as a ratio to it
(same backbone, same run). au_gcn has no backbone (ROI auto-encoders): it runs once per input size.
Warm-up steps are not timed. JSON in bench/results/train-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from auflow.engine.analyzer.backends import load_backend
from auflow.models import create_model
from auflow.models.data.synthetic_au import SYNTHETIC_AUS, SyntheticAU
from auflow.models.train.recipes import build_recipe
from common import machine, markdown_table, percentiles, save, timed

NO_BACKBONE = {"au_gcn"}


def build(name: str, backbone: str, size: int):
    options = {"au_names": list(SYNTHETIC_AUS), "input_size": size}
    if name not in NO_BACKBONE:
        options["backbone"] = backbone
    model = create_model(name, **options)
    recipe = build_recipe(name)
    recipe.setup(model, SyntheticAU(size=64, image_size=size))
    return model, recipe


def bench_one(name: str, backbone: str, size: int, args) -> dict:
    model, recipe = build(name, backbone, size)
    model.to(args.device)
    x = torch.randn(args.batch, 3, size, size, device=args.device)
    y = (torch.rand(args.batch, len(SYNTHETIC_AUS), device=args.device) < 0.4).float()
    fp16 = args.precision == "fp16" and args.device.startswith("cuda")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if fp16 else contextlib.nullcontext
    row: dict = {"model": name, "backbone": "-" if name in NO_BACKBONE else backbone, "input": size,
                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    if not args.skip_train:
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        stage = recipe.stages[0]

        def step() -> None:
            with autocast():
                loss = recipe.loss(model, x, y, stage)["loss"]
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        p = percentiles(timed(step, args.iters, args.device, warmup=2))
        row.update(train_step_ms=p["p50"], train_steps_per_s=round(1e3 / p["p50"], 2),
                   train_images_per_s=round(args.batch * 1e3 / p["p50"], 1))
    model.eval()

    def infer() -> None:
        with torch.inference_mode(), autocast():
            model(x)

    p = percentiles(timed(infer, args.iters, args.device))
    row.update(infer_batch_ms=p["p50"], infer_faces_per_s=round(args.batch * 1e3 / p["p50"], 1))
    # the same model through the analyzer's backends (engine/analyzer/backends): eager+cl = channels-last,
    # graphs = replayed from CUDA graphs; faces/s includes the copy of the outputs to the host, as in a run
    for spec in filter(None, args.infer_backends.split(",")):
        backend, _, flag = spec.partition("+")
        try:
            runner = load_backend(backend, model, model.card, args.device, args.precision, channels_last=flag == "cl",
                                  batch=args.batch)
            p = percentiles(timed(lambda: runner(x), args.iters, args.device))
            row.setdefault("backends", {})[spec] = {"batch_ms": p["p50"], "faces_per_s": round(args.batch * 1e3 / p["p50"], 1)}
        except Exception as e:  # noqa: BLE001 - reported, the other backends still run
            row.setdefault("backends", {})[spec] = {"error": f"{type(e).__name__}: {e}"}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="baseline_au,me_graphau,topo_au,au_gcn")
    ap.add_argument("--backbones", default="mobilenet_v2:112,resnet50:224", help="name:input_size, comma-separated")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    ap.add_argument("--skip-train", action="store_true", help="inference only")
    ap.add_argument("--infer-backends", default="", help="also time inference through these analyzer backends, e.g. "
                                                         "eager+cl,graphs,graphs+cl (+cl = channels-last)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = round(os.getloadavg()[0], 2)
    rows, done_sizes = [], set()
    for spec in args.backbones.split(","):
        backbone, _, size = spec.partition(":")
        size = int(size or 224)
        for name in args.models.split(","):
            if name in NO_BACKBONE and size in done_sizes:
                continue
            try:
                row = bench_one(name, backbone, size, args)
            except Exception as e:  # noqa: BLE001 - reported in the table, the other models still run
                row = {"model": name, "backbone": backbone, "input": size, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(row), flush=True)
            rows.append(row)
        done_sizes.add(size)
    for r in rows:  # inference cost relative to the plain backbone (baseline_au) of the same backbone and size
        ref = next((b for b in rows if b["model"] == "baseline_au" and b["input"] == r["input"]
                    and b.get("backbone") == r.get("backbone") and "infer_faces_per_s" in b), None)
        if ref and "infer_faces_per_s" in r:
            r["infer_vs_plain_backbone"] = round(r["infer_faces_per_s"] / ref["infer_faces_per_s"], 3)
            for spec, b in r.get("backends", {}).items():
                plain = ref.get("backends", {}).get(spec, {})
                if "faces_per_s" in b and "faces_per_s" in plain:
                    b["vs_plain_backbone"] = round(b["faces_per_s"] / plain["faces_per_s"], 3)
    for r in rows:  # the best backend's figure beside the eager one, for the table
        ok = {k: b["faces_per_s"] for k, b in r.get("backends", {}).items() if "faces_per_s" in b}
        if ok:
            best = max(ok, key=ok.get)
            r["best_backend"] = f"{best}: {ok[best]}" + (f" ({r['backends'][best]['vs_plain_backbone']}x plain)"
                                                         if "vs_plain_backbone" in r["backends"][best] else "")
    payload = {"bench": "train", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device,
               "batch": args.batch, "precision": args.precision, "threads": torch.get_num_threads(), "iters": args.iters,
               # other work on the machine skews every figure: the 1-min load average at the start and the end
               "load_average_1min": [load_before, round(os.getloadavg()[0], 2)], "results": rows}
    path = save("train", payload)
    print()
    print(markdown_table(rows, ["model", "backbone", "input", "params_m", "train_steps_per_s", "train_images_per_s",
                                "infer_faces_per_s", "infer_vs_plain_backbone", "best_backend", "error"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
