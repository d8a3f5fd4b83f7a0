"""Wire format v1: builders give exactly the DESIGN.md keys, decode refuses every malformed message."""

from __future__ import annotations

import json
import random
from contextlib import nullcontext as does_not_raise

import msgpack
import numpy as np
import pytest

from auflow.engine.errors import WireError
from auflow.engine.types import EXPRESSIONS, FaceResults, Faces, FrameMeta, ModelInfo
from auflow.engine.wire import format as wire
from auflow.engine.wire.format import SchemaVersionError, decode, encode, topic

AUS = ("AU01", "AU02", "AU04", "AU06", "AU12")


def face_results(n: int = 2, outputs: tuple[str, ...] = ("au", "expr"), cam: str = "cam1") -> FaceResults:
    rng = np.random.default_rng(0)
    meta = FrameMeta(cam=cam, sid="s-1", frame=42, pts=84000, time_base=(1, 90000), t_capture_ns=1_700_000_000_000_000_000,
                     width=640, height=480)
    faces = Faces(
        bbox=np.array([[10.1234, 20.5678, 110.04, 140.96]] * n, np.float32),
        score=np.full(n, 0.987654, np.float32),
        kps=rng.uniform(0, 400, (n, 5, 2)).astype(np.float32),
        track=np.arange(n),
    )
    labels = {"au": AUS, "expr": EXPRESSIONS, "valence": ("valence",)}
    models = {"au": ModelInfo("me_graphau", "distilled"), "expr": ModelInfo("fer", "teacher"),
              "valence": ModelInfo("my_valence", "user")}
    arrays = {"au": rng.uniform(size=(n, len(AUS))), "expr": rng.dirichlet(np.ones(7), n), "valence": rng.uniform(size=(n, 1))}
    return FaceResults(
        meta=meta, faces=faces,
        outputs={k: arrays[k].astype(np.float32) for k in outputs},
        labels={k: labels[k] for k in outputs}, models={k: models[k] for k in outputs},
        latency_ms={"decode": np.float64(1.23456), "detect": 7.891011},
    )


def assert_plain(obj, path="header"):
    """Only the types msgpack and JSON share; numpy scalars (np.float64 subclasses float) fail."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str, f"{path} key {k!r}"
            assert_plain(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain(v, f"{path}[{i}]")
    else:
        assert type(obj) in (str, int, float, bool, type(None)), f"{path} is {type(obj).__name__}"


# -- builders ------------------------------------------------------------------------------------


def test_result_message_has_exactly_the_design_keys():
    msg = wire.result_message(face_results(), seq=7, t_publish_ns=123)
    assert set(msg) == {"v", "type", "cam", "sid", "t_publish_ns", "seq", "frame", "pts", "time_base", "t_capture_ns",
                        "latency_ms", "models", "faces"}
    assert msg["v"] == 1 and msg["type"] == "result" and msg["cam"] == "cam1" and msg["sid"] == "s-1"
    assert (msg["seq"], msg["frame"], msg["pts"], msg["time_base"]) == (7, 42, 84000, [1, 90000])
    assert msg["t_publish_ns"] == 123 and msg["t_capture_ns"] == 1_700_000_000_000_000_000
    assert msg["models"] == {"au": {"name": "me_graphau", "kind": "distilled"}, "expr": {"name": "fer", "kind": "teacher"}}
    assert msg["latency_ms"] == {"decode": 1.235, "detect": 7.891}
    assert len(msg["faces"]) == 2
    for i, face in enumerate(msg["faces"]):
        assert set(face) == {"track", "bbox", "score", "kps", "au", "expr"}
        assert face["track"] == i
        assert face["bbox"] == [10.1, 20.6, 110.0, 141.0]
        assert face["score"] == 0.9877
        assert len(face["kps"]) == 5 and all(len(p) == 2 for p in face["kps"])
        assert tuple(face["au"]) == AUS and tuple(face["expr"]) == EXPRESSIONS
        assert all(p == round(p, 4) for p in face["expr"].values())
        assert abs(sum(face["expr"].values()) - 1) < 1e-3
    assert_plain(msg)
    assert json.loads(json.dumps(msg, allow_nan=False)) == msg


def test_result_message_probabilities_follow_labels():
    res = face_results(1)
    msg = wire.result_message(res, 0)
    expected = {label: round(float(p), 4) for label, p in zip(AUS, res.outputs["au"][0])}
    assert msg["faces"][0]["au"] == expected


def test_result_message_other_outputs_get_their_own_key_and_missing_ones_are_empty():
    msg = wire.result_message(face_results(1, outputs=("expr", "valence")), 0)
    face = msg["faces"][0]
    assert face["au"] == {} and set(face["expr"]) == set(EXPRESSIONS)
    assert set(face["valence"]) == {"valence"}
    assert msg["models"]["valence"] == {"name": "my_valence", "kind": "user"}


def test_result_message_without_faces_and_non_finite_values():
    msg = wire.result_message(face_results(0), 3)
    assert msg["faces"] == []
    res = face_results(1)
    res.outputs["expr"][0, 0] = np.nan
    face = wire.result_message(res, 0)["faces"][0]
    assert face["expr"]["neutral"] is None
    json.dumps(face, allow_nan=False)


def test_builders_refuse_bad_values():
    with pytest.raises(WireError, match="state must be one of"):
        wire.status_message("cam1", "s", "dancing", 1, 1, 0, 0, {}, -1)
    with pytest.raises(WireError, match="would overwrite"):
        wire.eos_message("cam1", "s", "end", 3, v=2)
    with pytest.raises(WireError, match="without '/'"):
        wire.eos_message("cam/1", "s", "end", 3)
    with pytest.raises(WireError, match="unknown message type"):
        topic("frames", "cam1")


ALL_MESSAGES = {
    "result": lambda: wire.result_message(face_results(), 5),
    "window": lambda: wire.window_message("cam1", "s-1", 3, 10, 25, {"happiness": 0.8, "neutral": 0.2},
                                          au={"AU12": np.float32(0.7)}, stride=4),
    "window_no_au": lambda: wire.window_message("cam1", "s-1", 3, 10, 25, {"happiness": 0.8}),
    "status": lambda: wire.status_message("cam1", "s-1", "live", 25.04321, np.float64(24.9), 3, 1,
                                          {"frames": 2, "crops": np.int64(0)}, 41, host="box"),
    "eos": lambda: wire.eos_message("cam1", "s-1", "end_of_file", 199),
}


@pytest.mark.parametrize("name", sorted(ALL_MESSAGES))
def test_round_trip(name):
    msg = ALL_MESSAGES[name]()
    frames = encode(msg)
    assert frames[0] == f"{msg['type']}/cam1/".encode()
    assert all(isinstance(f, bytes) for f in frames)
    back = decode(frames)
    assert back == msg
    assert_plain(back)
    json.dumps(back, allow_nan=False)


def test_message_specific_values():
    status = ALL_MESSAGES["status"]()
    assert (status["fps_in"], status["fps_out"], status["queue"], status["host"]) == (25.04, 24.9, {"frames": 2, "crops": 0}, "box")
    window = ALL_MESSAGES["window"]()
    assert window["au"] == {"AU12": 0.7} and window["stride"] == 4
    assert "au" not in ALL_MESSAGES["window_no_au"]()
    assert topic("eos", "cam10") == b"eos/cam10/" and not topic("eos", "cam10").startswith(topic("eos", "cam1"))


def test_unknown_keys_are_kept_and_numpy_is_converted():
    msg = wire.eos_message("cam1", "s", "end", 2, extra_list=np.arange(3), flag=np.bool_(True))
    back = decode(encode(msg))
    assert back["extra_list"] == [0, 1, 2] and back["flag"] is True


def test_encode_refuses_what_msgpack_cannot_carry():
    with pytest.raises(WireError, match="cannot put a object on the wire"):
        encode(wire.eos_message("cam1", "s", "end", 2, thing=object()))
    with pytest.raises(WireError, match="without"):
        encode({"type": "eos", "cam": "cam1"})


# -- decode of malformed messages ----------------------------------------------------------------


def frames_with(**changes) -> list[bytes]:
    header = {**wire.eos_message("cam1", "s-1", "end", 4), **changes}
    header = {k: v for k, v in header.items() if v is not DELETE}
    return [b"eos/cam1/", msgpack.packb(header)]


DELETE = object()
GOOD = frames_with()


@pytest.mark.parametrize(
    "frames, expectation",
    [
        (GOOD, does_not_raise()),
        ([GOOD[0]], pytest.raises(WireError, match="2 frames")),
        ([*GOOD, b"x"], pytest.raises(WireError, match="2 frames")),
        ([], pytest.raises(WireError, match="2 frames")),
        (b"eos/cam1/", pytest.raises(WireError, match="2 frames")),
        (["eos/cam1/", GOOD[1]], pytest.raises(WireError, match="must be bytes")),
        ([b"result/cam1/", GOOD[1]], pytest.raises(WireError, match="does not match")),
        ([b"eos/cam10/", GOOD[1]], pytest.raises(WireError, match="does not match")),
        ([b"eos/cam1", GOOD[1]], pytest.raises(WireError, match="does not match")),
        ([b"\xff\xfe", GOOD[1]], pytest.raises(WireError, match="not UTF-8")),
        ([GOOD[0], msgpack.packb([1, 2, 3])], pytest.raises(WireError, match="must be a msgpack map, got list")),
        ([GOOD[0], msgpack.packb(7)], pytest.raises(WireError, match="must be a msgpack map, got int")),
        ([GOOD[0], b"\xc1"], pytest.raises(WireError, match="not valid msgpack")),
        ([GOOD[0], b""], pytest.raises(WireError, match="not valid msgpack")),
        ([GOOD[0], GOOD[1] + b"\x00"], pytest.raises(WireError, match="not valid msgpack")),
        ([GOOD[0], b"\xdd\xff\xff\xff\xff"], pytest.raises(WireError, match="not valid msgpack")),  # 4G-long array
        ([GOOD[0], b"\x91" * 10_000 + b"\x00"], pytest.raises(WireError, match="not valid msgpack")),  # too deep
        ([GOOD[0], b"\xd6\xff\x00\x00\x00\x00"], pytest.raises(WireError, match="not valid msgpack")),  # ext type
        ([GOOD[0], bytes([0x81, 0x91, 0x01, 0x02])], pytest.raises(WireError, match="not valid msgpack")),  # list key
        (frames_with(v=2), pytest.raises(SchemaVersionError, match="v=2")),
        (frames_with(v=0), pytest.raises(WireError, match="positive integer")),
        (frames_with(v="1"), pytest.raises(WireError, match="positive integer")),
        (frames_with(v=True), pytest.raises(WireError, match="positive integer")),
        (frames_with(sid=DELETE), pytest.raises(WireError, match=r"lacks \['sid'\]")),
        (frames_with(t_publish_ns=1.5), pytest.raises(WireError, match="t_publish_ns")),
        (frames_with(cam=""), pytest.raises(WireError, match="non-empty string")),
        (frames_with(last_seq=DELETE), pytest.raises(WireError, match=r"lacks \['last_seq'\]")),
        (frames_with(last_seq="4"), pytest.raises(WireError, match="must be an integer")),
        (frames_with(type="frames"), pytest.raises(WireError, match="does not match")),
        ([b"frames/cam1/", frames_with(type="frames")[1]], pytest.raises(WireError, match="unknown message type")),
    ],
)
def test_decode_refuses_malformed(frames, expectation):
    with expectation:
        decode(frames)


def test_decode_size_limit():
    big = frames_with(note="x" * 2000)
    decode(big)
    with pytest.raises(WireError, match="exceeds the limit of 1000 bytes"):
        decode(big, max_bytes=1000)


def test_tolerant_reader_accepts_newer_versions_and_keeps_unknown_keys():
    with pytest.raises(SchemaVersionError) as info:
        decode(frames_with(v=2, shiny="new"))
    assert (info.value.sender_version, info.value.expected_version) == (2, 1)
    header = decode(frames_with(v=2, shiny="new"), tolerant=True)
    assert header["v"] == 2 and header["shiny"] == "new"
    # a newer writer's new message type passes a tolerant reader, not a strict one
    newtype = [b"gaze/cam1/", frames_with(v=2, type="gaze")[1]]
    assert decode(newtype, tolerant=True)["type"] == "gaze"


def test_random_bytes_never_crash():
    rng = random.Random(1234)
    good_body = GOOD[1]
    for i in range(2000):
        n = rng.randrange(0, 64)
        body = bytes(rng.randrange(256) for _ in range(n))
        if i % 2:  # corrupt a real header: flips reach the deeper checks
            b = bytearray(good_body)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            body = bytes(b)
        try:
            decode([GOOD[0], body])
        except WireError:
            pass
