"""Source URIs and file names of every odd kind: a source, or one SourceError line; a topic-safe camera
id; the password never shown (bench/fuzz.py runs 20k of them)."""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

import pytest
from auflow.engine.errors import SourceError
from auflow.engine.redaction import redact_text, redact_uri
from auflow.engine.sources import expand_inputs, make_source
from auflow.engine.sources.core import MAX_CAM_CHARS, cam_id_from
from auflow.engine.wire.format import topic
from hypothesis import given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("bench_fuzz", Path(__file__).parents[3] / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)
SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def check(uri: str, secret: str | None) -> None:
    cam = cam_id_from(uri)
    assert SAFE.match(cam) and len(cam) <= MAX_CAM_CHARS, cam
    topic("result", cam)
    try:
        src = make_source(uri)
        shown = src.name
    except SourceError as e:
        shown = str(e)
        assert "\n" not in shown
    if secret:
        assert secret not in shown and secret not in redact_uri(uri), shown


@settings(max_examples=400)
@given(seed=st.integers(0, 2**32))
def test_generated_uris(seed):
    check(*fuzz.uri(random.Random(seed)))


@settings(max_examples=300)
@given(password=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
       scheme=st.sampled_from(["rtsp", "rtsps", "http", "https"]), host=st.sampled_from(["10.0.0.5", "cam.local", "[::1]"]))
def test_any_password_is_masked(password, scheme, host):
    secret = "PW" + password
    uri = f"{scheme}://admin:{secret}@{host}:554/live"
    assert secret not in redact_uri(uri)
    check(uri, secret)
    if not any(c.isspace() for c in secret):  # in free text a password ends at a space
        assert secret not in redact_text(f"failed: {uri}: 401 Unauthorized")


@settings(max_examples=150)
@given(name=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=80))
def test_any_file_name(tmp_path_factory, name):
    folder = tmp_path_factory.mktemp("names")
    path = folder / (name + ".mp4")
    try:
        path.write_bytes(b"not a video")
    except OSError:  # a name this file system refuses ('.', '..', too many bytes)
        return
    check(str(path), None)
    inputs = expand_inputs([str(path)])
    assert inputs.uris == [str(path)]


@pytest.mark.parametrize("arg", ["a" * 5000 + ".mp4", "x\x00y.mp4", "/dev/null/x.mp4", "../" * 50 + "x.mp4"])
def test_unusable_paths_are_one_line(arg):
    with pytest.raises(SourceError) as info:
        inputs = expand_inputs([arg])
        make_source(inputs.uris[0]).open()
    assert "\n" not in str(info.value)


def test_long_names_get_short_distinct_camera_ids():
    a, b = cam_id_from("x" * 300 + "a.mp4"), cam_id_from("x" * 300 + "b.mp4")
    assert a != b and len(a) == len(b) == MAX_CAM_CHARS


@pytest.mark.parametrize("uri", ["rtsp://admin:pw@cam:abc/live", "rtsp://admin:pw@[::zz]/live", "http://a:b:c@h:1/x#y"])
def test_camera_id_of_a_malformed_url(uri):
    """`auflow run` named the cameras before checking their URLs: a bad port was a ValueError traceback."""
    assert SAFE.match(cam_id_from(uri)) and "pw" not in cam_id_from(uri)
