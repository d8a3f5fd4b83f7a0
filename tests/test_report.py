"""`auflow report RUN_DIR`: one self-contained HTML page with the run's plots."""

from __future__ import annotations

import base64
import json
import re

import pytest
from typer.testing import CliRunner

from auflow.engine.cli.main import app
from auflow.engine.cli.report_cmd import ReportError, build_report
from auflow.plugins.sinks.jsonl import JsonlSink
from fake_messages import fake_run
from auflow.engine.plugin import StartContext

pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[parquet]')")
pytest.importorskip("matplotlib", reason="matplotlib is not installed")


def _run_dir(tmp_path, cams=("cam1",)):
    sink = JsonlSink()
    sink.start(StartContext(run_dir=tmp_path))
    for cam in cams:
        for m in fake_run(cam, sid=f"sid-{cam}", frames=40):
            sink.write(m)
    sink.stop()
    (tmp_path / "summary.json").write_text(json.dumps(
        {"wall_s": 2.0, "streams": {c: {"uri": f"/videos/{c}.mp4", "frames": 40, "fps": 24.1, "end": "end"} for c in cams},
         "failed": {}}))
    return tmp_path


def test_cli_writes_a_self_contained_page(tmp_path):
    run = _run_dir(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # faces per frame, fps + latency, and one AU/expression figure per track (tracks 0 and 3)
    assert len(images) == 4
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "Track 0" in page and "Track 3" in page
    assert "Untrained output" in page  # the fake run's AU model is marked untrained: the page says so
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_strings_from_the_run_are_escaped(tmp_path):
    run = _run_dir(tmp_path, cams=("cam<script>x",))
    page = build_report(run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "cam&lt;script&gt;x" in page


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ReportError, match="no results"):
        build_report(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "not a run directory" in result.output


def test_a_run_with_only_csv_still_gets_the_track_plots(tmp_path):
    from auflow.plugins.sinks.csv import CsvSink

    sink = CsvSink()
    sink.start(StartContext(run_dir=tmp_path))
    for m in fake_run("cam1", frames=20):
        sink.write(m)
    sink.stop()
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert "Track 0" in page and len(re.findall(r"data:image/png;base64,", page)) == 2  # tracks 0 and 3


def test_fused_windows_get_their_own_strip_and_unsupported_aus_are_named(tmp_path):
    """A run with `window` messages: each track's figure gains a 'fused' strip (taller image), the page names the
    fusion model and its kind; an output's unsupported labels are listed beside its model."""
    plain = _run_dir(tmp_path / "a")
    with_windows = tmp_path / "b"
    sink = JsonlSink()
    sink.start(StartContext(run_dir=with_windows))
    msgs = fake_run("cam1", sid="sid-cam1", frames=40)
    results = [m for m in msgs if m["type"] == "result"]
    for m in results:
        m["models"]["au"]["unsupported"] = ["AU06"]
    for m in msgs:
        sink.write(m)
        if m["type"] == "result" and m["seq"] % 4 == 0:
            for f in m["faces"]:
                if f["track"] >= 0:
                    sink.write({"v": 1, "type": "window", "cam": "cam1", "sid": "sid-cam1", "t_publish_ns": 0,
                                "track": f["track"], "start_seq": m["seq"], "end_seq": m["seq"], "at_seq": m["seq"],
                                "mode": "centred", "frames": 1, "padded": 0, "missing": 0,
                                "expr": {"happiness": 0.7, "neutral": 0.3},
                                "models": {"expr": {"name": "arpgnet", "kind": "untrained"}}})
    sink.stop()
    (with_windows / "summary.json").write_text((plain / "summary.json").read_text())
    pa = build_report(plain, tmp_path / "a.html").read_text(encoding="utf-8")
    pb = build_report(with_windows, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "fused expr (windows)" in pb and "arpgnet (untrained)" in pb and "fused expr (arpgnet)" in pb
    assert "not measured (null): AU06" in pb and "(windows)" not in pa

    def heights(page):
        import io

        from PIL import Image

        imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
        return [Image.open(io.BytesIO(base64.b64decode(b))).size[1] for b in imgs]

    ha, hb = heights(pa), heights(pb)
    assert len(ha) == len(hb) and hb[-1] > ha[-1] and hb[-2] > ha[-2]  # the two track figures, one strip taller
