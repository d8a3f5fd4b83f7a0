"""CURVE encryption for remote subscribers: key files and socket set-up (opt-in).

Key files use ZeroMQ's certificate format (the one czmq's ``zcert`` and ``zmq.auth`` read), so
they work with any ZeroMQ client, not only auflow:

- ``NAME.key``: the public key, to hand to the other side (mode 0644);
- ``NAME.key_secret``: the public and the secret key (mode 0600: only its owner may read it).

The publisher is the CURVE *server*: it needs its own ``.key_secret``. A subscriber needs the
server's *public* key (a ``.key`` file or the 40-character Z85 text) and a key pair of its own;
without one it makes a throwaway pair. A subscriber that lacks the server's public key cannot
complete the handshake and receives nothing. Nothing here restricts *which* clients may connect:
anyone holding the server's public key can subscribe (put a ZAP authenticator in front to
allow-list client keys).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import zmq

from auflow.engine.errors import ConfigError

_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"?([^"\s]+)"?\s*$')


def require_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE; install pyzmq's wheels (they include libsodium)")


def _key_text(name: str, public: str, secret: str | None) -> str:
    lines = [f"#   auflow CURVE {'secret' if secret else 'public'} key, {time.strftime('%Y-%m-%d %H:%M:%S')}",
             "#   ZeroMQ certificate format (zmq.auth.load_certificate / czmq zcert)",
             "" if secret is None else "#   keep this file private: it lets anyone act as this key's owner",
             "metadata", f'    name = "{name}"', "curve", f'    public-key = "{public}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret}"')
    return "\n".join(line for line in lines if line != "") + "\n"


def _write(path: Path, text: str, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ConfigError(f"{path} exists; keep it, or pass --force to replace the key pair") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and an existing file keeps its own
        f.write(text)


def write_keypair(out_dir: str | Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Make a key pair with ``zmq.curve_keypair()``; write ``NAME.key`` and ``NAME.key_secret`` (0600)."""
    require_curve()
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"key name must be a plain file name, got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = (k.decode("ascii") for k in zmq.curve_keypair())
    pub_path, sec_path = out / f"{name}.key", out / f"{name}.key_secret"
    _write(sec_path, _key_text(name, public, secret), 0o600, overwrite)
    _write(pub_path, _key_text(name, public, None), 0o644, overwrite)
    return pub_path, sec_path


def _read_keys(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read CURVE key file {path}: {exc.strerror}; make one with `auflow keys NAME`") from None
    keys = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            keys[m.group(1)] = m.group(2)
    for kind, key in keys.items():
        if not _Z85_KEY.match(key):
            raise ConfigError(f"{path}: the {kind} key is not a 40-character Z85 CURVE key")
    return keys


def load_secret_key_file(path: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file; warns nothing, refuses a world-readable one."""
    path = Path(path)
    keys = _read_keys(path)
    if "secret" not in keys or "public" not in keys:
        raise ConfigError(f"{path} holds no secret key; give the NAME.key_secret file made by `auflow keys NAME`")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} can be read by other users; chmod 600 {path}")
    return keys["public"].encode("ascii"), keys["secret"].encode("ascii")


def load_public_key(key: str | Path) -> bytes:
    """A server's public key from a ``.key`` / ``.key_secret`` file, or given as its 40-character Z85 text."""
    text = str(key)
    if _Z85_KEY.match(text) and not Path(text).exists():
        return text.encode("ascii")
    keys = _read_keys(Path(text))
    if "public" not in keys:
        raise ConfigError(f"{text} holds no public key (expected a NAME.key file from `auflow keys NAME`)")
    return keys["public"].encode("ascii")


def make_server(sock: zmq.Socket, secret_key_file: str | Path) -> None:
    """Make ``sock`` a CURVE server with the key pair in ``secret_key_file`` (before bind)."""
    require_curve()
    public, secret = load_secret_key_file(secret_key_file)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def make_client(sock: zmq.Socket, server_key: str | Path, client_key_file: str | Path | None = None) -> None:
    """Make ``sock`` a CURVE client of the server with public key ``server_key`` (before connect).

    Without ``client_key_file`` the client uses a throwaway key pair (fine unless the server
    allow-lists client keys)."""
    require_curve()
    sock.curve_serverkey = load_public_key(server_key)
    public, secret = load_secret_key_file(client_key_file) if client_key_file else zmq.curve_keypair()
    sock.curve_publickey = public
    sock.curve_secretkey = secret
