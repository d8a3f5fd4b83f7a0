"""What the command line names, turned into streams: files, folders, globs, URLs, webcams.

A folder of videos and a glob (``'interviews/*.mp4'``, quoted so auflow expands it) become a
*batch*: one stream per file, a few at a time (``source.parallel``), resumable through the run
directory's manifest. Several files named one by one are a batch too. A folder of images is one
stream. URLs and webcams are live streams and run for the whole run.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SourceError
from .images import IMAGE_EXTENSIONS, natural_key
from .webcam import is_webcam

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
                    ".mpg", ".mpeg", ".3gp", ".ogv", ".h264", ".h265", ".hevc"}
_GLOB_CHARS = set("*?[")


def is_live_uri(uri: str) -> bool:
    return "://" in uri or is_webcam(uri)


def _videos_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS), key=natural_key)


@dataclass
class Inputs:
    """The streams of a run. ``batch``: files processed a few at a time, resumable."""

    uris: list[str] = field(default_factory=list)
    batch: bool = False
    #: a stable name for the run directory of a batch (the folder's or the glob's)
    name: str = "run"

    @property
    def files(self) -> list[str]:
        return [u for u in self.uris if not is_live_uri(u) and not Path(u).is_dir()]


def _exists(path: Path) -> bool:
    """``path.exists()``, with a name the OS refuses (too long, a NUL byte) as one SourceError line."""
    try:
        return path.exists()
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise SourceError(f"{str(path)[:200]}{'...' if len(str(path)) > 200 else ''}: not a usable path ({why})") from None


def expand_inputs(args: list[str]) -> Inputs:
    out = Inputs()
    expanded = False
    for arg in args:
        if is_live_uri(arg):
            out.uris.append(arg)
            continue
        path = Path(arg)
        if not _exists(path) and _GLOB_CHARS & set(arg):
            matches = [Path(m) for m in glob.glob(arg, recursive=True)]
            videos = sorted((m for m in matches if m.is_file() and m.suffix.lower() in VIDEO_EXTENSIONS), key=natural_key)
            if not videos:
                raise SourceError(f"{arg}: no video files match ({len(matches)} paths matched, none with a video extension)")
            out.uris += [str(v) for v in videos]
            out.name = Path(arg).parent.name or "batch"
            expanded = True
        elif path.is_dir():
            videos = _videos_in(path)
            if videos:
                out.uris += [str(v) for v in videos]
                out.name = path.resolve().name or "batch"
                expanded = True
            elif any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
                out.uris.append(arg)  # an image folder is one stream
            else:
                raise SourceError(f"{arg}: no videos or images in this folder")
        else:
            out.uris.append(arg)
    out.batch = expanded or len(out.files) > 1
    return out
