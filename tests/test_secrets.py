"""No camera password in anything a run writes: summary.json, manifest.json, JSONL, the terminal, logs.

Before issue 22, ``auflow run rtsp://admin:PASSWORD@host/live`` masked the password in the log but wrote
the URL in clear into ``summary.json``. These runs grep every byte the run left behind for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port

sys.path.insert(0, str(Path(__file__).parent / "engine" / "sources"))  # stream_servers.py
from stream_servers import rtsp_server  # noqa: E402,F401 - a fixture

PASSWORD = "Pw-7q2ZxSECRET"
TOKEN = "Tk-91ffSECRET"
AUFLOW = [sys.executable, "-m", "auflow.engine.cli.main"]
ENV = dict(os.environ, COLUMNS="200", NO_COLOR="1")


def leaks(out_dir: Path, *streams: str) -> list[str]:
    """Every file under ``out_dir`` and every captured stream that contains a secret."""
    found = [str(p) for p in out_dir.rglob("*") if p.is_file()
             and (PASSWORD.encode() in p.read_bytes() or TOKEN.encode() in p.read_bytes())]
    return found + [f"stream {i}" for i, s in enumerate(streams) if PASSWORD in s or TOKEN in s]


def test_no_password_in_any_output_of_a_failed_camera_run(tmp_path, face_video):
    """Two cameras that refuse the connection and two files (a batch, so a manifest is written too)."""
    second = tmp_path / "second.mp4"
    shutil.copy(face_video, second)
    cams = [f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/live?token={TOKEN}",
            f"http://viewer:{PASSWORD}@127.0.0.1:{free_port()}/stream.mjpg"]
    out = tmp_path / "run"
    p = subprocess.run([*AUFLOW, "run", *cams, str(face_video), str(second), "--out", str(out), "--publish", "none",
                        "--set", "analyzer.models=[]", "--set", "source.open_timeout_s=1", "-v"],
                       capture_output=True, text=True, timeout=240, env=ENV)
    assert p.returncode == 3, p.stderr[-3000:]  # the cameras failed, the files ran
    written = {x.name for x in out.iterdir()}
    assert {"summary.json", "manifest.json", "config.yaml"} <= written and sum(n.endswith(".jsonl") for n in written) == 4
    assert "admin:***@127.0.0.1" in (out / "summary.json").read_text()  # the URL is there, masked
    assert "cannot connect" in p.stderr  # the error lines were printed
    assert leaks(out, p.stdout, p.stderr) == []


@pytest.mark.rtsp
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_no_password_in_any_output_of_a_live_camera_run(rtsp_server, tmp_path):
    """A camera that streams (the local RTSP server ignores the credentials), verbose logs, then Ctrl-C."""
    url = rtsp_server.url.replace("rtsp://", f"rtsp://admin:{PASSWORD}@") + f"?token={TOKEN}"
    out = tmp_path / "run"
    proc = subprocess.Popen([*AUFLOW, "run", url, "--out", str(out), "--publish", "none", "--set", "analyzer.models=[]",
                             "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        jsonl = None
        while time.monotonic() < deadline and proc.poll() is None:
            jsonl = next(out.glob("*.jsonl"), None) if out.exists() else None
            if jsonl is not None and jsonl.read_text().count('"type":"result"') >= 5:
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert jsonl is not None and jsonl.read_text().count('"type":"result"') >= 5
    assert "admin:***@127.0.0.1" in (out / "summary.json").read_text()
    assert leaks(out, stdout, stderr) == []
