"""Endpoints ZeroMQ would misread are refused before a socket sees them (tcp://0.0.0.0:99999 bound a
random port; the subscriber the user configured never connected)."""

from __future__ import annotations

import pytest
from auflow.engine.errors import ConfigError
from auflow.engine.wire.endpoint import check_endpoint
from auflow.engine.wire.publisher import Publisher
from auflow.engine.wire.subscriber import Subscriber


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:99999", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:0"])
def test_publisher_refuses_a_port_out_of_range(endpoint):
    with pytest.raises(ConfigError, match="port .* is not a number from 1 to 65535"):
        Publisher(endpoint).start()


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:99999", "tcp://*:5555", "tcp://127.0.0.1:*", "nonsense",
                                      "tcp://127.0.0.1:5555 "])
def test_subscriber_refuses_what_it_cannot_connect_to(endpoint):
    with pytest.raises(ConfigError, match="endpoint"):
        Subscriber([endpoint])


def test_bind_accepts_wildcards_connect_does_not():
    assert check_endpoint("tcp://*:*", bind=True) == "tcp://*:*"
    with pytest.raises(ConfigError):
        check_endpoint("tcp://*:5555", bind=False)


def test_a_valid_random_port_still_binds():
    with Publisher("tcp://127.0.0.1:*") as pub:
        assert pub.bound_endpoint.startswith("tcp://127.0.0.1:") and not pub.bound_endpoint.endswith(":*")
