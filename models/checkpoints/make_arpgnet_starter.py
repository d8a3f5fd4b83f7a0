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
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "arpgnet_demo_student"
OPTIONS = ["--model", "arpgnet", "--teacher", "fer", "--set", "options.num_frames=8", "--set", "options.input_size=64",
           "--set", "options.backbone_kw={width_mult: 0.5}", "--set", "options.dim=128", "--set", "options.separate_relation_trunk=false",
           "--epochs", "8"]


def distill(out: Path) -> None:
    from auflow.engine.assets import asset_path
    from auflow.models.checkpoints.make_starter import run_distill

    run_distill([str(asset_path("demo_video")), *OPTIONS, "--out", str(out)])


def package(run: Path) -> Path:
    from auflow.models.card import ModelCard
    from auflow.models.checkpoints.make_starter import ship
    from auflow.plugins.analyzers.student import temporal_gate

    card, dest, size, sha = ship(run, NAME, model="arpgnet")
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
