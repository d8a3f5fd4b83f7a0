"""The dashboard page never turns a wire string into HTML (a camera id like ``<script>`` stays text).

A static check of the served page's JavaScript: no HTML-parsing sinks at all, so every wire string
can only reach the DOM through ``textContent`` / ``dataset`` / ``className``. The browser-level
check with hostile strings is tests/test_dashboard.py (``browser`` mark). And a publisher inventing
camera ids cannot grow the bridge's memory or the page's tiles without bound.
"""

from __future__ import annotations

import re

from auflow.engine.dashboard_page import PAGE

HTML_SINKS = ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
              "DOMParser", "srcdoc", "eval(", "new Function", "setAttribute(\"on"]


def test_page_has_no_html_parsing_sink():
    found = [s for s in HTML_SINKS if s in PAGE]
    assert not found, f"the dashboard page uses {found}; wire strings must go through textContent"


def test_page_sets_text_with_textcontent():
    script = re.search(r"<script>(.*)</script>", PAGE, re.DOTALL)
    assert script, "the page has no inline script"
    assert "textContent" in script.group(1)


def test_late_page_memory_is_bounded_by_camera_count():
    from auflow.engine.dashboard import MAX_CAMERAS, Dashboard

    d = Dashboard(["tcp://127.0.0.1:1"])
    for i in range(MAX_CAMERAS + 50):
        d._remember(f"cam{i}", "status", "s")
        d._remember(f"cam{i}", "result", "r")
    d._remember("cam60", "result", "newer")  # heard again: kept ahead of the others
    assert len(d._latest) == 2 * MAX_CAMERAS
    cams = {c for c, _ in d._latest}
    assert "cam0" not in cams and f"cam{MAX_CAMERAS + 49}" in cams
    assert d._latest[("cam60", "result")] == "newer"
