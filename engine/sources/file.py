"""Video files through PyAV: lossless, in decode order, every frame."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .pyav_source import PyAVSource, _reason


def mp4_index_missing(path: Path) -> bool:
    """An MP4/MOV whose top-level boxes have ``ftyp`` but no ``moov``: a recording cut short
    (the index is written last), which no demuxer can read as is."""
    try:
        size = path.stat().st_size
        types: set[bytes] = set()
        with open(path, "rb") as f:
            pos = 0
            while pos + 8 <= size and len(types) < 64:
                f.seek(pos)
                header = f.read(8)
                box = int.from_bytes(header[:4], "big")
                if box == 1:
                    box = int.from_bytes(f.read(8), "big")
                elif box == 0:
                    box = size - pos
                if box < 8:
                    break
                types.add(header[4:8])
                pos += box
        return b"ftyp" in types and b"moov" not in types
    except OSError:
        return False


class FileSource(PyAVSource):
    live = False
    kind = "file"

    def _check_before_open(self) -> None:
        from .inputs import _exists

        path = Path(self.uri)
        if not _exists(path):
            raise SourceError(f"{self.uri}: no such file")
        if path.is_dir():
            raise SourceError(f"{self.uri}: is a folder, not a video file")

    def _explain_open_error(self, e: BaseException) -> str:
        if mp4_index_missing(Path(self.uri)):
            return (f"{self.uri}: not a readable video: its index (moov atom), written when a recording ends, is "
                    "missing, so the recording was cut short; record to .mkv or .ts to keep what is written")
        return f"{self.uri}: not a readable video ({_reason(e)})"
