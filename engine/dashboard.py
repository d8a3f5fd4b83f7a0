"""``auflow dashboard``: a live web page fed from the ZeroMQ result stream through a WebSocket bridge.

One HTTP port serves the page (``GET /``) and the WebSocket (``/ws``). A thread subscribes to
every endpoint with :class:`auflow.engine.wire.subscriber.Subscriber` (so gaps are counted the
same way everywhere) and hands each message to the asyncio loop, which sends it to every open
page as ``{"gap": n, "h": header}`` JSON. A page that is slower than the stream loses messages
(``websockets.broadcast`` skips a client whose buffer is full) rather than slowing the others.
A page that connects late first gets the latest ``status`` and ``result`` of each camera (of the
:data:`MAX_CAMERAS` heard most recently; the page shows at most 64 tiles, replacing the longest-silent).

Binds 127.0.0.1 by default, open to anyone on this machine. On any other address a token is
required (:func:`is_loopback_host`): the page and the WebSocket answer 401 without it. The token comes
from ``--token-file`` or is generated and printed once, in the page's URL (``/?token=…``); opening that
URL sets an HttpOnly, SameSite=Strict cookie, which the page's own WebSocket then carries. Programs may
also send ``Authorization: Bearer <token>``.

The page writes every string from the wire with ``textContent``
(never as HTML), so a camera named ``<script>`` is shown, not run. Should that ever break, the
Content-Security-Policy still lets only the page's own script run (by its hash): no inline event
handler (``onerror=…``) and no injected ``<script>`` executes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from .errors import ConfigError

log = logging.getLogger(__name__)

#: cameras whose latest status/result a late page gets (the least recently heard are forgotten first;
#: the page itself keeps at most 64 tiles), so a publisher inventing camera ids cannot grow memory
MAX_CAMERAS = 256


#: the cookie that carries the token from the page to its WebSocket
COOKIE = "auflow_dashboard"
#: shortest token accepted from a file (a generated one has 32 URL-safe characters)
MIN_TOKEN_CHARS = 16


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token_file(path: str | Path) -> str:
    """The dashboard token kept in ``path`` (surrounding whitespace ignored); ConfigError when unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the dashboard token file {path}: {getattr(e, 'strerror', None) or e}") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"the dashboard token in {path} must be one line of at least {MIN_TOKEN_CHARS} printable "
                          "characters without spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return token


def _presented_token(request) -> str | None:
    """The token a request carries: ``?token=``, the page's cookie, or ``Authorization: Bearer``."""
    query = parse_qs(urlsplit(request.path).query)
    if query.get("token"):
        return query["token"][0]
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    raw = request.headers.get("Cookie")
    if raw:
        try:
            jar = SimpleCookie(raw)
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return None
        if COOKIE in jar:
            return jar[COOKIE].value
    return None


def content_security_policy(page: str) -> str:
    """The page's CSP: its one inline script allowed by hash, nothing else runs; WebSocket to itself."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    return (f"default-src 'self'; script-src {hashes}; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Dashboard:
    """The bridge: ``start()`` serves in a background thread; ``url`` is the page; ``stop()`` ends it."""

    def __init__(self, endpoints: Sequence[str], host: str = "127.0.0.1", port: int = 8765,
                 topics: Sequence[str] | None = None, curve_server_key: str | None = None,
                 token: str | None = None) -> None:
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise ConfigError("the dashboard needs websockets: pip install 'auflow[dashboard]'") from None
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"dashboard port {port!r} is not a number from 1 to 65535 (0: any free port)")
        self.endpoints = list(endpoints)
        self.host, self.port = host, port
        #: what a viewer must present; None only on a loopback address (then anyone on this machine may look)
        self.token = token if token or is_loopback_host(host) else secrets.token_urlsafe(24)
        self.refused = 0  # requests turned away for want of the token
        self.topics = list(topics) if topics else ["result/", "window/", "status/", "eos/"]
        self.curve_server_key = curve_server_key
        self.clients: set = set()
        # (cam, type) -> last message, for late pages; least recently updated first
        self._latest: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._sub_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.forwarded = 0

    @property
    def url(self) -> str:
        """The page's address; with the token in it when one is required (print it once, to the owner)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={quote(self.token, safe='')}" if self.token else "")

    def _authorized(self, request) -> bool:
        if self.token is None:
            return True
        given = _presented_token(request)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Dashboard:
        from .wire.subscriber import Subscriber

        if self._thread is not None:  # already started (``with Dashboard(...).start() as d`` starts once)
            return self
        sub = Subscriber(self.endpoints, topics=self.topics, curve_server_key=self.curve_server_key)
        self._thread = threading.Thread(target=self._serve_thread, name="auflow-dashboard", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None or self._loop is None:
            sub.close()
            raise ConfigError(f"cannot serve the dashboard on {self.host}:{self.port}: {self._error}") from self._error
        self._sub_thread = threading.Thread(target=self._subscribe_thread, args=(sub,), name="auflow-dashboard-sub",
                                            daemon=True)
        self._sub_thread.start()
        if not is_loopback_host(self.host):
            log.warning("dashboard on %s, a non-loopback address: viewers need its token (in the URL printed "
                        "once); the page is plain HTTP, so put it behind TLS to cross an untrusted network", self.host)
        return self

    def stop(self) -> None:
        """Stop the subscriber first (it feeds the loop), then the web server; safe to call twice."""
        self._stop.set()
        if self._sub_thread is not None:
            self._sub_thread.join(timeout=5.0)
        if self._loop is not None and self._server is not None:
            try:
                self._loop.call_soon_threadsafe(self._server.close)
            except RuntimeError:  # the loop already ended
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until stopped (Ctrl-C in the CLI)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    # -- the ZeroMQ side ------------------------------------------------------------------------

    def _subscribe_thread(self, sub) -> None:
        try:
            while not self._stop.is_set():
                msg = sub.recv(0.2)
                if msg is None:
                    continue
                try:
                    text = _dumps({"gap": msg.gap, "h": msg.header})
                except (TypeError, ValueError):  # a value JSON cannot carry (bytes): skip, never crash
                    continue
                if msg.type in ("status", "result"):
                    self._remember(msg.cam, msg.type, text)
                try:
                    self._loop.call_soon_threadsafe(self._broadcast, text)
                except RuntimeError:  # the web server's loop has ended: nothing left to feed
                    return
        finally:
            sub.close()

    def _remember(self, cam: str, kind: str, text: str) -> None:
        """Keep a camera's latest status/result for late pages: at most :data:`MAX_CAMERAS` cameras."""
        self._latest[(cam, kind)] = text
        self._latest.move_to_end((cam, kind))
        while len(self._latest) > 2 * MAX_CAMERAS:  # a flood of invented camera ids cannot grow it
            self._latest.popitem(last=False)

    def _broadcast(self, text: str) -> None:
        import websockets

        self.forwarded += 1
        websockets.broadcast(self.clients, text)

    # -- the web side ---------------------------------------------------------------------------

    def _serve_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        from .dashboard_page import PAGE

        page = PAGE.encode("utf-8")
        csp = content_security_policy(PAGE)

        def http(connection, request):
            path = urlsplit(request.path).path
            if path not in ("/ws", "/", "/index.html"):
                return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
            if not self._authorized(request):
                self.refused += 1
                return connection.respond(HTTPStatus.UNAUTHORIZED, "this dashboard needs its token: open the URL "
                                          "`auflow dashboard` printed (…/?token=…)\n")
            if path == "/ws":
                return None  # the WebSocket handshake goes on
            headers = Headers([
                ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page))),
                ("Cache-Control", "no-store"),
                ("Content-Security-Policy", csp),
                ("Referrer-Policy", "no-referrer"),  # the token in this URL goes nowhere else
            ])
            if self.token is not None:  # the page's WebSocket (same origin) carries it from here on
                headers["Set-Cookie"] = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return Response(HTTPStatus.OK.value, "OK", headers, page)

        async def handler(ws):
            self.clients.add(ws)
            try:
                for text in list(self._latest.values()):
                    await ws.send(text)
                await ws.wait_closed()
            finally:
                self.clients.discard(ws)

        self._loop = asyncio.get_running_loop()
        async with serve(handler, self.host, self.port, process_request=http, max_size=2**16) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await server.wait_closed()


def run_dashboard(endpoints: Sequence[str], host: str = "127.0.0.1", port: int = 8765,
                  curve_server_key: str | None = None, token_file: str | Path | None = None) -> Dashboard:
    """Start a dashboard; the caller waits on it (``.wait()``) and stops it. ``token_file``: the token
    viewers must present (default: none on loopback, a generated one elsewhere)."""
    token = read_token_file(token_file) if token_file is not None else None
    return Dashboard(endpoints, host, port, curve_server_key=curve_server_key, token=token).start()


__all__ = ["COOKIE", "Dashboard", "is_loopback_host", "read_token_file", "run_dashboard"]
