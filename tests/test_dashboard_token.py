"""The dashboard on a non-loopback address needs its token; on loopback it stays open (issue 22).

Before, `auflow dashboard --host 0.0.0.0` only warned: anyone who reached the port saw every camera.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from auflow.engine.errors import ConfigError
from helpers import free_port

pytest.importorskip("websockets", reason="websockets is not installed (pip install 'auflow[dashboard]')")
from auflow.engine.dashboard import COOKIE, Dashboard, run_dashboard  # noqa: E402
from auflow.engine.wire import format as wire  # noqa: E402
from auflow.engine.wire.publisher import Publisher  # noqa: E402


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def ws_first_message(port: int, headers: dict, publish) -> str:
    """Open the page's WebSocket with ``headers``; publish; the first message it gets ("refused: 401" if none)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def go():
        try:
            async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=headers, open_timeout=10) as ws:
                for _ in range(50):  # the dashboard's subscription may take a moment to arrive
                    publish()
                    try:
                        return await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        continue
                return "nothing arrived"
        except InvalidStatus as e:
            return f"refused: {e.response.status_code}"

    return asyncio.run(go())


@pytest.fixture
def publisher():
    with Publisher(f"tcp://127.0.0.1:{free_port()}") as pub:
        yield pub


def test_non_loopback_dashboard_refuses_viewers_without_its_token(publisher):
    def publish():
        publisher.send(wire.status_message("cam1", "s1", "live", 1.0, 1.0, 0, 0, {}, -1))

    with Dashboard([publisher.bound_endpoint], host="0.0.0.0", port=0) as dash:
        token, base = dash.token, f"http://127.0.0.1:{dash.port}"
        assert token and len(token) >= 32 and f"?token={token}" in dash.url
        assert get(f"{base}/")[0] == 401
        assert get(f"{base}/?token=not-{token}")[0] == 401
        assert get(f"{base}/ws")[0] == 401
        assert ws_first_message(dash.port, {}, publish) == "refused: 401"
        assert ws_first_message(dash.port, {"Cookie": f"{COOKIE}=guess"}, publish) == "refused: 401"
        status, headers = get(f"{base}/?token={token}")
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert '"cam":"cam1"' in ws_first_message(dash.port, {"Cookie": cookie}, publish)
        assert '"cam":"cam1"' in ws_first_message(dash.port, {"Authorization": f"Bearer {token}"}, publish)
        assert dash.refused >= 5


def test_loopback_dashboard_stays_open(publisher):
    def publish():
        publisher.send(wire.status_message("cam1", "s1", "live", 1.0, 1.0, 0, 0, {}, -1))

    with Dashboard([publisher.bound_endpoint], host="127.0.0.1", port=0) as dash:
        assert dash.token is None and "token" not in dash.url
        assert get(f"http://127.0.0.1:{dash.port}/")[0] == 200
        assert '"cam":"cam1"' in ws_first_message(dash.port, {}, publish)


def test_token_from_a_file(tmp_path, publisher):
    good = tmp_path / "token"
    good.write_text("a-long-enough-token-123\n")
    dash = run_dashboard([publisher.bound_endpoint], host="0.0.0.0", port=0, token_file=good)
    try:
        assert dash.token == "a-long-enough-token-123"
        assert get(f"http://127.0.0.1:{dash.port}/")[0] == 401
        assert get(f"http://127.0.0.1:{dash.port}/?token=a-long-enough-token-123")[0] == 200
    finally:
        dash.stop()
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        run_dashboard([publisher.bound_endpoint], host="0.0.0.0", port=0, token_file=short)
    with pytest.raises(ConfigError, match="cannot read"):
        run_dashboard([publisher.bound_endpoint], host="0.0.0.0", port=0, token_file=tmp_path / "missing")


def test_cli_prints_the_generated_token_once():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "dashboard", f"tcp://127.0.0.1:{free_port()}",
                             "--host", "0.0.0.0", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, COLUMNS="300", NO_COLOR="1"))
    try:
        line = proc.stdout.readline()
        assert line.startswith("dashboard: http://0.0.0.0:") and "?token=" in line, line
        token = line.split("?token=", 1)[1].split()[0]
        assert get(f"http://127.0.0.1:{port}/")[0] == 401
        assert get(f"http://127.0.0.1:{port}/?token={token}")[0] == 200
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=30)
    assert token not in stdout and token not in stderr  # printed once: the line read above


@pytest.mark.parametrize("port", [99999, -1])
def test_dashboard_port_out_of_range_is_a_config_error(port):
    with pytest.raises(ConfigError, match="port"):
        Dashboard(["tcp://127.0.0.1:5555"], port=port)
