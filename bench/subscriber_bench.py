"""Issue 10: does a subscriber that sleeps 1 s per message slow the pipeline down?

Runs `auflow run` on the same generated clip in pairs in one invocation: once with only a fast
subscriber (the run waits for it), once with a fast subscriber plus one that sleeps 1 s per
message. Prints each run's fps, the medians, their ratio, and what the slow subscriber received.

    python bench/subscriber_bench.py --frames 80 --pairs 3

fps is the pipeline's own (summary.json: first frame to end of stream, start-up excluded); the runs
alternate in order and the medians are compared, since a shared machine's load drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from auflow.engine.wire.subscriber import Subscriber
from common import machine, save
from helpers import free_port, write_face_video


def consume(sub: Subscriber, sleep_s: float, stats: dict) -> None:
    for msg in sub:
        stats["gaps"] += msg.gap
        if msg.type == "eos":
            break
        stats["received"] += 1
        if sleep_s:
            time.sleep(sleep_s)
    sub.close()


def one_run(video: Path, out_dir: Path, slow: bool, sleep_s: float) -> dict:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    subs = [("fast", Subscriber(endpoint, topics=["result/", "eos/"], timeout_s=60), 0.0)]
    if slow:
        subs.append(("slow", Subscriber(endpoint, topics=["result/", "eos/"], timeout_s=60), sleep_s))
    stats = {name: {"received": 0, "gaps": 0} for name, _, _ in subs}
    threads = [threading.Thread(target=consume, args=(s, sl, stats[name]), daemon=True) for name, s, sl in subs]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "auflow.engine.cli.main", "run", str(video), "--publish", endpoint,
                           "--wait-subscribers", str(2 * len(subs)), "--out", str(out_dir)],
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"), check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    stream = json.loads((out_dir / "summary.json").read_text())["streams"]["bench"]
    for t in threads:
        t.join(timeout=5)  # the slow one may still be sleeping through its backlog; not waited for
    # fps: the pipeline's own (first frame to end of stream, start-up excluded); wall_fps: with start-up
    # a copy: the slow subscriber's thread goes on consuming its backlog after the run
    return {"frames": stream["frames"], "wall_s": wall, "wall_fps": stream["frames"] / wall, "fps": stream["fps"],
            "subscribers": {name: dict(v) for name, v in stats.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--sleep", type=float, default=1.0, help="seconds the slow subscriber sleeps per message")
    ap.add_argument("--pairs", type=int, default=3,
                    help="pairs of runs, order alternating (without/with, with/without, ...): medians of a shared machine")
    args = ap.parse_args()
    load0 = round(os.getloadavg()[0], 2)
    base, slow = [], []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_face_video(Path(tmp) / "bench.mp4", frames=args.frames)
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for with_slow in order:
                r = one_run(video, Path(tmp) / f"run{i}-{int(with_slow)}", slow=with_slow, sleep_s=args.sleep)
                (slow if with_slow else base).append(r)
                print(f"pair {i}: {'with' if with_slow else 'without'} slow subscriber {r['fps']:.2f} fps "
                      f"(wall {r['wall_fps']:.2f})", flush=True)
    med_base = float(np.median([r["fps"] for r in base]))
    med_slow = float(np.median([r["fps"] for r in slow]))
    ratio = med_slow / med_base
    received = [r["subscribers"]["slow"]["received"] for r in slow]
    print(f"without slow subscriber: median {med_base:.2f} fps over {len(base)} runs")
    print(f"with slow subscriber:    median {med_slow:.2f} fps over {len(slow)} runs; the slow subscriber received "
          f"{received} of {args.frames} results before each run ended")
    print(f"ratio of medians (with / without): {ratio:.3f}")
    path = save("subscriber", {"machine": machine(), "frames": args.frames, "sleep_s": args.sleep, "pairs": args.pairs,
                               "load_average_1min": [load0, round(os.getloadavg()[0], 2)],
                               "without": base, "with_slow": slow, "median_fps_without": med_base,
                               "median_fps_with_slow": med_slow, "ratio": ratio})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
