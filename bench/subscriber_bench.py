"""Issue 10: does a subscriber that sleeps 1 s per message slow the pipeline down?

Runs `auflow run` on the same generated clip twice in one invocation: once with only a fast
subscriber (the run waits for it), once with a fast subscriber plus one that sleeps 1 s per
message. fps = frames / wall time of the `auflow run` process (startup and model loading included,
the same in both). Prints both fps, their ratio, and the slow subscriber's received/lost counts.

    python bench/subscriber_bench.py --frames 80
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
    frames = json.loads((out_dir / "summary.json").read_text())["streams"]["bench"]["frames"]
    for t in threads:
        t.join(timeout=5)  # the slow one may still be sleeping through its backlog; not waited for
    return {"frames": frames, "wall_s": wall, "fps": frames / wall, "subscribers": stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--sleep", type=float, default=1.0, help="seconds the slow subscriber sleeps per message")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = write_face_video(Path(tmp) / "bench.mp4", frames=args.frames)
        base = one_run(video, Path(tmp) / "base", slow=False, sleep_s=args.sleep)
        slow = one_run(video, Path(tmp) / "slow", slow=True, sleep_s=args.sleep)
    ratio = slow["fps"] / base["fps"]
    print(f"without slow subscriber: {base['fps']:.2f} fps ({base['frames']} frames, {base['wall_s']:.1f} s)")
    print(f"with slow subscriber:    {slow['fps']:.2f} fps ({slow['frames']} frames, {slow['wall_s']:.1f} s); "
          f"slow subscriber received {slow['subscribers']['slow']['received']} before the run ended")
    print(f"ratio (with / without): {ratio:.3f}")
    path = save("subscriber", {"machine": machine(), "frames": args.frames, "sleep_s": args.sleep,
                               "without": base, "with_slow": slow, "ratio": ratio})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
