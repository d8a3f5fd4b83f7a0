"""The dashboard page never turns a wire string into HTML (a camera id like ``<script>`` stays text).

A static check of the served page's JavaScript: no HTML-parsing sinks at all, so every wire string
can only reach the DOM through ``textContent`` / ``dataset`` / ``className``. (A browser-level
check with a hostile camera id would belong in tests/test_dashboard.py under the ``browser`` mark.)
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
