"""The streaming temporal stage: windows fused from per-track ring buffers equal the offline result
on the same frames (≤ 1e-5), causal and centred, with tracks that start, pause, end and come back;
and a run publishes `window` messages with valid seq ranges."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from auflow.engine import runner
from auflow.engine.config import load_config
from auflow.engine.errors import ConfigError
from auflow.engine.temporal import TemporalRunner, TemporalStage
from auflow.engine.types import EXPRESSIONS, FaceResults, Faces, FrameMeta, ModelInfo
from auflow.engine.wire import format as wire
from auflow.models import create_model
from auflow.plugins.analyzers.temporal_encoder import TemporalEncoder

SMALL = {"backbone": "small_conv", "input_size": 48, "dim": 32, "heads": 2, "patches": 3, "trs": 1}


def small_model(t: int):
    torch.manual_seed(t)
    m = create_model("arpgnet", num_frames=t, **SMALL)
    gen = torch.Generator().manual_seed(3)
    for mod in m.modules():  # non-trivial BN statistics, so eval mode is not an identity
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.normal_(0, 0.5, generator=gen)
            mod.running_var.uniform_(0.5, 2.0, generator=gen)
    return m.eval()


def fuse_fn(model):
    d = model.dim

    def fuse(w: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(w)
            return model.fuse(x[..., :d], x[..., d:]).numpy()

    return fuse


# -- the stream: which tracks are in which result ------------------------------------------------------
def presence(n_results: int) -> dict[int, list[int]]:
    """track -> the seqs of the results it is in."""
    return {
        1: [s for s in range(30) if not 10 <= s < 14],  # pauses 4 results, then is lost (evict_after=6)
        2: list(range(5, n_results)),  # starts late, ends with the session (eos)
        3: [7, 8],  # two frames only: every window padded
        4: list(range(12, 19)) + list(range(40, 47)),  # lost after 18, the same id comes back at 40: afresh
    }


def stream(n_results: int, dim2: int, seed: int = 0):
    """Per result: (seq, track ids, features); -1 faces (unconfirmed) interleaved."""
    rng = np.random.default_rng(seed)
    pres = presence(n_results)
    feats = {(tid, s): rng.normal(size=dim2).astype(np.float32) for tid, seqs in pres.items() for s in seqs}
    out = []
    for s in range(n_results):
        tids = [tid for tid in sorted(pres, reverse=s % 2 == 1) if s in pres[tid]]
        if s % 5 == 0:
            tids.insert(len(tids) // 2, -1)
        f = np.stack([feats.get((t, s), rng.normal(size=dim2).astype(np.float32)) for t in tids]) if tids else np.zeros((0, dim2), np.float32)
        out.append((s, np.array(tids, np.int64), f))
    return out, feats


def offline_windows(frames_seqs: list[int], t: int, stride: int, mode: str) -> list[tuple[int, list[int]]]:
    """The documented rule, restated on a whole track: anchors every `stride` frames from the first,
    plus the last frame; positions outside the track repeat its first / last frame."""
    n = len(frames_seqs)
    anchors = list(range(0, n, stride))
    if anchors[-1] != n - 1:
        anchors.append(n - 1)
    off = t - 1 if mode == "causal" else t // 2
    return [(frames_seqs[a], [frames_seqs[min(max(a - off + k, 0), n - 1)] for k in range(t)]) for a in anchors]


def track_segments(n_results: int, evict_after: int) -> list[tuple[int, list[int]]]:
    """(track, seqs) per life of a track: a gap of >= evict_after results ends a life."""
    out = []
    for tid, seqs in presence(n_results).items():
        life = [seqs[0]]
        for a, b in itertools.pairwise(seqs):
            if b - a > evict_after:
                out.append((tid, life))
                life = []
            life.append(b)
        out.append((tid, life))
    return out


def run_stream(runner_: TemporalRunner, items, mode: str):
    got = []
    for s, tids, f in items:
        for w in runner_.push("cam", "sid", s, tids, f, mode):
            got.append((s, w))
    got += [(None, w) for w in runner_.end_session("cam", "sid")]
    return got


# -- rules on a hand-worked case -------------------------------------------------------------------------
@pytest.mark.parametrize("mode, expected", [
    ("causal", [(0, [0, 0, 0, 0]), (2, [0, 0, 1, 2]), (6, [1, 2, 5, 6])]),
    ("centred", [(0, [0, 0, 0, 1]), (2, [0, 1, 2, 5]), (6, [2, 5, 6, 6])]),
])
def test_hand_worked_windows_across_a_pause(mode, expected):
    """T=4, stride 2; the track is in results 0, 1, 2, 5, 6 (absent from 3 and 4: a pause)."""
    seen = []

    def fuse(w):
        seen.append(w[:, :, 0].astype(int).tolist())
        return np.zeros((len(w), 2), np.float32)

    r = TemporalRunner(fuse, num_frames=4, stride=2, evict_after=3)
    got = []
    for s in range(7):
        tids = [9] if s in (0, 1, 2, 5, 6) else []
        f = np.full((len(tids), 2), s, np.float32)
        got += [(s, w) for w in r.push("c", "x", s, np.array(tids), f, mode)]
    got += [(None, w) for w in r.end_session("c", "x")]
    assert [(w.at_seq, w.seqs) for _, w in got] == expected
    assert [row for batch in seen for row in batch] == [seqs for _, seqs in expected]  # the features fused are those frames'
    if mode == "causal":  # published with its newest frame
        assert [s for s, _ in got] == [0, 2, 6]
    else:  # published with its last frame, or at the end
        assert [s for s, _ in got] == [1, 5, None]
    last = got[-1][1]
    assert (last.start_seq, last.end_seq, last.frames) == (expected[-1][1][0], 6, len(set(expected[-1][1])))
    assert r.tracks == {}


# -- streaming == offline ----------------------------------------------------------------------------
@pytest.mark.parametrize("t, stride", [(4, 1), (5, 2), (4, 3)])
@pytest.mark.parametrize("mode", ["causal", "centred"])
def test_streaming_windows_equal_offline_fusion(t, stride, mode):
    model = small_model(t)
    n_results, evict_after = 60, 6
    items, feats = stream(n_results, 2 * model.dim, seed=t * 10 + stride)
    r = TemporalRunner(fuse_fn(model), num_frames=t, stride=stride, evict_after=evict_after)
    got = run_stream(r, items, mode)

    expected = {}
    for tid, seqs in track_segments(n_results, evict_after):
        for at, wseqs in offline_windows(seqs, t, stride, mode):
            expected[(tid, at)] = wseqs
    assert sorted((w.track, w.at_seq) for _, w in got) == sorted(expected)
    assert len(got) == len(expected)  # no window twice
    worst = 0.0
    for _, w in got:
        assert w.seqs == expected[(w.track, w.at_seq)] and w.mode == mode
        x = torch.from_numpy(np.stack([feats[(w.track, s)] for s in w.seqs]))[None]
        with torch.no_grad():
            ref = model.fuse(x[..., :model.dim], x[..., model.dim:])[0].numpy()  # offline, one window alone
        worst = max(worst, float(np.abs(ref - w.probs).max()))
    assert worst <= 1e-5, worst
    # windows are published no later than they can be: causal with their anchor, centred with their last real frame
    for s, w in got:
        if s is None:
            continue
        flushed = s - w.end_seq == evict_after  # the track was just lost
        assert s == (w.at_seq if mode == "causal" else w.end_seq) or flushed
    assert r.tracks == {}  # every track evicted by the end


def test_fusion_runs_once_per_window_whatever_t():
    calls = []

    def fuse(w):
        calls.append(w.shape)
        return np.zeros((len(w), 3), np.float32)

    for t in (2, 8):
        calls.clear()
        r = TemporalRunner(fuse, num_frames=t, stride=4, evict_after=5)
        for s in range(40):
            r.push("c", "x", s, np.array([1]), np.zeros((1, 6), np.float32), "causal")
        r.end_session("c", "x")
        assert sum(b for b, _, _ in calls) == r.windows_run == 11  # anchors 0, 4, …, 36 and the last frame 39
        assert {shape[1:] for shape in calls} == {(t, 6)}


# -- the encoder in the analyzer: the full forward on the same crops -----------------------------------
@pytest.mark.parametrize("mode", ["causal", "centred"])
def test_stream_of_crops_equals_the_full_forward(mode):
    t = 4
    enc = TemporalEncoder(TemporalEncoder.Config(model="arpgnet", options={**SMALL, "num_frames": t}, batch=5))
    torch.manual_seed(0)
    enc.start()
    assert enc.num_frames == t and enc.card.kind == "untrained" and enc.info == ModelInfo("arpgnet", "untrained")
    assert enc.outputs == {} and enc.feature_dim == 2 * enc.dim  # features are no named output
    rng = np.random.default_rng(1)
    n = 11
    crops = {tid: rng.integers(0, 256, size=(n, 56, 56, 3), dtype=np.uint8) for tid in (1, 2)}  # resized to 48 by the card
    r = TemporalRunner(enc.fuse, num_frames=t, stride=2, evict_after=3)
    got = []
    for s in range(n):
        tids = [1, 2] if s not in (4, 5) else [2]  # track 1 pauses
        feats = enc.features(np.stack([crops[k][s] for k in tids]))  # batched across tracks
        got += r.push("cam", "sid", s, np.array(tids), feats, mode)
    got += r.end_session("cam", "sid")
    assert {w.track for w in got} == {1, 2}
    worst = 0.0
    for w in got:
        with torch.inference_mode():
            clip = enc.preprocess(np.stack([crops[w.track][s] for s in w.seqs]))[None]
            ref = enc.net(clip)[0].numpy()  # ARPGNet.forward on the window's crops
        worst = max(worst, float(np.abs(ref - w.probs).max()))
    assert worst <= 1e-5, worst


# -- the stage: features never published, windows carry provenance ------------------------------------
def test_stage_strips_features_and_marks_windows_untrained():
    cfg = load_config(None, ["temporal.enabled=true", f"temporal.options={json.dumps({**SMALL, 'num_frames': 2})}",
                             "temporal.stride=1", "temporal.checkpoint=null"]).temporal
    stage = TemporalStage(cfg, batch=4)
    stage.encoder.start()
    labels = {"expr": EXPRESSIONS}
    models = {"expr": ModelInfo("fer", "trained")}
    msgs = []
    for s in range(3):
        meta = FrameMeta("cam", "sid", s, None, (1, 25), 0, 64, 64)
        faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([7]))
        outs = {"expr": np.full((1, 7), 1 / 7, np.float32)}
        feats = stage.encoder.features(np.zeros((1, 48, 48, 3), np.uint8))
        clean, windows = stage.push(FaceResults(meta, faces, outs, labels, models, features=feats), s, live=True)
        result = wire.result_message(clean, s)
        assert set(result["models"]) == {"expr"} and set(result["faces"][0]) == set(wire.FACE_KEYS)
        assert clean.features is None and clean.outputs is outs  # features dropped, the rest untouched
        msgs += windows
    msgs += stage.end_session("cam", "sid")
    assert [(m["start_seq"], m["end_seq"], m["at_seq"]) for m in msgs] == [(0, 0, 0), (0, 1, 1), (1, 2, 2)]
    for m in msgs:
        assert wire.decode(wire.encode(m))["type"] == "window"
        assert m["models"] == {"expr": {"name": "arpgnet", "kind": "untrained"}} and m["mode"] == "causal"
        assert set(m["expr"]) == set(EXPRESSIONS) and "au" not in m
        assert abs(sum(m["expr"].values()) - 1) < 1e-3
    assert msgs[0]["padded"] == 1 and msgs[1]["padded"] == 0


def test_unknown_temporal_model_is_a_config_error():
    cfg = load_config(None, ["temporal.enabled=true", "temporal.model=no_such_model"]).temporal
    with pytest.raises(ConfigError, match="temporal.model"):
        TemporalStage(cfg)


# -- a run publishes windows --------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_run_publishes_window_messages_with_valid_seq_ranges(face_video, tmp_path):
    opts = json.dumps({**SMALL, "num_frames": 4})
    cfg = load_config(None, ["publish.endpoint=null", "analyzer.models=[]", "source.workers=thread",
                             "sinks=[{name: jsonl}]", "temporal.enabled=true", f"temporal.options={opts}",
                             "temporal.stride=3", "temporal.checkpoint=null"])  # untrained, not the shipped student
    out = tmp_path / "run"
    outcome = runner.run(cfg, [str(face_video)], run_dir=out)
    (cam,) = outcome.stats
    msgs = [json.loads(line) for line in (out / f"{cam}.jsonl").read_text().splitlines()]
    results = [m for m in msgs if m["type"] == "result"]
    windows = [m for m in msgs if m["type"] == "window"]
    eos = [m for m in msgs if m["type"] == "eos"]
    assert results and windows and len(eos) == 1
    assert all(set(r["models"]) <= {"au", "expr"} and set(r["faces"][0]) <= set(wire.FACE_KEYS) for r in results if r["faces"])
    seen = {(r["seq"], f["track"]) for r in results for f in r["faces"]}
    tracked = {tid for _, tid in seen if tid >= 0}
    assert tracked and {w["track"] for w in windows} == tracked
    last_seq = eos[0]["last_seq"]
    assert last_seq == len(results) - 1
    for w in windows:
        assert 0 <= w["start_seq"] <= w["at_seq"] <= w["end_seq"] <= last_seq
        assert (w["start_seq"], w["track"]) in seen and (w["end_seq"], w["track"]) in seen and (w["at_seq"], w["track"]) in seen
        assert w["mode"] == "centred" and w["frames"] + w["padded"] == 4  # a file: centred windows
        assert w["models"]["expr"] == {"name": "arpgnet", "kind": "untrained"}
    assert msgs.index(eos[0]) > max(msgs.index(w) for w in windows)  # flushed before the session's eos
    # every frame of a track lies in some window
    covered = {(s, w["track"]) for w in windows for s in range(w["start_seq"], w["end_seq"] + 1)}
    assert {x for x in seen if x[1] >= 0} <= covered


def test_fer_mean_beside_a_fer_analyzer_averages_its_output_instead_of_running_fer_again():
    """The fallback fusion (fer_mean) with fer already among the analyzer's models: the encoder encodes nothing,
    and each window is the mean of the `expr` rows of its frames (in the card's label order)."""
    from auflow.engine.config import ModelSpec, TemporalSection
    from auflow.engine.temporal import TemporalStage

    cfg = TemporalSection(enabled=True, checkpoint="starter:no_such_student", stride=1, mode="causal",
                          options={"num_frames": 3})
    stage = TemporalStage(cfg, batch=4, per_frame=[ModelSpec(name="fer", tta="flip")])
    stage.encoder.start()
    assert stage.encoder.reused == "expr" and stage.encoder.card.name == "fer_mean"
    assert stage.encoder.features(np.zeros((2, 112, 112, 3), np.uint8)).shape == (2, 0)
    labels = tuple(reversed(EXPRESSIONS))  # another order than the card's: the stage reorders
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(7), size=5).astype(np.float32)
    msgs = []
    for i, p in enumerate(rows):
        meta = FrameMeta("cam", "sid", i, i, (1, 25), 0, 64, 64)
        faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)), np.array([0]))
        res = FaceResults(meta, faces, {"expr": p[None]}, {"expr": labels}, {"expr": ModelInfo("fer", "trained")},
                          features=np.zeros((1, 0), np.float32))
        clean, w = stage.push(res, i, live=True)
        assert clean.features is None and set(clean.outputs) == {"expr"}
        msgs += w
    last = msgs[-1]  # the window ending at frame 4: frames 2, 3, 4
    want = rows[2:5].mean(axis=0)
    got = np.array([last["expr"][labels[j]] for j in range(7)])
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert last["models"]["expr"] == {"name": "fer_mean", "kind": "trained"}
