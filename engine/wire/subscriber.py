"""Reads auflow's wire format v1 from one or many publishers and reports lost messages.

::

    from auflow import subscribe

    for msg in subscribe("tcp://127.0.0.1:5555", topics=["result/cam1/", "eos/cam1/"], timeout_s=30):
        if msg.gap:
            print(f"lost {msg.gap} results of {msg.cam} before this one")
        print(msg.type, msg.header.get("seq"), len(msg.header.get("faces", [])))

One SUB socket connects to every endpoint; ZeroMQ itself reconnects (with backoff) when a
publisher restarts, so the iterator keeps going across publisher restarts — the restarted
publisher's new session id (``sid``) starts a new ``seq`` count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from types import EllipsisType

import zmq

from auflow.engine.errors import ConfigError, WireError
from auflow.engine.wire.endpoint import check_endpoint
from auflow.engine.wire.format import MAX_MESSAGE_BYTES, SchemaVersionError, decode
from auflow.engine.wire.gaps import MAX_SESSIONS, GapTracker, SessionGaps

logger = logging.getLogger(__name__)

#: connection events the subscriber watches: a drop, and ZeroMQ's own retries (which make a repair needless)
_WATCHED = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED
#: how long after a drop ZeroMQ has to announce its own retry before the subscriber reconnects itself
_RETRY_GRACE_S = 0.5

__all__ = ["MAX_SESSIONS", "GapTracker", "Message", "SessionGaps", "Subscriber", "subscribe"]


@dataclass(frozen=True)
class Message:
    """One decoded message.

    ``header`` is the decoded msgpack map (unknown keys kept); ``topic`` the ZeroMQ topic it came
    on (``"result/cam1/"``); ``gap`` the number of ``result`` messages of its ``(cam, sid)`` that this
    subscriber missed just before it: 0 normally; on an ``eos``, the results lost at the end.
    """

    header: dict
    topic: str
    gap: int = 0

    @property
    def type(self) -> str:
        return self.header["type"]

    @property
    def cam(self) -> str:
        return self.header["cam"]

    @property
    def sid(self) -> str:
        return self.header["sid"]


def _expects_results(topics: tuple[str, ...], cam: str) -> bool:
    """Whether a subscription to ``topics`` receives the results of ``cam`` (prefix matching)."""
    result_topic = f"result/{cam}/"
    return any(result_topic.startswith(t) for t in topics)


class Subscriber:
    """A SUB socket connected to every endpoint, yielding :class:`Message` objects.

    Iterating stops (and closes the socket) after ``timeout_s`` seconds without a valid message;
    ``None`` waits forever. ``topics`` are ZeroMQ prefixes (``"result/cam1/"``, ``"status/"``; None:
    everything); keep the trailing ``/`` so that ``cam1`` does not match ``cam10``.

    Malformed messages are skipped, counted in :attr:`garbage` and logged. With ``tolerant``
    (default) a newer schema version is read for the keys it shares with v1; with
    ``tolerant=False`` it raises :class:`SchemaVersionError` from the iterator.
    A frame over ``max_message_bytes`` makes ZeroMQ drop the connection to that publisher, so no
    publisher can make a subscriber allocate without bound. ZeroMQ treats that as a protocol error and
    does not reconnect by itself (it does after an ordinary disconnect): the subscriber watches its
    socket's events and reconnects such an endpoint itself (:attr:`reconnects`).

    CURVE (opt-in, :mod:`auflow.engine.wire.curve`): ``curve_server_key`` is the publisher's public
    key (its ``NAME.key`` file or the Z85 text); ``curve_client_key_file`` this subscriber's own
    ``NAME.key_secret`` (a throwaway pair when None). A subscriber without the right server key
    never completes the handshake and receives nothing.
    """

    def __init__(
        self,
        endpoints: str | list[str],
        topics: list[str] | None = None,
        timeout_s: float | None = None,
        tolerant: bool = True,
        *,
        hwm: int = 1000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        count_missed_start: bool = True,
        context: zmq.Context | None = None,
        curve_server_key: str | None = None,
        curve_client_key_file: str | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ConfigError("subscribe needs at least one endpoint, e.g. tcp://127.0.0.1:5555")
        for ep in self.endpoints:
            check_endpoint(ep, bind=False)
        if topics is not None and len(topics) == 0:
            raise ConfigError("topics is empty, so nothing would arrive; pass None to receive everything")
        self.topics = [""] if topics is None else [t.decode() if isinstance(t, bytes) else str(t) for t in topics]
        self.timeout_s = timeout_s
        self.tolerant = tolerant
        self.max_message_bytes = max_message_bytes
        # a function of the topics, not a bound method: no reference cycle keeps a socket alive
        self.gaps = GapTracker(count_missed_start, expects_results=partial(_expects_results, tuple(self.topics)))
        #: malformed messages skipped
        self.garbage = 0
        #: valid messages received
        self.received = 0
        #: endpoints this subscriber reconnected after ZeroMQ gave them up (an oversize message)
        self.reconnects = 0
        self._monitor: zmq.Socket | None = None
        self._given_up: dict[str, float] = {}  # endpoint -> when to reconnect it, unless ZeroMQ retries first

        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._socket: zmq.Socket | None = None
        sock = self._context.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)  # exponential backoff up to 5 s
            if curve_server_key:
                from auflow.engine.wire.curve import make_client

                make_client(sock, curve_server_key, curve_client_key_file)
            elif curve_client_key_file:
                raise ConfigError("a CURVE client key needs the server's public key too (curve_server_key)")
            for ep in self.endpoints:
                try:
                    sock.connect(ep)
                except zmq.ZMQError as exc:
                    raise ConfigError(f"cannot connect to {ep!r}: {exc}; an endpoint looks like tcp://127.0.0.1:5555") from None
            for t in self.topics:
                sock.setsockopt(zmq.SUBSCRIBE, t.encode())
            self._monitor = sock.get_monitor_socket(_WATCHED)
        except BaseException:
            if self._monitor is not None:
                sock.disable_monitor()
                self._monitor.close(linger=0)
            sock.close(linger=0)
            if self._own_context:
                self._context.term()
            raise
        self._socket = sock

    # -- receiving -----------------------------------------------------------------------------

    def _recv_frames(self) -> list[bytes] | int:
        """One whole multipart message; keeps at most 3 frames (returns the frame count past that)."""
        sock = self._socket
        frames = [sock.recv(zmq.NOBLOCK)]
        count = 1
        while sock.getsockopt(zmq.RCVMORE):
            part = sock.recv(zmq.NOBLOCK)  # the parts of a message arrive together
            count += 1
            if count <= 3:
                frames.append(part)
        return frames if count <= 3 else count

    def _watch_connections(self) -> None:
        """Read the socket's connection events; reconnect an endpoint ZeroMQ dropped and will not retry."""
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None and self._monitor.poll(0):
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except (zmq.ZMQError, ValueError):
                break
            ep = event.get("endpoint", b"")
            ep = ep.decode(errors="replace") if isinstance(ep, bytes) else str(ep)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._given_up[ep] = time.monotonic() + _RETRY_GRACE_S
            else:  # ZeroMQ is retrying (or has reconnected) this one itself
                self._given_up.pop(ep, None)
        now = time.monotonic()
        for ep, due in list(self._given_up.items()):
            if due > now:
                continue
            del self._given_up[ep]
            for configured in self._configured_for(ep):
                try:
                    self._socket.disconnect(configured)
                except zmq.ZMQError:
                    pass  # already gone: that is the case being repaired
                self._socket.connect(configured)
                self.reconnects += 1
                logger.warning("reconnected to %s after ZeroMQ dropped it (a message over %d bytes?)",
                               configured, self.max_message_bytes)

    def _configured_for(self, reported: str) -> list[str]:
        """The endpoints given by the user that a monitor event's (resolved) endpoint stands for."""
        if reported in self.endpoints:
            return [reported]
        port = reported.rsplit(":", 1)[-1]
        same_port = [e for e in self.endpoints if e.rsplit(":", 1)[-1] == port]
        return same_port or ([self.endpoints[0]] if len(self.endpoints) == 1 else [])

    def _skip(self, reason: str) -> None:
        self.garbage += 1
        if self.garbage <= 10 or self.garbage % 1000 == 0:
            logger.warning("skipped malformed message #%d: %s", self.garbage, reason)

    def recv(self, timeout_s: float | None | EllipsisType = ...) -> Message | None:
        """The next valid message, or None after ``timeout_s`` (default: the subscriber's) without one."""
        if self._socket is None:
            raise WireError("subscriber is closed")
        timeout_s = self.timeout_s if timeout_s is ... else timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._watch_connections()
            wait_ms = 1000 if deadline is None else max(0, min(1000, int((deadline - time.monotonic()) * 1000)))
            if self._given_up:
                wait_ms = min(wait_ms, int(_RETRY_GRACE_S * 1000))
            if self._socket.poll(wait_ms, zmq.POLLIN):
                got = self._recv_frames()
                if isinstance(got, int):
                    self._skip(f"{got} frames, a wire v1 message has 2 [topic, header]")
                    continue
                try:
                    header = decode(got, tolerant=self.tolerant, max_bytes=self.max_message_bytes)
                except SchemaVersionError:
                    raise
                except WireError as exc:
                    self._skip(str(exc))
                    continue
                self.received += 1
                gap = self.gaps.update(header)
                return Message(header=header, topic=bytes(got[0]).decode(), gap=gap)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def messages(self, timeout_s: float | None | EllipsisType = ...) -> Iterator[Message]:
        """Messages until ``timeout_s`` (default: the subscriber's) passes without one.

        Unlike plain iteration, this leaves the subscriber open: the caller closes it.
        """
        while (msg := self.recv(timeout_s)) is not None:
            yield msg

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        """The next message; on timeout the subscriber closes itself and iteration stops."""
        if self._socket is None:
            raise StopIteration
        msg = self.recv()
        if msg is None:
            self.close()
            raise StopIteration
        return msg

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._socket is None

    def close(self) -> None:
        """Close the socket (pending messages are discarded). Safe to call twice."""
        if self._socket is not None:
            if self._monitor is not None:
                try:
                    self._socket.disable_monitor()
                except zmq.ZMQError:
                    pass
                self._monitor.close(linger=0)
                self._monitor = None
            self._socket.close(linger=0)
            self._socket = None
            if self._own_context:
                self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # a `for ... in subscribe(...)` loop left with `break` drops the last reference here
        try:
            self.close()
        except Exception:  # interpreter teardown: zmq may already be gone
            pass


def subscribe(
    endpoints: str | list[str],
    topics: list[str] | None = None,
    timeout_s: float | None = None,
    tolerant: bool = True,
    *,
    curve_server_key: str | None = None,
    curve_client_key_file: str | None = None,
) -> Subscriber:
    """Iterate over decoded messages from one or many publishers (see :class:`Subscriber`).

    The returned :class:`Subscriber` is already connected; it is an ``Iterator[Message]`` that
    also exposes ``.gaps`` (a :class:`GapTracker`), ``.garbage`` and ``.close()``, and works as a
    context manager. ZeroMQ reconnects to a restarted publisher by itself.
    """
    return Subscriber(endpoints, topics=topics, timeout_s=timeout_s, tolerant=tolerant,
                      curve_server_key=curve_server_key, curve_client_key_file=curve_client_key_file)
