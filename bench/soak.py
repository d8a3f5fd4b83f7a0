"""Soak: `auflow run` on 4 live streams for a long time, watching its resources and its stream.

    python bench/soak.py                      # 30 minutes (the figures of docs/reliability.md)
    python bench/soak.py --minutes 3 --kill-every 1 --warmup 1    # a short look

Streams: 3 face videos played with ``--realtime`` (each a short clip remuxed end to end into one file
longer than the soak, so they never end) and the local RTSP server of the tests, killed and restarted
every ``--kill-every`` minutes. The run is the CLI as a user starts it, publishing on ZeroMQ to a
subscriber in this process. Every ``--sample`` seconds: the run's RSS (its own and with its worker
processes), open fds, threads and child processes. Counted: results, results lost (seq gaps seen by the
subscriber), frames dropped (live queues, from status/eos), sessions per camera, RTSP kills and whether
each was followed by a new session with results. Reported: RSS growth from the end of the warm-up to
the end, fd/thread/process ranges after the warm-up. JSON in bench/results/soak-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))  # helpers.write_face_video
sys.path.insert(0, str(ROOT / "tests" / "engine" / "sources"))  # stream_servers.RtspServer


def loop_video(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` remuxed end to end (no re-encoding: packets with shifted timestamps) until ``dst`` lasts
    ``seconds``: a file that outlasts the soak, for a stream that never ends."""
    import av

    with av.open(str(src)) as inp:
        packets = [p for p in inp.demux(inp.streams.video[0]) if p.size]
        in_stream = inp.streams.video[0]
        span = max(p.pts for p in packets) + (packets[1].duration or 1 if len(packets) > 1 else 1)
        clip_s = float(span * in_stream.time_base)
        with av.open(str(dst), "w") as out:
            stream = out.add_stream_from_template(in_stream)
            for k in range(int(seconds / clip_s) + 1):
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts, q.dts = p.pts + k * span, p.dts + k * span
                    q.time_base, q.is_keyframe, q.stream = p.time_base, p.is_keyframe, stream
                    out.mux(q)
    return dst


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _read(f"/proc/{entry}/stat").rsplit(")", 1)
            if len(fields) == 2 and int(fields[1].split()[1]) == pid and fields[1].split()[0] != "Z":
                kids.append(int(entry))
    return kids


def rss_mb(pid: int) -> float:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(pid: int) -> dict:
    kids = children_of(pid)
    threads = next((int(line.split()[1]) for line in _read(f"/proc/{pid}/status").splitlines()
                    if line.startswith("Threads:")), 0)
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = 0
    return {"rss_mb": round(rss_mb(pid), 1), "rss_total_mb": round(rss_mb(pid) + sum(rss_mb(k) for k in kids), 1),
            "fds": fds, "threads": threads, "children": len(kids)}


class Watcher(threading.Thread):
    """Subscribes to every message of the run; counts what the soak reports."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="soak-subscriber", daemon=True)
        from auflow.engine.wire.subscriber import Subscriber

        self.sub = Subscriber(endpoint, count_missed_start=False)
        self.stop = threading.Event()
        self.results: dict[str, int] = defaultdict(int)
        self.first_seen: dict[tuple[str, str], float] = {}  # (cam, sid) -> monotonic time of its first result
        self.eos: dict[str, list[str]] = defaultdict(list)
        self.dropped: dict[tuple[str, str], int] = {}  # (cam, sid) -> latest dropped count
        self.reconnecting = defaultdict(int)

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.sub.recv(0.5)
            if msg is None:
                continue
            h, key = msg.header, (msg.cam, msg.sid)
            if msg.type == "result":
                self.results[msg.cam] += 1
                self.first_seen.setdefault(key, time.monotonic())
            elif msg.type in ("status", "eos"):
                self.dropped[key] = max(self.dropped.get(key, 0), int(h.get("dropped") or 0))
                if msg.type == "eos":
                    self.eos[msg.cam].append(h.get("reason"))
                elif h.get("state") == "reconnecting":
                    self.reconnecting[msg.cam] += 1
        self.sub.close()


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else 0.0


def main() -> None:
    from common import machine, save
    from helpers import free_port, write_face_video

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--kill-every", type=float, default=5.0, help="minutes between RTSP server kills")
    ap.add_argument("--down", type=float, default=3.0, help="seconds the RTSP server stays down")
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes before the resource baseline is taken")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--config", default=None, help="config file (default: the packaged default config)")
    ap.add_argument("--set", action="append", default=[], help="extra --set for the run")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    from stream_servers import RtspServer, rtsp_unavailable

    why_no_rtsp = rtsp_unavailable()
    load0 = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_face_video(tmp / "clip.mp4", frames=250)
        videos = [loop_video(clip, tmp / f"stream{i}.mp4", args.minutes * 60 + 120) for i in range(1, 4 if not why_no_rtsp else 5)]
        server = None
        uris = [str(v) for v in videos]
        if not why_no_rtsp:
            server = RtspServer(free_port(), "live")
            server.start()
            uris.append(server.url)
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        watcher = Watcher(endpoint)
        watcher.start()
        out_dir = tmp / "run"
        cmd = [sys.executable, "-m", "auflow.engine.cli.main", "run", *uris, "--realtime", "--out", str(out_dir),
               "--publish", endpoint, "--set", f"source.parallel={len(videos)}", "--set", "source.reconnect.max_s=5",
               *(["--config", args.config] if args.config else []), *[x for s in args.set for x in ("--set", s)]]
        run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=dict(os.environ, COLUMNS="200"))
        stderr_lines: list[str] = []
        threading.Thread(target=lambda: stderr_lines.extend(run.stderr), daemon=True).start()
        t0 = time.monotonic()
        samples, kills = [], []
        next_sample, next_kill = t0, t0 + args.kill_every * 60
        end = t0 + args.minutes * 60
        try:
            while time.monotonic() < end and run.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append({"t_s": round(now - t0, 1), **sample(run.pid),
                                    "results": sum(watcher.results.values())})
                    print(json.dumps(samples[-1]), flush=True)
                    next_sample += args.sample
                if server is not None and now >= next_kill and now + 30 < end:
                    server.kill()
                    kills.append(now)
                    time.sleep(args.down)
                    server.start()
                    print(f"rtsp server killed at {now - t0:.0f} s, back after {args.down:.0f} s", flush=True)
                    next_kill += args.kill_every * 60
                time.sleep(0.2)
            crashed = run.poll()
            os.killpg(run.pid, signal.SIGINT)
            rc = run.wait(120)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            if server is not None:
                server.kill()
        time.sleep(1.0)
        watcher.stop.set()
        watcher.join(5)
        summary = json.loads((out_dir / "summary.json").read_text()) if (out_dir / "summary.json").exists() else {}
    wall = time.monotonic() - t0
    warm = [s for s in samples if s["t_s"] >= args.warmup * 60] or samples
    base, last = warm[:3], warm[-3:]
    growth = {k: round(100 * (median([s[k] for s in last]) / max(median([s[k] for s in base]), 1e-9) - 1), 2)
              for k in ("rss_mb", "rss_total_mb")}
    rtsp_cam = next((c for c in summary.get("streams", {}) if c.startswith("127.0.0.1_")), None)
    reconnected = []
    for tk in kills:
        later = [t for (cam, sid), t in watcher.first_seen.items() if cam == rtsp_cam and t > tk + args.down]
        reconnected.append(round(min(later) - tk, 1) if later else None)
    out = {
        "machine": machine(), "minutes": args.minutes, "wall_s": round(wall, 1), "warmup_min": args.warmup,
        "sample_s": args.sample, "streams": uris if not server else [*uris[:-1], "rtsp://127.0.0.1:<port>/live"],
        "config": args.config or "default", "set": args.set, "load_average_1min": [load0, round(os.getloadavg()[0], 2)],
        "rtsp": why_no_rtsp or "local GStreamer server", "run_exit": rc, "run_crashed_before_end": crashed,
        "run_errors": [ln.strip() for ln in stderr_lines if "error" in ln.lower()][-10:],
        "traceback": any("Traceback" in ln for ln in stderr_lines),
        "rss_growth_pct_after_warmup": growth,
        "after_warmup": {k: [min(s[k] for s in warm), max(s[k] for s in warm)] for k in ("rss_mb", "rss_total_mb", "fds",
                                                                                        "threads", "children")},
        "results": dict(watcher.results), "lost_results": watcher.sub.gaps.lost,
        "dropped_frames": {cam: sum(v for (c, _), v in watcher.dropped.items() if c == cam) for cam in watcher.results},
        "sessions": {cam: sum(1 for (c, _) in watcher.first_seen if c == cam) for cam in watcher.results},
        "eos_reasons": {cam: dict((r, v.count(r)) for r in set(v)) for cam, v in watcher.eos.items()},
        "rtsp_kills": len(kills), "rtsp_reconnect_after_kill_s": reconnected,
        "every_kill_reconnected": all(r is not None for r in reconnected),
        "summary_streams": {cam: {k: st.get(k) for k in ("frames", "dropped", "sessions", "end", "error")}
                            for cam, st in summary.get("streams", {}).items()},
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    if not args.no_save:
        print("saved", save("soak", out))


if __name__ == "__main__":
    main()
