"""A batch's memory: ``<run dir>/manifest.json`` records each file's state, so re-running the same
command after a crash or Ctrl-C skips what is done and redoes only what is not.

A file is *done* when its stream reached its end (damage counted, but read to the end) and its
outputs were flushed; it is identified by its resolved path, size and modification time, so a file
replaced by a new recording is processed again. The manifest is rewritten atomically (a temporary
file renamed over it) after every change, so a crash never leaves half a manifest behind.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..redaction import redact_text

log = logging.getLogger(__name__)

VERSION = 1


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class BatchManifest:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files: dict[str, dict] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("files"), dict):
                    raise ValueError(f"not a version {VERSION} manifest")
                self.files = data["files"]
            except (ValueError, OSError) as e:
                aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
                os.replace(self.path, aside)
                log.warning("%s is unreadable (%s): moved to %s; every file will be processed", self.path, e, aside.name)

    @staticmethod
    def key(path: str | Path) -> str:
        return str(Path(path).resolve())

    def entry(self, path: str | Path) -> dict | None:
        return self.files.get(self.key(path))

    def is_done(self, path: str | Path) -> bool:
        e = self.entry(path)
        if e is None or e.get("state") != "done":
            return False
        try:
            return e.get("fingerprint") == _fingerprint(Path(path))
        except OSError:
            return False

    def cam_for(self, path: str | Path) -> str | None:
        e = self.entry(path)
        return e.get("cam") if e else None

    def mark(self, path: str | Path, cam: str, state: str, save: bool = True, **info) -> None:
        """``state``: running | done | failed | interrupted. ``save=False``: in memory only, until
        the next :meth:`save` (many marks at once write the file once)."""
        p = Path(path)
        if isinstance(info.get("error"), str):
            info["error"] = redact_text(info["error"])
        entry = {"cam": cam, "state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        try:
            entry["fingerprint"] = _fingerprint(p)
        except OSError:
            pass
        self.files[self.key(p)] = entry
        if save:
            self.save()

    def save(self) -> None:
        """Rewrite the manifest atomically. When it cannot be written (a full disk) the previous version stays:
        it never marks done a file that is not, so a re-run redoes at most what it could not record."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": VERSION, "files": self.files}, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.error("cannot update %s: %s (it keeps its previous state)", self.path, e.strerror or e)
