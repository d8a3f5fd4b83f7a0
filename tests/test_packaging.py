"""The wheel holds every subpackage under `auflow.` and the packaged configs, and nothing at the top."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"engine": "auflow/engine", "models": "auflow/models", "plugins": "auflow/plugins", "configs": "auflow/configs"}


def source_packages() -> set[str]:
    pkgs = {"auflow/__init__.py"}
    for top, dest in MAPPED.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.relative_to(ROOT / top)
            if "_auflow" in rel.parts or "__pycache__" in rel.parts:
                continue
            pkgs.add(f"{dest}/{rel.as_posix()}")
    return pkgs


def test_wheel_contains_every_subpackage_and_default_config(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    wheel = next(tmp_path.glob("auflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = source_packages() - names
    assert not missing, f"packages missing from the wheel (add them to pyproject's packages): {sorted(missing)}"
    assert "auflow/configs/default.yaml" in names
    # the default config's `au` checkpoint and its card ship in the wheel (pyproject package-data)
    assert {"auflow/models/checkpoints/me_graphau_demo_student.pt", "auflow/models/checkpoints/me_graphau_demo_student.card.json"} <= names
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"auflow"}, f"wheel puts these at the top of site-packages: {tops}"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "auflow = auflow.engine.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_public_api_reexported():
    import auflow

    assert callable(auflow.create_model) and callable(auflow.list_models) and callable(auflow.subscribe)
    assert "me_graphau" in auflow.list_models()
