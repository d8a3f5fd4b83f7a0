"""Archives on Ray against one plain `auflow run`: videos/hour and frames/s for 1, 2, 4 local Ray
worker nodes, and Ray's own overhead per video measured apart from the pipeline's work.

    python bench/ray_bench.py [--videos 8] [--frames 60] [--nodes 1 2 4]

Every mode runs the same videos (generated clips of a real face) with the same config, as the same
command a user types (`auflow run FOLDER [--executor ray --ray-address ADDR]`, a fresh process each,
wall time from its start to its exit). The Ray clusters are `ray.cluster_utils.Cluster`s on this
machine: a head with no CPUs and N worker nodes of `num_cpus=1` each; starting one is timed apart.

What this measures on one machine, and what it cannot: N nodes here share this machine's cores, so
with more nodes than cores the videos only take turns; the figure that carries over to a real
cluster is Ray's cost per video (scheduling a task, starting a worker process once per node, the
task's own bookkeeping), which is measured here directly: a no-op task's round trip, and each video's
task time minus its pipeline time. Scaling on N real machines is then roughly N times one node's
rate, less that cost per video — docs/scale-out.md works it out. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # helpers.write_face_video

from common import machine, markdown_table, percentiles, save  # noqa: E402

AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]
OVERRIDES = ["publish.endpoint=null", "analyzer.models=[{name: fer}]", "source.workers=thread", "sinks=[{name: jsonl}]"]
MIB = 2**20


def make_videos(folder: Path, n: int, frames: int) -> list[Path]:
    from helpers import write_face_video

    folder.mkdir(parents=True, exist_ok=True)
    return [write_face_video(folder / f"clip{i:02d}.mp4", frames=frames) for i in range(n)]


def run_cli(folder: Path, out: Path, *extra: str) -> dict:
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    t0 = time.perf_counter()
    r = subprocess.run([*AUFLOW, "run", str(folder), "--out", str(out), *sets, *extra], capture_output=True, text=True,
                       env=dict(os.environ, COLUMNS="200"))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"auflow run failed ({r.returncode}): {r.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    frames = sum(s["frames"] for s in summary["streams"].values())
    videos = len(summary["streams"])
    return {"wall_s": round(wall, 2), "videos": videos, "frames": frames, "videos_per_hour": round(videos * 3600 / wall, 1),
            "fps": round(frames / wall, 2), "summary": summary}


def noop_round_trips(address: str, n: int = 40) -> dict:
    """Ray's scheduling cost alone: a task that does nothing, submitted and awaited one at a time."""
    import ray

    ray.init(address=address, logging_level="WARNING", configure_logging=False)
    try:
        @ray.remote(num_cpus=1)
        def noop() -> None:
            return None

        for _ in range(5):  # a worker process per node started and warm
            ray.get(noop.remote())
        ms = []
        for _ in range(n):
            t = time.perf_counter()
            ray.get(noop.remote())
            ms.append((time.perf_counter() - t) * 1e3)
        return {"n": n, **percentiles(ms)}
    finally:
        ray.shutdown()


def per_video_overhead(summary: dict) -> dict:
    """From the run's placement records (each task times itself, node by node in start order):
    - Ray's bookkeeping per video: the task's time outside the per-video run (config, work folder, outputs
      moved into place);
    - the per-video run (`run_s`): its pipeline's start-up — models loaded again for every video, which a
      local batch does once — and its frames; the first video of each worker process also imports torch and
      the models' code: `first_run_s` against `later_run_s`."""
    place = summary["placement"]
    outside = [(p["task_s"] - p["run_s"]) * 1e3 for p in place.values()]
    by_node: dict[str, list[dict]] = {}
    for p in sorted(place.values(), key=lambda p: p["queued_s"]):
        by_node.setdefault(p["node"][:8], []).append(p)
    first = [v[0]["run_s"] for v in by_node.values()]
    later = [p["run_s"] for v in by_node.values() for p in v[1:]]
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
    return {"task_outside_run_ms": percentiles(outside), "first_run_s": mean(first), "later_run_s": mean(later),
            "pipeline_s_mean": mean([p["pipeline_s"] for p in place.values()]),
            "queued_s_max": max(p["queued_s"] for p in place.values()),
            "videos_per_node": {n: len(v) for n, v in by_node.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()

    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short (unix sockets); keeps /tmp/ray untouched
    os.environ["RAY_TMPDIR"] = ray_tmp
    load_before = os.getloadavg()
    try:
        folder = work / "videos"
        make_videos(folder, args.videos, args.frames)
        rows, modes = [], {}
        local = run_cli(folder, work / "local")
        modes["local"] = {k: v for k, v in local.items() if k != "summary"}
        rows.append({"mode": "auflow run (local, 1 video at a time)", **modes["local"]})
        for n in args.nodes:
            t0 = time.perf_counter()
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "object_store_memory": 100 * MIB, "include_dashboard": False})
            for _ in range(n):
                cluster.add_node(num_cpus=1, object_store_memory=100 * MIB)
            cluster.wait_for_nodes()
            start_s = time.perf_counter() - t0
            try:
                res = run_cli(folder, work / f"ray{n}", "--executor", "ray", "--ray-address", cluster.address)
                noop = noop_round_trips(cluster.address)
            finally:
                cluster.shutdown()
            key = f"ray_{n}_nodes"
            modes[key] = {**{k: v for k, v in res.items() if k != "summary"}, "cluster_start_s": round(start_s, 2),
                          "noop_task_round_trip_ms": noop, **per_video_overhead(res["summary"])}
            rows.append({"mode": f"--executor ray, {n} node(s) of num_cpus=1", **modes[key]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
        "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "videos": args.videos, "frames_per_video": args.frames, "video": "320x240 generated clip of a real face",
        "config": OVERRIDES, "modes": modes,
        "note": ("N local nodes share this machine's cores: with more nodes than cores videos take turns, so the node "
                 "count here shows Ray's overhead, not the scaling of N machines"),
    }
    path = save("ray", payload)
    for r in rows:
        r["Ray bookkeeping ms p50"] = r.get("task_outside_run_ms", {}).get("p50", "-")
        r["no-op task ms p50"] = r.get("noop_task_round_trip_ms", {}).get("p50", "-")
    print(markdown_table(rows, ["mode", "wall_s", "videos_per_hour", "fps", "cluster_start_s", "first_run_s", "later_run_s",
                                "pipeline_s_mean", "Ray bookkeeping ms p50", "no-op task ms p50"]))
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
