"""Shared by the benchmarks: machine description, percentiles, result files, markdown tables."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """What the figures ran on. VMs often name their CPU only "AMD EPYC": the family/model numbers and
    AVX-512 tell generations apart (25/17 is Zen 4), and one generation can run these benches twice as fast."""
    cpu, fields, flags = platform.processor() or "", {}, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value
            elif key == "flags" and not flags:
                flags = value
            if len(fields) == 3 and flags:
                break
        cpu = fields.get("model name", cpu)
    except OSError:
        pass
    info = {"host": platform.node(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}
    if "cpu family" in fields:
        info["cpu_family_model"] = f"{fields['cpu family']}/{fields.get('model', '?')}"
        info["avx512"] = "avx512f" in flags.split()
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def machine_tag(info: dict) -> str:
    kind = info.get("gpu") or f"cpu{info['cores']}"
    return "".join(c if c.isalnum() else "-" for c in kind).strip("-").lower()


def timed(fn, iters: int, device: str, warmup: int = 3) -> list[float]:
    """Milliseconds of each of ``iters`` calls of ``fn`` after ``warmup`` untimed ones (CUDA synchronised)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {}
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "p99": round(float(np.percentile(a, 99)), 2)}


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = machine_tag(payload["machine"])
    stem = f"{name}-{tag}-{time.strftime('%Y%m%d')}"
    path, k = RESULTS / f"{stem}.json", 1
    while path.exists():  # a second run the same day is kept beside the first, never over it
        k += 1
        path = RESULTS / f"{stem}-{k}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)
