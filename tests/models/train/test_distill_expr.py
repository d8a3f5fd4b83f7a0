"""auflow distill with an expression student: arpgnet (paper 003) trained on windows of a track's
frames against fer's mean probabilities, windows that never straddle the held-out split, the
agreement measures, a tiny end-to-end distillation (resumed) from a cache on disk, and the shipped
student in the run's temporal stage (its windows say ``distilled``)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from auflow.engine.config import FaceSection, PluginSpec, load_config
from auflow.engine.temporal import TemporalStage
from auflow.engine.types import EXPRESSIONS, FaceResults, Faces, FrameMeta
from auflow.models import create_model, load_checkpoint
from auflow.models.train.distill import (
    DistillConfig,
    _resize_rgb,
    distill,
    expr_agreement,
    expr_windows,
    split_rows,
)
from auflow.plugins.analyzers.student import temporal_gate as starter_gate
from auflow.models.train.distill_cache import CACHE_VERSION, CachedVideo, video_key

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[parquet]')")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'auflow[parquet]')")

#: a tiny arpgnet: the small conv trunk on 32-px crops, T = 4
TINY = {"backbone": "small_conv", "input_size": 32, "dim": 16, "heads": 2, "patches": 3, "trs": 1, "num_frames": 4,
        "relation_layers": 1, "separate_relation_trunk": False}


# -- windows ----------------------------------------------------------------------------------------
def test_windows_are_consecutive_frames_of_one_track_on_one_side_of_the_split():
    fps, n = 10.0, 60
    frames = np.repeat(np.arange(n), 2)  # two faces per frame
    tracks = np.tile([3, 5], n)
    tracks[:6] = -1  # both unconfirmed in the first 3 frames: no history, as in the run
    rows = pd.DataFrame({"frame": frames, "timestamp": frames / fps, "track": tracks, "presence": np.ones(2 * n)})
    v = CachedVideo("v", {"video": "/v.mp4", "name": "v.mp4", "fps": fps}, rows, np.zeros((2 * n, 8, 8, 3), np.uint8))
    train, test, _ = split_rows([v], DistillConfig(segment_s=1.0, holdout_every=3, holdout_offset=1, gap_s=0.25))
    t = 4
    for idx in (train, test):
        w = expr_windows([v], idx, t)
        assert w.shape[1] == t and len(w)
        inside = set(idx[0].tolist())
        for win in w:
            assert set(win.tolist()) <= inside  # all T rows on this side: none straddles a held-out segment
            tid = set(tracks[win].tolist())
            assert len(tid) == 1 and tid.pop() >= 0
            assert np.all(np.diff(frames[win]) == 1)  # consecutive frames of the track (no gaps in this data)
    # every run of T consecutive training frames of a track is a window: 60 frames, segments 1 and 4 held out
    # (frames 10-19, 40-49), training frames less than 0.25 s from them dropped (8, 9, 20-22, 38, 39, 50-52),
    # frames 0-2 unconfirmed
    runs = [len(range(3, 8)), len(range(23, 38)), len(range(53, 60))]  # training frames of each track, per run
    assert len(expr_windows([v], train, t)) == 2 * sum(max(r - t + 1, 0) for r in runs)
    assert len(expr_windows([v], test, t)) == 2 * 2 * (10 - t + 1)


def test_expr_agreement_measures():
    labels = ("a", "b", "c")
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    student = np.array([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.2, 0.2, 0.6]])
    centre = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    a = expr_agreement(student, teacher, labels, centre)
    assert a["windows"] == 4 and a["top1"] == pytest.approx(0.75)  # the third window: b, teacher a
    assert a["majority_top1"] == pytest.approx(0.5)  # the teacher says a in 2 of 4
    assert a["top1_centre"] == pytest.approx(0.75)
    kl = np.sum(teacher * np.log(teacher / student), axis=1).mean()
    assert a["kl"] == pytest.approx(kl) and a["kl"] > 0
    assert a["mae"] == pytest.approx(np.abs(student - teacher).mean())
    assert a["per_class"]["a"] == {"teacher_top1": 2, "student_top1": 1, "agreement": 0.5,
                                   "teacher_mean": pytest.approx(0.4), "student_mean": pytest.approx(0.3)}
    assert a["per_class"]["c"]["agreement"] == 1.0
    assert expr_agreement(teacher, teacher, labels)["kl"] == pytest.approx(0.0, abs=1e-9)


# -- a tiny distillation from a cache on disk (the teachers never run) ----------------------------------
def _cached_clip(tmp_path, n=40, fps=10.0, size=32):
    """A 'video' whose teacher pass is already complete in OUT/cache: one track, the expression
    (fer's probabilities) changes every second and shows in the crops' brightness."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"never decoded: its cache is complete")
    out = tmp_path / "out"
    folder = out / "cache" / video_key(video)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, crops = [], []
    for f in range(n):
        cls = (f // int(fps)) % 3  # neutral, happiness, sadness, ...
        for face, tid in enumerate((1,)):
            p = np.full(7, 0.02)
            p[cls] = 0.88
            rows.append({"frame": f, "timestamp": f / fps, "face": face, "track": tid, "score": 0.9, "presence": 0.99,
                         "AU12": 0.1, **{f"expr_{e}": float(x) for e, x in zip(EXPRESSIONS, p)}})
            crops.append(np.clip(rng.normal(60 + 70 * cls, 20, (size, size, 3)), 0, 255).astype(np.uint8))
    pd.DataFrame(rows).to_parquet(folder / "part-00000.parquet", index=False)
    np.save(folder / "part-00000.npy", np.stack(crops))
    meta = {"version": CACHE_VERSION, "teachers": ["mediapipe_au", "fer"], "crop": {"size": size, "scale": 1.0},
            "video": str(video.resolve()), "name": video.name, "bytes": video.stat().st_size, "key": video_key(video),
            "fps": fps, "total_frames": n, "frames_done": n, "frames": n, "faces": n, "complete": True,
            "teacher": {"au": {"name": "mediapipe_au", "kind": "teacher"}, "expr": {"name": "fer", "kind": "trained"}},
            "au_labels": ["AU12"], "expr_labels": list(EXPRESSIONS), "min_presence": 0.5}
    (folder / "meta.json").write_text(json.dumps(meta))
    face = FaceSection(align=PluginSpec(name="norm_crop", size=size))
    return video, out, face


def test_tiny_arpgnet_distillation_end_to_end_and_resumed(tmp_path, train_seed):
    video, out, face = _cached_clip(tmp_path)
    # teachers: fer is added for arpgnet; AUFLOW_TEST_SEED: tests/models/conftest.py
    cfg = DistillConfig(model="arpgnet", options=TINY, epochs=2, batch_size=8, eval_every=0, segment_s=1.0,
                        holdout_every=3, holdout_offset=1, gap_s=0.0, seed=train_seed)
    first = distill([str(video)], out, cfg, face_cfg=face, stop_after_epochs=1)
    assert first.stopped and first.teacher_pass.frames_run == 0 and first.teacher_pass.skipped
    res = distill([str(video)], out, cfg, face_cfg=face)  # resumes at epoch 2
    assert res.resumed_from_epoch == 1 and not res.stopped and [h["epoch"] for h in res.history] == [1, 2]
    card, _ = load_checkpoint(res.checkpoint)
    t = card.training
    assert card.name == "arpgnet" and card.task == "expr" and card.kind == "distilled" and card.labels == EXPRESSIONS
    assert t["teacher"] == {"expr": {"name": "fer", "kind": "trained"}} and t["complete"]
    assert t["windows"]["num_frames"] == 4 and "mean of the teacher's probabilities" in t["windows"]["target"]
    # 4 one-second segments, number 1 held out: training runs of 10 and 20 frames (7 + 17 windows of 4) and
    # one held-out run of 10 (7)
    assert t["train_windows"] == 7 + 17 and t["heldout_windows"] == 7
    agree = t["agreement"]
    assert agree["windows"] == t["heldout_windows"] and 0.0 <= agree["top1"] <= 1.0 and agree["kl"] >= 0.0
    assert set(agree["per_class"]) == set(EXPRESSIONS)
    # the card's figures are the checkpoint's: the full forward on the held-out windows gives the same
    model = create_model("arpgnet", checkpoint=res.checkpoint).eval()
    cache = out / "cache" / video_key(video)
    rows = pd.read_parquet(cache / "part-00000.parquet")
    crops = np.load(cache / "part-00000.npy")
    v = CachedVideo("v", {"fps": 10.0}, rows, crops)
    _, test, _ = split_rows([v], cfg)
    win = expr_windows([v], test, 4)
    x = (_resize_rgb(crops, 32).float() / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        probs = model(x[torch.from_numpy(win)]).numpy()
    teacher = rows[[f"expr_{e}" for e in EXPRESSIONS]].to_numpy()[win].mean(axis=1)
    again = expr_agreement(probs, teacher, EXPRESSIONS)
    assert again["top1"] == pytest.approx(agree["top1"]) and again["kl"] == pytest.approx(agree["kl"], abs=1e-4)
    # in a run, a checkpoint named by path is the user's: its windows say so (the card keeps 'distilled')
    stage = TemporalStage(load_config(None, ["temporal.enabled=true", f"temporal.checkpoint={res.checkpoint}"]).temporal)
    stage.encoder.start()
    assert stage.encoder.kind == "user" and stage.encoder.card.kind == "distilled"


def test_expression_student_options_are_checked_before_the_teacher_pass(tmp_path):
    from auflow.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="labels"):
        distill([str(tmp_path / "missing.mp4")], tmp_path / "o", DistillConfig(model="arpgnet", options={**TINY, "labels": ["a", "b"]}))
    assert not (tmp_path / "o" / "cache").exists()


# -- the shipped student in the run's temporal stage ----------------------------------------------------
def _push_frames(stage, n=6):
    rng = np.random.default_rng(0)
    msgs = []
    for s in range(n):
        meta = FrameMeta("cam", "sid", s, None, (1, 25), 0, 112, 112)
        faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([0]))
        feats = stage.encoder.features(rng.integers(0, 256, (1, 112, 112, 3), dtype=np.uint8))
        res = FaceResults(meta, faces, {}, {}, {}, features=feats)
        msgs += stage.push(res, s, live=False)[1]
    return msgs + stage.end_session("cam", "sid")


def test_default_temporal_stage_runs_the_shipped_student_only_if_its_gate_passes():
    """The shipped arpgnet student learnt one woman on a time split: issue 18's gate (people held out) refuses it,
    so the windows fuse fer_mean — fer averaged over the same T frames, what the student was distilled to imitate —
    and say so; a student distilled with --holdout identity that agrees with fer would run as distilled."""
    cfg = load_config(None, ["temporal.enabled=true", "temporal.stride=2"]).temporal
    assert cfg.checkpoint == "starter:arpgnet_demo_student"
    stage = TemporalStage(cfg, batch=4)
    stage.encoder.start()
    from auflow.models.card import load_checkpoint
    from auflow.plugins.analyzers.student import starter_path

    card, _ = load_checkpoint(starter_path(cfg.checkpoint))
    assert card.training["teacher"]["expr"]["name"] == "fer" and card.training["agreement"]["top1"] >= 0.8
    ok, why = starter_gate(card)
    if card.training["split"]["mode"] == "time":  # the first starter: one woman, a time split
        assert not ok and "people absent from its training data" in why
    want = {"name": "arpgnet", "kind": "distilled"} if ok else {"name": "fer_mean", "kind": "trained"}
    msgs = _push_frames(stage)
    assert msgs and all(m["models"] == {"expr": want} for m in msgs)
    assert all(abs(sum(m["expr"].values()) - 1) < 1e-3 for m in msgs)
    if not ok:
        assert stage.encoder.num_frames == card.config["num_frames"]  # the student's own window length


def test_a_starter_that_fails_its_gate_falls_back_to_fer_averaged_and_says_why(caplog):
    """A missing or refused starter: the windows fuse fer's per-frame probabilities averaged over T (the teacher
    of the student), kind trained; a window of identical frames is fer on that frame."""
    cfg = load_config(None, ["temporal.enabled=true", "temporal.checkpoint=starter:no_such_student",
                             f"temporal.options={json.dumps(TINY)}"]).temporal
    stage = TemporalStage(cfg, batch=4)
    with caplog.at_level(logging.WARNING, logger="auflow.engine.temporal"):
        stage.encoder.start()
    assert stage.encoder.kind == "trained" and stage.encoder.card.name == "fer_mean" and "no_such_student" in caplog.text
    assert stage.encoder.num_frames == TINY["num_frames"] and "fer_mean" in caplog.text
    msgs = _push_frames(stage, 3)
    assert msgs and all(m["models"]["expr"] == {"name": "fer_mean", "kind": "trained"} for m in msgs)
    crop = np.full((1, 112, 112, 3), 128, np.uint8)
    feats = stage.encoder.features(crop)
    fused = stage.encoder.fuse(np.repeat(feats[None], TINY["num_frames"], axis=1))
    from auflow.engine.plugin import build
    from auflow.engine.registry import ANALYZERS

    fer = build(ANALYZERS, "model", {"model": "fer"})
    fer.start()
    np.testing.assert_allclose(fused[0], fer.analyze(crop)["expr"][0], atol=1e-5)
    from auflow.models.card import ModelCard

    people = {"mode": "identity", "heldout_people": ["ann", "bob"]}
    low = ModelCard(name="arpgnet", task="expr", labels=EXPRESSIONS, kind="distilled",
                    training={"complete": True, "agreement": {"top1": 0.6}, "teacher": {"expr": {"name": "fer"}},
                              "split": people})
    ok, why = starter_gate(low)
    assert not ok and "0.600 < 0.8" in why
    good = ModelCard(name="arpgnet", task="expr", labels=EXPRESSIONS, kind="distilled",
                     training={"complete": True, "agreement": {"top1": 0.9}, "teacher": {"expr": {"name": "fer"}},
                               "split": people})
    assert starter_gate(good) == (True, "held-out top-1 agreement with fer 0.900 >= 0.8 (2 held-out people)")
    good.training["split"] = {"mode": "time"}
    assert not starter_gate(good)[0]
