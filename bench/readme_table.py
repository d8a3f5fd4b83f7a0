"""Regenerate the figures tables of docs/benchmarks.md from bench/results/*.json (between the FIGURES markers).

    python bench/readme_table.py          # rewrites docs/benchmarks.md in place
    python bench/readme_table.py --check  # exit 1 if docs/benchmarks.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "benchmarks.md"  # the README links to it; the tables are too long for a first read
START, END = "<!-- FIGURES:START (bench/readme_table.py) -->", "<!-- FIGURES:END -->"


def machine_label(m: dict) -> str:
    """"AMD EPYC (25/17, AVX-512), 2 cores": the family/model numbers, recorded since 2026-12-04, tell VMs apart."""
    cpu = m.get("gpu") or m["cpu"]
    if not m.get("gpu") and m.get("cpu_family_model"):
        cpu += f" ({m['cpu_family_model']}{', AVX-512' if m.get('avx512') else ''})"
    return f"{cpu}, {m['cores']} cores"


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table: the header, its rule, a line per row (each cell as ``str`` gives it)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


PIPELINE_COLUMNS = ["date", "machine", "profile", "detector", "models", "decode only fps", "decode+detect fps",
                    "models only faces/s", "end-to-end fps", "e2e / decode+detect", "e2e fps incl. start-up",
                    "e2e latency p50/p95 ms", "face found", "expr = reference's", "reference e2e fps, same run"]
SOURCES_COLUMNS = ["date", "machine", "decoder", "size", "plain PyAV fps", "auflow source fps (1 stream)", "decode p50/p99 ms",
                   "streams", "total fps", "per-stream fps (min)", "load"]
SWEEP_COLUMNS = ["date", "machine", "profile", "streams", "played", "end-to-end fps (all streams)", "dropped",
                 "latency p50/p95/p99 ms", "no model: fps, latency p99 ms", "decode only fps", "verdict"]


def pipeline_row(r: dict) -> list:
    """A pipeline_bench run: its ceilings, end to end, and the agreement with the quality reference."""
    lat = r["end_to_end"]["latency_ms_capture_to_publish"]
    e2e = r["end_to_end"]
    face = f"{100 * e2e['frames_with_face'] / max(e2e['frames'], 1):.1f} %"
    # the quality reference: the default config until 2026-12-05 (against `fast`), the accurate profile since
    agree = r.get("expr_agreement_with_reference") or r.get("expr_agreement_with_default")
    ref = r.get("reference_profile", "default")
    ref_fps = (r.get("reference_end_to_end") or r.get("reference_default") or {}).get("fps", "-")
    agree = f"{100 * agree['ratio']:.1f} % ({ref})" if agree else "-"
    # since 2026-12-02 `fps` runs from the first decoded frame (as the ceilings); before, from the worker's spawn
    steady = e2e["fps"] if "fps_with_startup" in e2e else "-"
    ratio = r["ratio_e2e_to_decode_detect"] if "fps_with_startup" in e2e else "-"
    models = ", ".join(f"{m} ({r['backends'][m]})" if r.get("backends") else m for m in r["models"])
    return [r["date"], machine_label(r["machine"]), r.get("profile", "default"), r["detector"], models,
            r["decode_only"]["fps"], r["decode_detect"]["fps"], r["model_only"]["faces_per_s_all_models"], steady,
            ratio, e2e.get("fps_with_startup", e2e["fps"]), f"{lat.get('p50')}/{lat.get('p95')}", face, agree, ref_fps]


def sources_row(r: dict, run: dict, c: dict) -> list:
    """One clip size of a sources_bench run, with one of its concurrent-stream figures (``c``, or {})."""
    one, dec = run["auflow_1"], run["auflow_1"].get("decode_ms", {})
    return [r["date"], machine_label(r["machine"]), one.get("decoder", r.get("hwaccel")), run["size"],
            run["pyav_plain"]["fps"], one["fps"], f"{dec.get('p50')}/{dec.get('p99')}", c.get("streams", ""),
            c.get("total_fps", ""), c.get("per_stream_fps_min", ""), r.get("load_average_1m", "")]


def sweep_row(r: dict, row: dict) -> list:
    """One stream count of a --streams or --live-streams sweep, against its no-model (and decode-only) ceiling."""
    e, c = row["end_to_end"], row["ceiling_no_models"]
    lat, clat = e["latency_ms_capture_to_publish"] or {}, c["latency_ms_capture_to_publish"] or {}
    live = row.get("realtime", False)
    dec = row.get("decode_only", {})
    verdict = (f"live (no drop, p99 ≤ {row.get('p99_ms', 100):g} ms)" if e.get("live") else "not live") if live else \
        f"e2e / no model {row['ratio_to_ceiling']}" + (f", / decode only {row['ratio_to_decode_only']}" if dec else "")
    return [r["date"], machine_label(r["machine"]), r.get("profile", "default"), row["streams"],
            "at the clip rate" if live else "as fast as they go", e["fps_total"], e.get("dropped", "-"),
            f"{lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')}", f"{c['fps_total']}, {clat.get('p99')}",
            dec.get("fps_total", "-"), verdict]


def render() -> str:
    every = sorted((json.loads(p.read_text()) for p in (ROOT / "bench/results").glob("pipeline-*.json")
                    if "-set-" not in p.stem), key=lambda r: r["date"])  # --set runs are experiments
    results = [r for r in every if "end_to_end" in r]  # --sweep-only runs have only the sweep table's figures
    sweeps = [r for r in every if r.get("streams_sweep") or r.get("live_sweep")]
    intro = ("Measured by `make bench` (`bench/pipeline_bench.py`; `--profile NAME` for another profile; `--streams 1,2,4` "
             "adds N concurrent copies of the clip, end to end and with no model as their ceiling) on the demo clip "
             "(472 frames, 640×360), all stages in the same run; *expr = reference's* is the share of frames whose dominant "
             "expression equals the quality reference's from the same run (full resolution, every frame detected: the "
             "`accurate` profile since 2026-12-05, when the `fast` profile became the default; the default config before). "
             "*End-to-end fps* runs "
             "from the first decoded frame to the last result published, as the ceilings are timed (their set-up untimed), "
             "and *e2e / decode+detect* divides it by the ceiling; *incl. start-up* counts from the stream worker's spawn "
             "(its imports, opening the file, the detector's set-up) — the only end-to-end figure before 2026-12-02 "
             "(those rows show '-' for the first two). JSON in `bench/results/`.")
    body = [intro, "", markdown_table(PIPELINE_COLUMNS, [pipeline_row(r) for r in results]) if results else "(no results yet)"]
    if sweeps:
        body += ["", "Several streams at once (`--streams N,...`: N copies of the clip as fast as they go, against the same N "
                 "with no model and only decoded; `--live-streams N,...`: N copies each played at the clip's 23.98 fps as a "
                 "camera would deliver it, `source.realtime`, latency from when each frame was due to its result's publication; "
                 "*live* = no frame dropped and p99 ≤ 100 ms; fps = frames of all streams / the run's wall time, the streams' "
                 "start-up included):", "",
                 markdown_table(SWEEP_COLUMNS, [sweep_row(r, row) for r in sweeps
                                                for row in r.get("streams_sweep", []) + r.get("live_sweep", [])])]
    sources = sorted((json.loads(p.read_text()) for p in (ROOT / "bench/results").glob("sources-*.json")), key=lambda r: r["date"])
    if sources:
        body += ["", "Sources (`bench/sources_bench.py`: generated H.264 clips, decode + conversion to BGR only; several "
                 "streams run each in its own spawned process, as the pipeline's workers):", "",
                 markdown_table(SOURCES_COLUMNS, [sources_row(r, run, c) for r in sources for run in r["runs"]
                                                  for c in run.get("concurrent") or [{}]])]
    return START + "\n" + "\n".join(body) + END


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = TARGET.read_text()
    name = TARGET.relative_to(ROOT) if TARGET.is_relative_to(ROOT) else TARGET
    if START not in text or END not in text:
        sys.exit(f"{name} has no {START} … {END} block")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    new = before + render() + after
    if args.check:
        if new != text:
            sys.exit(f"{name}'s figures are out of date: run `python bench/readme_table.py`")
        return
    TARGET.write_text(new)


if __name__ == "__main__":
    main()
