"""CURVE: `auflow keys` writes key pairs; with CURVE on, only a subscriber holding the server's key
receives anything, and it receives everything."""

from __future__ import annotations

import os
import stat

import pytest
import zmq
from typer.testing import CliRunner

from auflow.engine.cli.main import app
from auflow.engine.errors import ConfigError
from auflow.engine.wire import format as wire
from auflow.engine.wire.curve import load_public_key, load_secret_key_file, write_keypair
from auflow.engine.wire.publisher import Publisher
from auflow.engine.wire.subscriber import Subscriber
from fake_messages import face, result_message

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def test_keys_command_writes_a_private_secret_file(tmp_path):
    result = CliRunner().invoke(app, ["keys", "server", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pub, sec = tmp_path / "server.key", tmp_path / "server.key_secret"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    assert "secret-key" not in pub.read_text() and "secret-key" in sec.read_text()
    public, secret = load_secret_key_file(sec)
    assert load_public_key(pub) == public and len(secret) == 40
    # the files are ZeroMQ certificates: zmq.auth reads them too
    import zmq.auth

    assert zmq.auth.load_certificate(sec) == (public, secret)
    again = CliRunner().invoke(app, ["keys", "server", "--out", str(tmp_path)])
    assert again.exit_code != 0 and "--force" in again.output


def test_a_readable_secret_file_is_refused(tmp_path):
    _, sec = write_keypair(tmp_path, "srv")
    os.chmod(sec, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_secret_key_file(sec)


def test_only_a_subscriber_with_the_server_key_receives(tmp_path):
    server_pub, server_sec = write_keypair(tmp_path, "server")
    _, client_sec = write_keypair(tmp_path, "client")
    _, other_sec = write_keypair(tmp_path, "other")
    other_pub = load_public_key(tmp_path / "other.key").decode()
    pub = Publisher("tcp://127.0.0.1:*", curve_secret_key_file=str(server_sec)).start()
    subs = []
    try:
        ep = pub.bound_endpoint
        good = Subscriber(ep, curve_server_key=str(server_pub), curve_client_key_file=str(client_sec))
        throwaway = Subscriber(ep, curve_server_key=load_public_key(server_pub).decode())  # own pair made up
        plain = Subscriber(ep)  # no CURVE at all
        wrong = Subscriber(ep, curve_server_key=other_pub)  # someone else's server key
        subs = [good, throwaway, plain, wrong]
        assert pub.wait_for_subscribers(2, 5.0)
        assert not pub.wait_for_subscribers(3, 0.5)  # the other two never got through the handshake
        n = 120
        for seq in range(n):
            pub.send(result_message("cam1", "s1", seq, seq, [face(0, seq)]))
        pub.send(wire.eos_message("cam1", "s1", "end", n - 1))
        for sub in (good, throwaway):
            got = []
            while (msg := sub.recv(5.0)) is not None:
                got.append(msg)
                if msg.type == "eos":
                    break
            assert [m.header["seq"] for m in got if m.type == "result"] == list(range(n))
            assert got[-1].type == "eos" and sub.gaps.lost == 0
        for sub in (plain, wrong):
            assert sub.recv(0.5) is None and sub.received == 0
    finally:
        for s in subs:
            s.close()
        pub.stop()


def test_client_key_without_server_key_is_an_error(tmp_path):
    _, sec = write_keypair(tmp_path, "client")
    with pytest.raises(ConfigError, match="server's public key"):
        Subscriber("tcp://127.0.0.1:5", curve_client_key_file=str(sec))
