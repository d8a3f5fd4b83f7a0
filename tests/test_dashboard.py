"""`auflow dashboard` in a real headless browser (Playwright driving Debian's Chromium).

- Two runs on generated face videos publish at once, on two endpoints, into one dashboard; the
  page gets a tile per camera, each with its own tracks, whose AU bars and expression appear and
  change, and every value shown equals the value on that camera's wire for the same ``seq``. One
  camera is named ``<img src=x onerror=…>`` (the real pipeline accepts it): its name stays text.
  (The two runs go concurrently, so the pair costs little more than the single run this test was.)
- A hand-made publisher (the project's own wire encoder and Publisher) sends hostile HTML in every
  string the wire lets it: camera, session, model names, AU names, expression labels, state,
  track, eos reason. The page shows the literal text, no element is made from it, no script runs.

Screenshots, one per scenario, are kept in build/test-artifacts/dashboard*.png.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from auflow.engine.config import load_config
from auflow.engine.wire.subscriber import Subscriber
from helpers import free_port, write_face_video

CHROMIUM = os.environ.get("AUFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("websockets", reason="websockets is not installed (pip install 'auflow[dashboard]')")
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"

# hostile strings: an element with an inline handler, and a tag soup that ends the page's own script
HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE_SCRIPT = "</script><script>window.__pwned=2</script>"  # has '/', so it cannot be a camera id (topic)

# what the page shows, read from its data-* attributes (the values it also draws)
READ_PAGE = """() => [...document.querySelectorAll('.cam')].flatMap(cam => [...cam.querySelectorAll('.track')].map(t => ({
  cam: cam.dataset.cam, track: Number(t.dataset.track), seq: Number(t.dataset.seq),
  expr: t.querySelector('[data-field=expr]').dataset.label,
  au: Object.fromEntries([...t.querySelectorAll('[data-au]')].map(r => [r.dataset.au, r.dataset.value])),
  shown: Object.fromEntries([...t.querySelectorAll('[data-au]')].map(r => [r.dataset.au, r.querySelector('.value').textContent])),
})))"""

# the models each tile names for its outputs: {cam: {output: {name, kind, text}}}
READ_MODELS = """() => Object.fromEntries([...document.querySelectorAll('.cam')].map(c => [c.dataset.cam,
  Object.fromEntries([...c.querySelectorAll('.model')].map(s => [s.dataset.output,
                                                                 Object.assign({name: s.dataset.name, kind: s.dataset.kind, text: s.textContent},
                                                                               s.dataset.unsupported ? {unsupported: s.dataset.unsupported.split(',')} : {})]))]))"""

# did anything from the wire become markup or run? (the page's only script is its own)
LEAKS = """() => ({
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  scripts: document.scripts.length,
  foreign: [...document.querySelectorAll('img, svg, iframe, object, embed, math, link, meta[http-equiv]')].map(e => e.outerHTML),
  handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].filter(a => a.name.startsWith('on'))
                                                               .map(a => `${e.tagName} ${a.name}`)),
})"""
NO_LEAK = {"pwned": None, "scripts": 1, "foreign": [], "handlers": []}

ALL_ENDED = """n => { const s = [...document.querySelectorAll('.cam [data-field=state]')];
                      return s.length === n && s.every(e => e.textContent === 'ended'); }"""


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module; each test opens its own page."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def small_face_video(tmp_path_factory) -> Path:
    """A second, different clip (30 frames, 256×192): its AU values differ from ``face_video``'s."""
    return write_face_video(tmp_path_factory.mktemp("video2") / "small.mp4", frames=30, size=(256, 192))


def _open(chromium, url: str, width: int = 1040):  # two tiles side by side
    page = chromium.new_page(viewport={"width": width, "height": 620})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-connected='1']", timeout=15_000)
    return page, errors


def _play(chromium, tmp_path: Path, runs: dict[str | None, Path], shot: str, extra: tuple[str, ...] = ()):
    """Run each (cam -> video) concurrently, each publishing on its own endpoint, into one dashboard.

    Returns (page snapshots of every track, {(cam, seq): wire header}, the test subscriber's lost
    count, the runs' outcomes, what leaked into the page, the models each tile names at the end). The page is open, and every publisher
    waits for the dashboard's 4 subscriptions and ours, before the first frame: nothing is missed.
    """
    from auflow.engine import runner
    from auflow.engine.dashboard import Dashboard

    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in runs]
    outcomes: dict[int, object] = {}
    threads = []
    for i, ((cam, video), endpoint) in enumerate(zip(runs.items(), endpoints)):
        sets = [f"publish.endpoint={endpoint}", "publish.wait_subscribers=5", "publish.wait_timeout_s=60", *extra]
        cfg = load_config(None, sets + ([f"source.cam={cam}"] if cam else []))
        threads.append(threading.Thread(
            target=lambda i=i, cfg=cfg, video=video: outcomes.setdefault(i, runner.run(cfg, [str(video)],
                                                                                         run_dir=tmp_path / f"run{i}")),
            daemon=True))
    wire: dict[tuple[str, int], dict] = {}
    snapshots: list[dict] = []
    with Subscriber(endpoints, topics=["result/"]) as sub, Dashboard(endpoints, port=0) as dash:
        page, errors = _open(chromium, dash.url)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            while (msg := sub.recv(0)) is not None:
                wire[(msg.cam, msg.header["seq"])] = msg.header
            snapshots += [s for s in page.evaluate(READ_PAGE) if s["track"] >= 0]
            if not any(t.is_alive() for t in threads) and sub.recv(0.3) is None:
                break
            time.sleep(0.2)  # each look at the page costs CPU the runs need; 5 a second sees plenty of seqs
        page.wait_for_function(ALL_ENDED, arg=len(runs), timeout=10_000)
        snapshots += [s for s in page.evaluate(READ_PAGE) if s["track"] >= 0]
        leaks, models = page.evaluate(LEAKS), page.evaluate(READ_MODELS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / shot))
        page.close()
    for t in threads:
        t.join(30)
    assert not errors, f"the page threw: {errors}"
    return snapshots, wire, sub.gaps.lost, [outcomes.get(i) for i in range(len(runs))], leaks, models


def _check_values(snapshots: list[dict], wire: dict[tuple[str, int], dict]) -> None:
    """Every track the page showed equals, bar by bar, that camera's wire header of the same seq."""
    for snap in snapshots:
        msg = wire[(snap["cam"], snap["seq"])]
        face = next(f for f in msg["faces"] if f["track"] == snap["track"])
        # data-value is JavaScript's String(p): the shortest text that reads back as the same double
        # (Python's repr, except 0.0 -> "0"), so compare the numbers it reads back to
        assert snap["au"].keys() == face["au"].keys()
        assert {k: float(v) if v != "" else None for k, v in snap["au"].items()} == face["au"]
        # a null (an AU the model cannot measure) is shown "n/a", not 0
        assert snap["shown"] == {k: "n/a" if v is None else f"{v:.4f}" for k, v in face["au"].items()}
        best = max(face["expr"], key=lambda k: face["expr"][k])
        assert snap["expr"] == best


def test_dashboard_shows_the_values_on_the_wire(tmp_path, face_video, small_face_video, chromium):
    # the first camera is named from its file (astronaut.mp4), the second by config
    snapshots, wire, lost, outcomes, leaks, models = _play(chromium, tmp_path, {None: face_video, HOSTILE_IMG: small_face_video},
                                                   "dashboard.png", extra=("analyzer.threads=1",))
    assert all(o is not None and not o.errors for o in outcomes), outcomes
    assert wire and lost == 0
    assert leaks == NO_LEAK, "a camera id became markup"

    cams = ("astronaut", HOSTILE_IMG)
    assert {cam for cam, _ in wire} == set(cams)
    for cam in cams:
        mine = [s for s in snapshots if s["cam"] == cam]
        seqs = {s["seq"] for s in mine}
        assert len(seqs) >= 2, f"the page showed only results {sorted(seqs)} of {cam!r}"
        # its own tracks: every track in the tile is one that camera published
        wire_tracks = {f["track"] for (c, _), m in wire.items() if c == cam for f in m["faces"]}
        assert {s["track"] for s in mine} <= wire_tracks
        assert len({tuple(sorted(s["au"].items())) for s in mine}) >= 2, f"{cam!r}'s bars did not change"
        # the tile names the models of its camera's last result, and their kind (untrained says so)
        last = wire[max(k for k in wire if k[0] == cam)]["models"]
        assert models[cam] == {out: {**m, "text": f"{out}: {m['name']} ({m['kind']})"} for out, m in last.items()}
    # the two streams differ, so a value shown under the wrong camera would not pass _check_values
    a, b = cams
    both = {seq for c, seq in wire if c == a} & {seq for c, seq in wire if c == b}
    assert any(wire[(a, q)]["faces"] and wire[(b, q)]["faces"]
               and wire[(a, q)]["faces"][0]["au"] != wire[(b, q)]["faces"][0]["au"] for q in both)
    _check_values(snapshots, wire)


MODELS = {"au": {"name": HOSTILE_SCRIPT, "kind": HOSTILE_IMG}, HOSTILE_IMG: {"name": HOSTILE_IMG, "kind": "untrained"}}


def _hostile_messages() -> tuple[list[dict], dict]:
    """A short session where every string a publisher can put on the wire is hostile HTML."""
    from auflow.engine.wire import format as wire
    from fake_messages import face, result_message

    cam, sid = HOSTILE_IMG, HOSTILE_SCRIPT
    status = wire.status_message(cam, sid, "live", 24.5, 24.0, 0, 0, {HOSTILE_SCRIPT: 1}, -1)
    status["state"] = HOSTILE_IMG  # the builder only takes v1 states; a hostile publisher sends anything
    msgs = [status]
    for seq in range(6):
        top, second = (HOSTILE_SCRIPT, HOSTILE_IMG) if seq % 2 else (HOSTILE_IMG, HOSTILE_SCRIPT)
        faces = [face(0, seq), face(1, seq, x=200.0)]
        faces[1]["track"] = HOSTILE_IMG  # v1 says int; a hostile publisher sends a string
        for f in faces:
            f["au"] = {HOSTILE_SCRIPT: 0.25, HOSTILE_IMG: 0.75, **dict(list(f["au"].items())[:3])}
            f["expr"] = {top: 0.7, second: 0.2, "neutral": 0.1}
            f[HOSTILE_SCRIPT] = {HOSTILE_IMG: 0.5}  # an extra model output under a hostile name
        msg = result_message(cam, sid, seq, seq, faces)
        msg["models"] = MODELS
        msgs.append(msg)
    msgs.append(wire.window_message(cam, sid, 0, 0, 5, {HOSTILE_SCRIPT: 1.0}))
    last = {"seq": 5, "top": HOSTILE_SCRIPT}
    return msgs, last


def test_every_wire_string_stays_text(chromium):
    from auflow.engine.dashboard import Dashboard
    from auflow.engine.wire import format as wire
    from auflow.engine.wire.publisher import Publisher

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    msgs, last = _hostile_messages()
    with Dashboard([endpoint], port=0) as dash:
        with urllib.request.urlopen(dash.url, timeout=10) as resp:
            csp = dict(d.strip().split(" ", 1) for d in resp.headers["Content-Security-Policy"].split(";"))
        page, errors = _open(chromium, dash.url)  # connects: the page's own script runs under that policy
        with Publisher(endpoint, wait_subscribers=4, wait_timeout_s=15) as pub:  # the dashboard's 4 topics
            for m in msgs:
                assert pub.send(m)
            page.wait_for_function("n => document.querySelector('[data-field=last_seq]')?.textContent === n",
                                   arg=str(last["seq"]), timeout=10_000)
            shown = page.evaluate("""() => {
              const cam = document.querySelector('.cam'), q = s => [...cam.querySelectorAll(s)];
              return {cam: cam.dataset.cam, title: cam.querySelector('h2').textContent,
                      state: cam.querySelector('[data-field=state]').textContent,
                      tracks: q('.track h3').map(h => h.textContent),
                      au: q('[data-au]').map(r => [r.dataset.au, r.firstChild.textContent]),
                      expr: q('[data-field=expr]').map(e => [e.dataset.label, e.textContent]),
                      fused: q('[data-field=fused]').map(e => [e.dataset.label || "", e.textContent]),
                      legend: q('.legend span').map(s => s.textContent),
                      text: document.body.innerText};
            }""")
            leaks_live, models = page.evaluate(LEAKS), page.evaluate(READ_MODELS)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-hostile.png"))
            pub.send(wire.eos_message(HOSTILE_IMG, HOSTILE_SCRIPT, HOSTILE_SCRIPT, last["seq"]))
            page.wait_for_function(ALL_ENDED, arg=1, timeout=10_000)
        leaks_end = page.evaluate(LEAKS)
        page.close()
    assert not errors, f"the page threw: {errors}"
    assert leaks_live == NO_LEAK and leaks_end == NO_LEAK
    # a second wall: only the page's own script may run (by hash), so no inline handler would either
    assert "'unsafe-inline'" not in csp["script-src"] and csp["script-src"].startswith("'sha256-")
    # the literal text is on the page, where each string belongs
    assert shown["cam"] == shown["title"] == HOSTILE_IMG
    assert shown["state"] == HOSTILE_IMG
    assert shown["tracks"] == ["track 0 " + shown["expr"][0][1] + shown["fused"][0][1],
                               f"track {HOSTILE_IMG} " + shown["expr"][1][1] + shown["fused"][1][1]]
    # the window's fused expression beside track 0's per-frame one, as text (no window for the other track)
    assert shown["fused"][0][0] == HOSTILE_SCRIPT and shown["fused"][0][1].startswith(f" · fused {HOSTILE_SCRIPT} 1.00")
    assert shown["fused"][1] == ["", ""]
    for au_rows in (shown["au"][:5], shown["au"][5:]):
        assert dict(au_rows)[HOSTILE_IMG] == HOSTILE_IMG and dict(au_rows)[HOSTILE_SCRIPT] == HOSTILE_SCRIPT
    assert shown["expr"][0] == [last["top"], f"{last['top']} 0.70"]
    assert {HOSTILE_IMG, HOSTILE_SCRIPT} <= set(shown["legend"])
    assert HOSTILE_IMG in shown["text"] and HOSTILE_SCRIPT in shown["text"]
    assert models == {HOSTILE_IMG: {out: {**m, "text": f"{out}: {m['name']} ({m['kind']})"} for out, m in MODELS.items()}}
