"""The default config (the former `fast` profile) and configs/accurate.yaml: both validate, differ where
they say, and the default runs a short clip end to end with every frame analysed.

Speed is measured by ``bench/pipeline_bench.py``, accuracy against accurate by
``bench/detect_every_study.py --every 0 --candidate default``; neither is asserted here.
"""

from __future__ import annotations

import json

import av
import pytest

from auflow.engine.cli.demo import profile_path
from auflow.engine.config import default_config_path, load_config
from auflow.engine.errors import ConfigError


def test_the_default_is_the_fast_settings_and_accurate_detects_every_frame_at_full_resolution():
    path = profile_path("accurate")
    assert path == default_config_path().with_name("accurate.yaml") and profile_path(None) is None
    default, accurate = load_config(None), load_config(path)
    assert default.face.detector.name == "yunet_roi" and accurate.face.detector.name == "yunet"
    assert default.source.analyze_fps is None and accurate.source.analyze_fps is None  # no frame is skipped
    assert [m.name for m in default.analyzer.models] == [m.name for m in accurate.analyzer.models]
    # YuNet every 5th frame, optical flow between; the models side by side; accurate: every frame, one after the other
    assert default.face.detector.options["detect_every"] == 5 and accurate.face.detector.options.get("detect_every", 1) == 1
    assert accurate.face.detector.options["max_side"] == 640
    assert default.analyzer.parallel_models and not accurate.analyzer.parallel_models
    # both cut the context crop the AU teacher tracks each person's landmark ROI in
    assert default.face.context == accurate.face.context and default.face.context.size == 256
    with pytest.raises(ConfigError, match="accurate.*is the default config"):
        profile_path("fast")


@pytest.mark.slow
def test_the_default_runs_every_frame_of_a_short_clip(face_video, tmp_path, monkeypatch):
    pytest.importorskip("yuface", reason="the default's detector is YuNet (CPython 3.10/3.11)")
    pytest.importorskip("onnxruntime")
    from auflow.engine import runner

    monkeypatch.setenv("AUFLOW_CACHE", str(tmp_path / "cache"))  # the ONNX exports of this run
    cfg = load_config(None, ["publish.endpoint=null"])
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
