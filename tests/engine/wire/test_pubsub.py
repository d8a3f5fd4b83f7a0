"""Publisher and subscriber over real sockets on tcp://127.0.0.1:* (random ports).

Every wait has its own timeout, so no test can hang: ``wait_for_subscribers(.., 5)``, subscribers
with ``timeout_s``, raw sockets with ``RCVTIMEO``/polls, publishers closing with a 1 s linger.
"""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq

from auflow.engine.errors import ConfigError, WireError
from auflow.engine.types import FaceResults, Faces, FrameMeta, ModelInfo
from auflow.engine.wire import format as wire
from auflow.engine.wire.format import SchemaVersionError, encode, topic
from auflow.engine.wire.publisher import Publisher
from auflow.engine.wire.subscriber import GapTracker, Message, Subscriber, subscribe

ANY_PORT = "tcp://127.0.0.1:*"
WAIT_S = 5.0


def result(cam: str, seq: int, sid: str = "s-1") -> dict:
    meta = FrameMeta(cam, sid, frame=2 * seq, pts=2 * seq, time_base=(1, 25), t_capture_ns=time.time_ns(), width=64, height=48)
    faces = Faces(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32), np.zeros((1, 5, 2), np.float32), np.array([0]))
    res = FaceResults(meta, faces, {"expr": np.full((1, 7), 1 / 7, np.float32)},
                      {"expr": ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")},
                      {"expr": ModelInfo("fer", "teacher")})
    return wire.result_message(res, seq)


@pytest.fixture
def publisher():
    pub = Publisher(ANY_PORT).start()
    yield pub
    pub.stop()


def receive_until_eos(sub: Subscriber, cam: str = "cam1") -> list[Message]:
    got = []
    while (msg := sub.recv(WAIT_S)) is not None:
        got.append(msg)
        if msg.type == "eos" and msg.cam == cam:
            return got
    raise AssertionError(f"no eos for {cam} within {WAIT_S} s; got {[(m.type, m.cam) for m in got]}")


def test_bound_endpoint_resolves_the_random_port(publisher):
    ep = publisher.bound_endpoint
    assert ep.startswith("tcp://127.0.0.1:") and int(ep.rsplit(":", 1)[1]) > 0
    with pytest.raises(WireError, match="not started"):
        _ = Publisher(ANY_PORT).bound_endpoint


def test_endpoint_in_use_is_a_clear_error(publisher):
    with pytest.raises(WireError, match=f"cannot publish on {publisher.bound_endpoint}: address already in use"):
        Publisher(publisher.bound_endpoint).start()
    with pytest.raises(ConfigError, match="not-an-endpoint"):
        Publisher("not-an-endpoint").start()


def test_all_results_arrive_in_order_and_eos_is_flushed_by_stop(publisher):
    with Subscriber(publisher.bound_endpoint, timeout_s=WAIT_S) as sub:
        assert publisher.wait_for_subscribers(1, WAIT_S)
        for seq in range(200):
            assert publisher.send(result("cam1", seq))
        publisher.send(wire.eos_message("cam1", "s-1", "end_of_file", 199))
        publisher.stop()  # the last messages must survive the close
        got = receive_until_eos(sub)
        assert [m.header["seq"] for m in got if m.type == "result"] == list(range(200))
        assert all(m.gap == 0 for m in got)
        assert got[-1].header["last_seq"] == 199
        assert all(m.topic == f"{m.type}/cam1/" for m in got)
        assert sub.gaps.lost == 0 and sub.garbage == 0 and sub.received == 201
        assert (publisher.sent, publisher.dropped) == (201, 0)


def test_send_stamps_publish_time_on_a_copy(publisher):
    msg = wire.eos_message("cam1", "s-1", "end", -1)
    msg["t_publish_ns"] = 1
    with Subscriber(publisher.bound_endpoint, timeout_s=WAIT_S) as sub:
        assert publisher.wait_for_subscribers(1, WAIT_S)
        before = time.time_ns()
        publisher.send(msg)
        got = sub.recv()
    assert msg["t_publish_ns"] == 1  # the caller's dict is untouched
    assert got is not None and got.header["t_publish_ns"] >= before and got.gap == 0


def test_skipped_seq_shows_as_gap_and_eos_counts_tail_loss(publisher):
    with Subscriber(publisher.bound_endpoint, timeout_s=WAIT_S) as sub:
        assert publisher.wait_for_subscribers(1, WAIT_S)
        for seq in (0, 1, 3):
            publisher.send(result("cam1", seq))
        publisher.send(wire.eos_message("cam1", "s-1", "end", 5))  # 4 and 5 were never sent
        got = receive_until_eos(sub)
        assert [(m.header.get("seq"), m.gap) for m in got] == [(0, 0), (1, 0), (3, 1), (None, 2)]
        assert sub.gaps.lost == 3 and sub.gaps.lost_by_cam == {"cam1": 3}
        assert sub.gaps.sessions == {}  # eos closed the session's record


def test_cam1_subscriber_does_not_see_cam10(publisher):
    topics = [topic("result", "cam1").decode(), topic("eos", "cam1").decode()]
    with Subscriber(publisher.bound_endpoint, topics=topics, timeout_s=WAIT_S) as sub:
        assert publisher.wait_for_subscribers(2, WAIT_S)
        for seq in range(5):
            publisher.send(result("cam10", seq))
            publisher.send(result("cam1", seq))
        publisher.send(wire.eos_message("cam10", "s-1", "end", 4))
        publisher.send(wire.eos_message("cam1", "s-1", "end", 4))
        got = receive_until_eos(sub)  # one socket keeps order: all cam10 traffic was sent before this
        assert {m.cam for m in got} == {"cam1"}
        assert [m.header.get("seq") for m in got] == [0, 1, 2, 3, 4, None]


def test_one_subscriber_many_publishers():
    with Publisher(ANY_PORT) as a, Publisher(ANY_PORT) as b:
        with Subscriber([a.bound_endpoint, b.bound_endpoint], timeout_s=WAIT_S) as sub:
            assert a.wait_for_subscribers(1, WAIT_S) and b.wait_for_subscribers(1, WAIT_S)
            a.send(result("camA", 0))
            b.send(result("camB", 0))
            got = {sub.recv().cam, sub.recv().cam}
    assert got == {"camA", "camB"}


def test_wait_for_subscribers_times_out_without_one(publisher):
    assert not publisher.wait_for_subscribers(1, 0.2)
    assert publisher.wait_for_subscribers(0, 0.0)


def test_publisher_without_subscribers_never_blocks():
    with Publisher(ANY_PORT, hwm=1) as pub:
        for seq in range(10_000):
            pub.send(result("cam1", seq % 50))
        assert pub.sent + pub.dropped == 10_000


@pytest.mark.parametrize("count_drops", [True, False])
def test_slow_subscriber_makes_the_publisher_drop_not_block(count_drops):
    pad = "x" * 4096  # 10,000 × 4 KiB is far more than socket buffers hold
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        with Publisher(ANY_PORT, hwm=1, count_drops=count_drops, linger_ms=0) as pub:
            sub.connect(pub.bound_endpoint)
            assert pub.wait_for_subscribers(1, WAIT_S)
            for _ in range(10_000):  # the subscriber never reads
                pub.send(wire.status_message("cam1", "s-1", "live", 25, 25, 0, 0, {}, -1, pad=pad))
            assert pub.sent + pub.dropped == 10_000
            if count_drops:
                assert pub.dropped > 0
            else:
                assert pub.dropped == 0
    finally:
        sub.close(linger=0)
        ctx.term()


@pytest.fixture
def raw_pub():
    """A plain PUB socket: sends whatever bytes a test gives it."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ANY_PORT)
    yield sock
    sock.close(linger=0)
    ctx.term()


def connect_raw(raw_pub, sub: Subscriber) -> None:
    """A PUB cannot tell when a subscription arrives: send probes until one gets through."""
    probe = encode(wire.status_message("probe", "s-0", "live", 0, 0, 0, 0, {}, -1))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        raw_pub.send_multipart(probe)
        if sub.recv(0.05) is not None:
            return
    raise AssertionError("subscriber never connected")


def test_garbage_is_skipped_and_counted_and_the_next_message_arrives(raw_pub):
    with Subscriber(raw_pub.getsockopt_string(zmq.LAST_ENDPOINT), timeout_s=WAIT_S) as sub:
        connect_raw(raw_pub, sub)
        garbage = [
            [b"garbage"],
            [b"result/cam1/", b"\xc1\xff\x00"],
            [b"result/cam1/", msgpack.packb([1, 2, 3])],
            [b"a", b"b", b"c", b"d"],
            [b"eos/cam1/", msgpack.packb({"v": 1, "type": "eos", "cam": "cam2", "sid": "s", "t_publish_ns": 0,
                                          "reason": "end", "last_seq": -1})],
        ]
        for frames in garbage:
            raw_pub.send_multipart(frames)
        raw_pub.send_multipart(encode(wire.eos_message("cam1", "s-1", "end", -1)))
        got = receive_until_eos(sub)
        assert got[-1].header["reason"] == "end" and got[-1].gap == 0
        assert sub.garbage == len(garbage)


def test_newer_schema_tolerant_by_default_strict_on_request(raw_pub):
    newer = encode({**wire.eos_message("cam1", "s-1", "end", -1), "v": 2, "shiny": True})
    endpoint = raw_pub.getsockopt_string(zmq.LAST_ENDPOINT)
    with Subscriber(endpoint, timeout_s=WAIT_S) as tolerant, Subscriber(endpoint, timeout_s=WAIT_S, tolerant=False) as strict:
        connect_raw(raw_pub, tolerant)
        connect_raw(raw_pub, strict)
        raw_pub.send_multipart(newer)
        got = receive_until_eos(tolerant)
        assert got[-1].header["shiny"] is True
        with pytest.raises(SchemaVersionError):
            while strict.recv() is not None:
                pass


def test_subscribe_iterates_until_timeout_and_closes(publisher):
    it = subscribe(publisher.bound_endpoint, timeout_s=0.5)
    assert publisher.wait_for_subscribers(1, WAIT_S)
    publisher.send(result("cam1", 0))
    got = list(it)
    assert [m.header["seq"] for m in got] == [0]
    assert it.closed and it.gaps.lost == 0 and it.garbage == 0


def test_subscriber_config_errors():
    with pytest.raises(ConfigError, match="nonsense"):
        Subscriber("nonsense")
    with pytest.raises(ConfigError, match="topics is empty"):
        Subscriber("tcp://127.0.0.1:5555", topics=[])


# -- gap accounting without sockets --------------------------------------------------------------


def hdr(type_: str, cam: str = "cam1", sid: str = "s", **kw) -> dict:
    return {"type": type_, "cam": cam, "sid": sid, **kw}


def test_gap_tracker_per_session():
    g = GapTracker()
    assert [g.update(hdr("result", seq=s)) for s in (0, 1, 4)] == [0, 0, 2]
    assert g.update(hdr("result", sid="t", seq=0)) == 0  # a new session counts from 0 again
    assert g.update(hdr("status", last_seq=4)) == 0
    assert g.update(hdr("result", seq=2)) == 0  # backwards: logged, not counted
    assert g.update(hdr("eos", last_seq=2)) == 0
    assert g.lost == 2


def test_gap_tracker_session_start_and_eos_without_results():
    g = GapTracker()
    assert g.update(hdr("result", seq=3)) == 3  # joined late or lost the first three
    assert g.update(hdr("eos", sid="other", last_seq=9)) == 10  # subscribed to results, saw none
    assert GapTracker(count_missed_start=False).update(hdr("result", seq=3)) == 0
    eos_only = GapTracker(expects_results=lambda cam: False)
    assert eos_only.update(hdr("eos", last_seq=9)) == 0  # not subscribed to results: nothing lost
    assert eos_only.update(hdr("eos", last_seq=-1)) == 0
