"""``face.device``: one batched face stage for every stream in the pipeline's process (the all-GPU
placement), run here on the CPU: the plumbing — frames from the workers, dynamic batches across
streams, per-stream tracking, session ends in order, a failing stream ending alone — against the
per-worker placement with the same detector and aligner. (On a GPU the same code runs with
``face.device: cuda``; tests/engine/pipeline/test_batched_face_stage.py holds the stage's own parity.)
"""

from __future__ import annotations

import numpy as np
import pytest
from stream_media import write_clip
from watched_run import WatchedRun, config

from auflow.engine.errors import ConfigError
from auflow.engine.pipeline.core import Pipeline
from auflow.engine.pipeline.batched_face_stage import BatchedFaceStage
from auflow.engine.sources import make_source

FRAMES = 12
RETINAFACE = ["face.detector={name: retinaface, max_side: 320}", "face.align={name: norm_crop, impl: numpy}",
              "source.workers=thread", "analyzer.models=[{name: fer}]"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("shared_faces")
    return [str(write_clip(d / "a.mp4", frames=FRAMES, face=True)),
            str(write_clip(d / "b.mp4", frames=FRAMES + 4, size=(288, 224), face=True))]


def _run(cfg, uris, run_dir) -> dict[str, list[dict]]:
    run = WatchedRun(cfg, uris, run_dir)
    with run:
        run.thread.join(180)
    assert run.error is None, run.error
    by_cam: dict[str, list[dict]] = {}
    for m in run.snapshot():
        if m["type"] in ("result", "eos"):
            by_cam.setdefault(m["cam"], []).append(m)
    return by_cam


def _results(msgs: list[dict]) -> list[dict]:
    return [m for m in msgs if m["type"] == "result"]


@pytest.mark.timeout(300)
def test_one_face_stage_for_every_stream_gives_the_per_worker_results(clips, tmp_path, monkeypatch):
    process, batches = BatchedFaceStage.process, []

    def recorded(self, frames, latency_ms=None):
        batches.append([(meta.cam, meta.frame) for meta, _ in frames])
        return process(self, frames, latency_ms)

    monkeypatch.setattr(BatchedFaceStage, "process", recorded)
    from auflow.engine.analyzer.core import Analyzer

    run, crop_types = Analyzer.run, set()

    def seen(self, items):
        crop_types.update(type(it.crops).__name__ for it in items)
        return run(self, items)

    monkeypatch.setattr(Analyzer, "run", seen)
    # two files at once, so the shared stage batches frames of both streams together
    per_worker = _run(config(*RETINAFACE, "source.parallel=2"), clips, tmp_path / "w")
    assert not batches and crop_types == {"ndarray"}  # the per-worker placement never builds the shared stage
    crop_types.clear()
    shared = _run(config(*RETINAFACE, "source.parallel=2", "face.device=cpu", "face.batch=4", "face.max_wait_ms=50"),
                  clips, tmp_path / "s")
    assert sorted(shared) == sorted(per_worker) == ["a", "b"]
    assert crop_types == {"Tensor"}  # fer takes tensors: the crops reached it without a copy to numpy
    assert max(len(b) for b in batches) <= 4 and any(len({cam for cam, _ in b}) == 2 for b in batches), batches
    for cam in ("a", "b"):  # each stream's frames reach the stage once each, in order
        assert [f for b in batches for c, f in b if c == cam] == list(range(FRAMES + 4 * (cam == "b")))
    for cam, n in (("a", FRAMES), ("b", FRAMES + 4)):
        ref, got = _results(per_worker[cam]), _results(shared[cam])
        assert [m["frame"] for m in got] == [m["frame"] for m in ref] == list(range(n))
        assert shared[cam][-1]["type"] == "eos" and shared[cam][-1]["reason"] == "end"  # after its last result
        assert sum(len(m["faces"]) for m in got) == n  # the drifting face, once a frame
        for r, g in zip(ref, got):
            assert [f["track"] for f in g["faces"]] == [f["track"] for f in r["faces"]]
            for fr, fg in zip(r["faces"], g["faces"]):
                np.testing.assert_allclose(fg["bbox"], fr["bbox"], atol=0.05)
                np.testing.assert_allclose(fg["kps"], fr["kps"], atol=0.05)
                # crops within a gray level of norm_crop's: the expression model sees the same face
                exprs = sorted(fr["expr"])
                np.testing.assert_allclose([fg["expr"][k] for k in exprs], [fr["expr"][k] for k in exprs], atol=0.02)
            assert {"detect", "track", "align", "analyze"} <= set(g["latency_ms"])


@pytest.mark.timeout(300)
def test_a_stream_whose_frame_breaks_the_face_stage_ends_alone(clips, tmp_path, monkeypatch):
    process = BatchedFaceStage.process

    def breaks_on_b(self, frames, latency_ms=None):
        if any(meta.cam == "b" and meta.frame == 3 for meta, _ in frames):
            raise RuntimeError("a frame it cannot take")
        return process(self, frames, latency_ms)

    monkeypatch.setattr(BatchedFaceStage, "process", breaks_on_b)
    got = _run(config(*RETINAFACE, "source.parallel=2", "face.device=cpu", "face.batch=4", "face.max_wait_ms=50"),
               clips, tmp_path / "s")
    a, b = got["a"], got["b"]
    assert [m["frame"] for m in _results(a)] == list(range(FRAMES)) and a[-1]["reason"] == "end"
    # b: the frames before the bad one, then one error; nothing after it
    assert [m["frame"] for m in _results(b)] == [0, 1, 2]
    assert b[-1]["type"] == "eos" and b[-1]["reason"] == "error"
    assert "face stage failed: RuntimeError: a frame it cannot take" in b[-1]["error"]


def test_the_shared_face_stage_needs_retinaface_and_norm_crop(clips, tmp_path):
    src = [make_source(clips[0], config().source)]
    with pytest.raises(ConfigError, match="retinaface"):
        Pipeline(config("face.device=cpu"), src, tmp_path)  # the default detector is yunet
    with pytest.raises(ConfigError):
        config("face.device=cpu", "face.batch=0")


@pytest.mark.timeout(300)
def test_the_gpu_profile_validates_and_its_placement_runs_here_on_the_cpu(clips, tmp_path):
    from auflow.engine.cli.demo import profile_path
    from auflow.engine.config import load_config

    gpu = load_config(profile_path("gpu"))
    assert gpu.face.device == "cuda" and gpu.face.detector.name == "retinaface" and gpu.source.workers == "thread"
    assert gpu.analyzer.device == "cuda" and {m.precision for m in gpu.analyzer.models} == {"fp16"}
    # the profile as it is, but on the CPU: fp32, yunet-free, the stage shared by both streams
    cpu = load_config(profile_path("gpu"), ["face.device=cpu", "face.detector.max_side=320", "analyzer.device=cpu",
                                            "analyzer.models=[{name: fer}]", "source.hwaccel=cpu", "source.parallel=2",
                                            "publish.endpoint=null", "sinks=[]"])
    got = _run(cpu, clips, tmp_path)
    assert [m["frame"] for m in _results(got["a"])] == list(range(FRAMES)) and got["a"][-1]["reason"] == "end"
    assert [m["frame"] for m in _results(got["b"])] == list(range(FRAMES + 4)) and got["b"][-1]["reason"] == "end"


@pytest.mark.timeout(300)
def test_a_live_stream_behind_a_slow_shared_stage_drops_old_frames_instead_of_queueing_them(tmp_path, monkeypatch):
    """A file played live (source.realtime, 25 fps) into a face stage that takes 0.2 s a batch: the workers keep
    only the newest frames, so the ones analysed are recent and the rest are counted as dropped. (With the
    files' deep queues, 32 frames in the worker's queue and 32 in the stage's, every one of these 50 frames
    would have waited its turn and none would have been dropped: the last ones seconds late.)"""
    import time

    process = BatchedFaceStage.process

    def slow(self, frames, latency_ms=None):
        time.sleep(0.2)
        return process(self, frames, latency_ms)

    monkeypatch.setattr(BatchedFaceStage, "process", slow)
    clip = str(write_clip(tmp_path / "live.mp4", frames=50, face=True))
    got = _run(config(*RETINAFACE, "face.device=cpu", "face.batch=1", "source.realtime=true"), [clip], tmp_path / "r")
    msgs = got["live"]
    frames, eos = [m["frame"] for m in _results(msgs)], msgs[-1]
    assert eos["type"] == "eos" and eos["reason"] == "end"
    # ~2 s of video at 0.2 s a frame: ~10 analysed plus the few in flight; every frame analysed or counted
    assert eos["dropped"] >= 20 and len(frames) + eos["dropped"] == 50, (len(frames), eos["dropped"])
    assert frames == sorted(frames) and frames[-1] == 49  # the newest frame is kept
