"""Imports point one way (issue 20): the engine does not import plugins or models, except its CLI.

The contract is import-linter's, in pyproject.toml ([tool.importlinter]), and it ignores no import;
should one ever be listed as debt (ignore_imports), the test fails once it is paid, so the list stays
true. import-linter (grimp) reads packages from the file system, and the editable install maps
``auflow.engine``, ``auflow.models``, ... from other folders, so the test lays the package out as the
wheel does (links, or a copy of engine/ for the negative check) and runs ``lint-imports`` on that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter", reason="import-linter is not installed (pip install -e '.[dev]')")


def _layout(tmp: Path, copy_engine: bool = False) -> Path:
    pkg = tmp / "auflow"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").symlink_to(ROOT / "engine" / "_auflow" / "__init__.py")
    for part in ("engine", "models", "plugins", "configs"):
        if part == "engine" and copy_engine:
            shutil.copytree(ROOT / part, pkg / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (pkg / part).symlink_to(ROOT / part)
    return tmp


def _lint(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run([str(exe)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_engine_does_not_import_plugins_or_models(tmp_path):
    r = _lint(_layout(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout
    assert "No matches for ignored import" not in r.stdout  # every listed debt still exists: remove an entry once paid


def test_a_new_import_of_a_plugin_from_the_engine_breaks_the_contract(tmp_path):
    path = _layout(tmp_path, copy_engine=True)
    timeline = path / "auflow" / "engine" / "timeline.py"
    timeline.write_text(timeline.read_text() + "\nimport auflow.plugins.sinks  # noqa\n")
    r = _lint(path)
    assert r.returncode != 0 and "BROKEN" in r.stdout and "auflow.engine.timeline -> auflow.plugins.sinks" in r.stdout


def test_the_contract_covers_every_engine_module_but_the_cli():
    """A module added to engine/ must be named in the contract's source_modules (or be the CLI)."""
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    named = set(conf["source_modules"])
    here = {f"auflow.engine.{p.stem}" for p in (ROOT / "engine").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert here - {"auflow.engine.cli", "auflow.engine._auflow"} == named, (sorted(here - named), sorted(named - here))
