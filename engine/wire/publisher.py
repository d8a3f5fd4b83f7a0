"""Publishes wire-format v1 messages on a ZeroMQ XPUB socket without ever blocking the pipeline.

XPUB rather than PUB so the publisher sees subscriptions arrive: a file run can wait for its
subscribers before the first frame, and a subscriber started with the run misses nothing.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import zmq

from auflow.engine.errors import ConfigError, WireError
from auflow.engine.wire.endpoint import check_endpoint
from auflow.engine.wire.format import encode

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _is_loopback(endpoint: str) -> bool:
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


class Publisher:
    """ZeroMQ publisher of auflow messages (wire format v1).

    ``send`` never blocks. Two policies for a subscriber whose queue (``hwm`` messages) is full:

    - ``count_drops=True`` (default): the message is not sent to the subscribers of its topic and
      is counted in :attr:`dropped` (ZeroMQ ``XPUB_NODROP``: while one subscriber of a topic is full,
      the others of that topic miss the message too, and every one of them sees the ``seq`` gap).
    - ``count_drops=False``: ZeroMQ's default; only the slow subscriber loses messages, silently for
      the publisher (that subscriber still sees the ``seq`` gaps).

    With no subscriber at all, messages are discarded and count as neither sent to anyone nor
    dropped: :attr:`sent` counts messages accepted by the socket.

    CURVE (opt-in): with ``curve_secret_key_file`` (the ``NAME.key_secret`` written by ``auflow keys
    NAME``) the socket is a CURVE server: traffic is encrypted, and only subscribers that hold its
    public key (``NAME.key``) complete the handshake (:mod:`auflow.engine.wire.curve`).

    Thread-safety: every socket operation holds one lock, so ``send`` and
    ``wait_for_subscribers`` may be called from any thread (the pipeline uses one).
    """

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        hwm: int = 1000,
        wait_subscribers: int = 0,
        wait_timeout_s: float = 10.0,
        *,
        count_drops: bool = True,
        linger_ms: int = 1000,
        context: zmq.Context | None = None,
        curve_secret_key_file: str | None = None,
    ) -> None:
        if hwm < 1:
            raise ConfigError(f"publisher hwm must be >= 1 message, got {hwm}")
        self.endpoint = endpoint
        self.hwm = hwm
        self.wait_subscribers = wait_subscribers
        self.wait_timeout_s = wait_timeout_s
        self.count_drops = count_drops
        self.linger_ms = linger_ms
        #: CURVE encryption (opt-in): this server's NAME.key_secret from `auflow keys NAME`
        self.curve_secret_key_file = curve_secret_key_file
        self._context = context
        self._own_context = context is None
        self._socket: zmq.Socket | None = None
        self._bound: str | None = None
        self._lock = threading.Lock()
        #: messages the socket accepted
        self.sent = 0
        #: messages not sent because a subscriber's queue was full (``count_drops=True`` only)
        self.dropped = 0
        #: live subscriptions seen so far (subscribe minus unsubscribe messages)
        self.subscriptions = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Publisher:
        """Bind the socket; then, if ``wait_subscribers`` > 0, wait for them (a warning on timeout)."""
        if self._socket is not None:
            return self
        check_endpoint(self.endpoint, bind=True)  # ZeroMQ binds a random port for tcp://host:99999
        if self._context is None:
            self._context = zmq.Context()
        sock = self._context.socket(zmq.XPUB)
        try:
            sock.setsockopt(zmq.SNDHWM, self.hwm)
            sock.setsockopt(zmq.LINGER, self.linger_ms)
            # every subscribe *and* unsubscribe, also repeated topics: lets us count subscribers
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)
            if self.count_drops:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            if self.curve_secret_key_file:
                from auflow.engine.wire.curve import make_server

                make_server(sock, self.curve_secret_key_file)
            sock.bind(self.endpoint)
            self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except ConfigError:
            sock.close(linger=0)
            self._close_context()
            raise
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._close_context()
            if exc.errno == errno.EADDRINUSE:
                raise WireError(
                    f"cannot publish on {self.endpoint}: address already in use (another auflow run or "
                    "program is bound there); stop it or choose another endpoint, e.g. tcp://127.0.0.1:*"
                ) from None
            raise ConfigError(f"cannot publish on {self.endpoint!r}: {exc}; an endpoint looks like tcp://127.0.0.1:5555") from None
        self._socket = sock
        if not _is_loopback(self._bound) and not self.curve_secret_key_file:
            logger.warning(
                "publishing on %s: results are visible to anyone who can reach this address "
                "(bind to 127.0.0.1 unless remote subscribers need them)", self._bound
            )
        logger.info("publishing on %s", self._bound)
        if self.wait_subscribers > 0 and not self.wait_for_subscribers(self.wait_subscribers, self.wait_timeout_s):
            logger.warning(
                "only %d of %d subscriptions arrived on %s within %.1f s; starting anyway",
                self.subscriptions, self.wait_subscribers, self._bound, self.wait_timeout_s,
            )
        return self

    def stop(self) -> None:
        """Close the socket, flushing queued messages (the final ``eos``) for up to ``linger_ms``."""
        with self._lock:
            if self._socket is not None:
                self._socket.close(linger=self.linger_ms)
                self._socket = None
            self._close_context()

    def _close_context(self) -> None:
        if self._own_context and self._context is not None:
            self._context.term()  # waits for the linger of the closed socket
            self._context = None

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def bound_endpoint(self) -> str:
        """The endpoint actually bound: ``tcp://127.0.0.1:*`` resolves to the chosen port."""
        if self._bound is None:
            raise WireError("publisher is not started; call start() first")
        return self._bound

    # -- subscriptions -------------------------------------------------------------------------

    def _read_subscriptions(self, timeout_ms: int) -> None:
        """Read subscription messages for up to ``timeout_ms`` (0: only those already queued)."""
        sock = self._require_socket()
        if sock.poll(timeout_ms, zmq.POLLIN) == 0:
            return
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1
            elif msg[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)

    def wait_for_subscribers(self, n: int, timeout_s: float) -> bool:
        """Wait until ``n`` subscriptions are live; True if they are, False after ``timeout_s``.

        ZeroMQ tells a publisher about subscriptions, not peers: a subscriber of everything (``""``)
        or of one topic prefix counts once, a subscriber of k prefixes counts k times. Once its
        subscription is seen here, a subscriber receives every message sent afterwards.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                self._read_subscriptions(0)
                if self.subscriptions >= n:
                    return True
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    return False
                # poll in short slices so another thread's send() is not held up for long
                self._read_subscriptions(min(left_ms, 100))
                if self.subscriptions >= n:
                    return True

    # -- sending -------------------------------------------------------------------------------

    def send(self, header: Mapping[str, Any]) -> bool:
        """Stamp ``t_publish_ns`` on a copy of ``header``, encode and send it without blocking.

        Returns True when the socket took it, False when it was dropped (counted in ``dropped``).
        """
        frames = encode({**header, "t_publish_ns": time.time_ns()})
        with self._lock:
            sock = self._require_socket()
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
            except zmq.Again:
                self.dropped += 1
                return False
            self.sent += 1
        return True

    def _require_socket(self) -> zmq.Socket:
        if self._socket is None:
            raise WireError("publisher is not started (or already stopped); call start() first")
        return self._socket
