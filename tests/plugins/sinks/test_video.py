"""The video sink: the source decoded again with the run's boxes, ids, AU bars and expression drawn."""

from __future__ import annotations

import json

import av
import numpy as np

from auflow.engine.plugin import build
from auflow.engine.registry import SINKS
from auflow.plugins.sinks.video import render_run
from fake_messages import face, result_message
from auflow.engine.wire import format as wire
from auflow.engine.plugin import StartContext


def _messages(n: int) -> list[dict]:
    msgs = []
    for f in range(0, n, 2):  # every other frame analysed: the frames between hold the last result
        fc = face(7, f, x=40.0)
        fc["bbox"] = [40.0, 40.0, 160.0, 200.0]
        msgs.append(result_message("astro", "s1", f // 2, f, [fc]))
    msgs.append(wire.eos_message("astro", "s1", "end", n // 2 - 1))
    return msgs


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_annotates_every_frame_of_the_source(tmp_path, face_video):
    sink = build(SINKS, "video", {"hold_frames": 2})
    sink.start(StartContext(run_dir=tmp_path))
    sink.set_sources({"astro": str(face_video)})
    for m in _messages(40):
        sink.write(m)
    sink.stop()
    out = tmp_path / "astro.mp4"
    src, ann = _frames(face_video), _frames(out)
    assert len(ann) == len(src) == 40
    assert ann[0].shape == src[0].shape
    # the box edge is drawn in track 7's colour: the pixels there changed, those far from the face did not
    for i in (0, 1, 39):
        edge = ann[i][100, 38:43].astype(int) - src[i][100, 38:43].astype(int)
        assert np.abs(edge).max() > 60, i
        assert np.abs(ann[i][230, 300].astype(int) - src[i][230, 300].astype(int)).max() < 30


def test_without_a_source_it_warns_and_writes_nothing(tmp_path, caplog):
    sink = build(SINKS, "video")
    sink.start(StartContext(run_dir=tmp_path))
    for m in _messages(6):
        sink.write(m)
    sink.stop()
    assert not (tmp_path / "astro.mp4").exists()
    assert "no source file known" in caplog.text


def test_render_run_from_a_run_directory(tmp_path, face_video):
    (tmp_path / "summary.json").write_text(json.dumps({"streams": {"astro": {"uri": str(face_video), "sid": "s1"}}}))
    (tmp_path / "astro.jsonl").write_text("".join(json.dumps(m) + "\n" for m in _messages(40)))
    assert render_run(tmp_path) == [tmp_path / "astro.mp4"]
    assert len(_frames(tmp_path / "astro.mp4")) == 40
