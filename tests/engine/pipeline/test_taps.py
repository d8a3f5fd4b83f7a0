"""``Pipeline(taps=...)``: what a caller sees beside the wire (the distillation teacher pass writes its
cache so), and ``Source.start_frame`` (a pass resumed where it stopped)."""

from __future__ import annotations

import numpy as np
import pytest
from stream_media import write_clip
from watched_run import config

from auflow.engine.contracts import FaceTap
from auflow.engine.pipeline.core import Pipeline
from auflow.engine.sources import make_source

FRAMES = 10


class Recorder:
    def __init__(self) -> None:
        self.frames: dict[str, list[int]] = {}
        self.crops: list[tuple[int, tuple]] = []
        self.ends: list = []

    def on_analyzed(self, item, result) -> None:
        self.frames.setdefault(item.meta.cam, []).append(item.meta.frame)
        assert len(result.faces) == len(item.faces) and result.meta == item.meta
        self.crops.append((len(item.faces), np.asarray(item.crops).shape))

    def on_stream_end(self, end) -> None:
        self.ends.append(end)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_clip(tmp_path_factory.mktemp("taps") / "a.mp4", frames=FRAMES, face=True))


def _sources(cfg, uris, start_frame=0):
    out = []
    for u in uris:
        s = make_source(u, cfg.source)
        s.open()
        s.close()
        s.start_frame = start_frame
        out.append(s)
    return out


@pytest.mark.timeout(120)
def test_a_tap_sees_every_analysed_frame_with_its_crops_and_the_stream_end(clip, tmp_path):
    cfg = config("source.workers=thread", "analyzer.models=[{name: fer}]")
    tap = Recorder()
    assert isinstance(tap, FaceTap)
    stats = Pipeline(cfg, _sources(cfg, [clip]), tmp_path, taps=[tap]).run()
    (cam,) = stats
    assert tap.frames == {cam: list(range(FRAMES))} and stats[cam].frames_out == FRAMES
    assert any(n > 0 for n, _ in tap.crops)  # the astronaut is found
    assert all(shape[0] == n for n, shape in tap.crops)
    assert [(e.cam, e.reason, e.final) for e in tap.ends] == [(cam, "end", True)]


@pytest.mark.timeout(120)
def test_frames_before_start_frame_are_decoded_not_analysed(clip, tmp_path):
    cfg = config("source.workers=thread", "analyzer.models=[{name: fer}]")
    tap = Recorder()
    stats = Pipeline(cfg, _sources(cfg, [clip], start_frame=6), tmp_path, taps=[tap]).run()
    (cam,) = stats
    assert tap.frames == {cam: list(range(6, FRAMES))}
    assert stats[cam].frames_out == FRAMES - 6 and stats[cam].frames_in == FRAMES and stats[cam].reason == "end"


class FailsAtTheEnd(Recorder):
    def on_stream_end(self, end) -> None:
        raise OSError("disk full")


@pytest.mark.timeout(120)
def test_a_tap_that_fails_at_a_stream_end_ends_that_stream_with_its_error(clip, tmp_path):
    cfg = config("source.workers=thread", "analyzer.models=[{name: fer}]")
    stats = Pipeline(cfg, _sources(cfg, [clip]), tmp_path, taps=[FailsAtTheEnd()]).run()
    (st,) = stats.values()
    assert st.reason == "error" and "FailsAtTheEnd failed: OSError: disk full" in st.error
