"""`auflow dashboard` in a real headless browser (Playwright driving Debian's Chromium).

A run on a generated face video publishes; the dashboard bridges it to the page; the page's AU bars
and expression for a track appear and change, and every value shown equals the value on the wire
for the same ``seq``. The last screenshot is kept in build/test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from auflow.engine.config import load_config
from auflow.engine.wire.subscriber import Subscriber
from helpers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("websockets", reason="websockets is not installed (pip install 'auflow[dashboard]')")
CHROMIUM = os.environ.get("AUFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"

# what the page shows, read from its data-* attributes (the values it also draws)
READ_PAGE = """() => [...document.querySelectorAll('.cam')].flatMap(cam => [...cam.querySelectorAll('.track')].map(t => ({
  cam: cam.dataset.cam, track: Number(t.dataset.track), seq: Number(t.dataset.seq),
  expr: t.querySelector('[data-field=expr]').dataset.label,
  au: Object.fromEntries([...t.querySelectorAll('[data-au]')].map(r => [r.dataset.au, r.dataset.value])),
  shown: Object.fromEntries([...t.querySelectorAll('[data-au]')].map(r => [r.dataset.au, r.querySelector('.value').textContent])),
})))"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_dashboard_shows_the_values_on_the_wire(tmp_path, face_video):
    from auflow.engine import runner
    from auflow.engine.dashboard import Dashboard

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = load_config(None, [f"publish.endpoint={endpoint}", "publish.wait_subscribers=5", "publish.wait_timeout_s=60"])
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.setdefault("r", runner.run(cfg, [str(face_video)], run_dir=tmp_path / "run")),
                           daemon=True)
    wire: dict[int, dict] = {}
    # subscribers connect before the publisher binds (ZeroMQ reconnects), and the page is open before
    # the run starts: it waits for the dashboard's 4 subscriptions and ours, so nothing is missed
    with Subscriber(endpoint, topics=["result/"]) as sub, Dashboard([endpoint], port=0) as dash, \
            sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        page.goto(dash.url)
        page.wait_for_selector("body[data-connected='1']", timeout=15_000)
        run.start()
        snapshots = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            while (msg := sub.recv(0)) is not None:
                wire[msg.header["seq"]] = msg.header
            snapshots += [s for s in page.evaluate(READ_PAGE) if s["track"] >= 0]
            if not run.is_alive() and sub.recv(0.3) is None:
                break
            time.sleep(0.05)
        page.wait_for_function("() => document.querySelector('[data-field=state]').textContent === 'ended'", timeout=10_000)
        snapshots += [s for s in page.evaluate(READ_PAGE) if s["track"] >= 0]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        browser.close()
    run.join(30)
    assert "r" in outcome and not outcome["r"].errors
    assert wire and sub.gaps.lost == 0

    seqs = sorted({s["seq"] for s in snapshots})
    assert len(seqs) >= 2, f"the page showed only results {seqs}"
    for snap in snapshots:
        msg = wire[snap["seq"]]
        face = next(f for f in msg["faces"] if f["track"] == snap["track"])
        assert snap["au"] == {k: str(v) if v is not None else "" for k, v in face["au"].items()}
        assert snap["shown"] == {k: f"{v:.4f}" for k, v in face["au"].items() if v is not None}
        best = max(face["expr"], key=lambda k: face["expr"][k])
        assert snap["expr"] == best
    # the bars changed while the video played
    assert len({tuple(sorted(s["au"].items())) for s in snapshots}) >= 2
