"""ZeroMQ endpoints checked before a socket sees them.

ZeroMQ reads ``tcp://0.0.0.0:99999`` without complaint and binds a port of its own choosing, so a
subscriber configured for the port the user wrote never connects. :func:`check_endpoint` refuses
what ZeroMQ would misread, with one line that says what an endpoint looks like.
"""

from __future__ import annotations

import ipaddress
import re

from auflow.engine.errors import ConfigError

#: transports a PUB/SUB pair of auflow uses
TRANSPORTS = ("tcp", "ipc", "inproc")
#: a host name or a network interface name (``eth0``), as ZeroMQ resolves them
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")
EXAMPLE = "tcp://127.0.0.1:5555 (or tcp://127.0.0.1:* for any free port, ipc:///tmp/auflow.sock)"


def _check_host(host: str) -> str | None:
    """Why ``host`` is not a host ZeroMQ can use (None when it is)."""
    if host == "*":
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1].split("%", 1)[0])
            return None
        except ValueError:
            return f"{host} is not an IPv6 address"
    if re.fullmatch(r"[0-9.]+", host):  # looks numeric: must be a whole IPv4 address
        try:
            ipaddress.IPv4Address(host)
            return None
        except ValueError:
            return f"{host} is not an IPv4 address"
    if _HOSTNAME.match(host):
        return None
    return f"{host!r} is not a host name, an IP address or *"


def check_endpoint(endpoint: object, bind: bool) -> str:
    """``endpoint`` unchanged when ZeroMQ will read it as written; else :class:`ConfigError`.

    ``bind``: the publisher's side, where ``*`` stands for every interface or any free port; a
    subscriber (``bind=False``) must name both.
    """
    if not isinstance(endpoint, str):
        raise ConfigError(f"an endpoint is a string such as {EXAMPLE}, got {type(endpoint).__name__}")
    shown = endpoint if len(endpoint) <= 80 else endpoint[:77] + "..."
    transport, sep, rest = endpoint.partition("://")
    if not sep:
        raise ConfigError(f"endpoint {shown!r} has no transport: write it like {EXAMPLE}")
    if transport not in TRANSPORTS:
        raise ConfigError(f"endpoint {shown!r}: transport {transport[:20]!r} is not one of {', '.join(TRANSPORTS)}")
    if not rest or any(c.isspace() or not c.isprintable() for c in rest):
        raise ConfigError(f"endpoint {shown!r}: {'empty address' if not rest else 'the address has spaces or control characters'}")
    if transport != "tcp":
        return endpoint
    host, colon, port = rest.rpartition(":")
    if not colon or not host:
        raise ConfigError(f"endpoint {shown!r}: a tcp endpoint is tcp://HOST:PORT, e.g. {EXAMPLE}")
    if port == "*":
        if not bind:
            raise ConfigError(f"endpoint {shown!r}: a subscriber connects to a port number, not *")
    elif not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"endpoint {shown!r}: port {port[:20]!r} is not a number from 1 to 65535 (or * for any free port)")
    why = _check_host(host)
    if why is None and host == "*" and not bind:
        why = "a subscriber connects to one host, not *"
    if why is not None:
        raise ConfigError(f"endpoint {shown!r}: {why}")
    return endpoint


__all__ = ["TRANSPORTS", "check_endpoint"]
