"""configs/fast.yaml: it validates, and runs a short clip end to end with every frame analysed.

Speed is measured by ``bench/pipeline_bench.py --profile fast``, never asserted here.
"""

from __future__ import annotations

import json

import av
import pytest

from auflow.engine.cli.demo import profile_path
from auflow.engine.config import default_config_path, load_config
from auflow.engine.errors import ConfigError


def test_fast_profile_validates_and_differs_from_default_where_it_says():
    path = profile_path("fast")
    assert path == default_config_path().with_name("fast.yaml")
    fast, default = load_config(path), load_config(None)
    assert fast.face.detector.name == "yunet_roi"
    assert fast.source.analyze_fps is None  # no frame is skipped
    assert [m.name for m in fast.analyzer.models] == [m.name for m in default.analyzer.models]
    assert {m.backend for m in fast.analyzer.models} == {"onnx"}
    # YuNet every 5th frame, optical flow between; the models side by side (the default detects every frame)
    assert fast.face.detector.options["detect_every"] == 5 and default.face.detector.options.get("detect_every", 1) == 1
    assert fast.analyzer.parallel_models and not default.analyzer.parallel_models
    with pytest.raises(ConfigError, match="fast"):
        profile_path("nonexistent")


@pytest.mark.slow
def test_fast_profile_runs_every_frame_of_a_short_clip(face_video, tmp_path, monkeypatch):
    pytest.importorskip("yuface", reason="the fast profile's detector is YuNet (CPython 3.10/3.11)")
    pytest.importorskip("onnxruntime")
    from auflow.engine import runner

    monkeypatch.setenv("AUFLOW_CACHE", str(tmp_path / "cache"))  # the ONNX exports of this run
    cfg = load_config(profile_path("fast"), ["publish.endpoint=null"])
    outcome = runner.run(cfg, [str(face_video)], run_dir=tmp_path / "run")
    with av.open(str(face_video)) as c:
        n = sum(1 for _ in c.decode(video=0))
    st = next(iter(outcome.stats.values()))
    assert st.frames_out == st.frames_in == n and st.reason == "end"
    results = [json.loads(line) for line in next((tmp_path / "run").glob("*.jsonl")).read_text().splitlines()]
    results = [m for m in results if m["type"] == "result"]
    assert [m["frame"] for m in results] == list(range(n))
    with_face = [m for m in results if m["faces"]]
    assert len(with_face) >= 0.9 * n
    face = with_face[-1]["faces"][0]
    assert set(face["expr"]) >= {"happiness", "neutral"} and abs(sum(face["expr"].values()) - 1) < 1e-2
    from helpers import starter_au

    assert len(face["au"]) == 17  # the starter's 17 AUs, whichever of student and teacher its gate chose
    assert with_face[-1]["models"]["au"] == starter_au()
