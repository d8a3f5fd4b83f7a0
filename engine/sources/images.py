"""A folder of still images as one stream, in natural file-name order (``img2`` before ``img10``).

The ``frame`` index is the image's position in that order, so a result maps back to its file; an
image that cannot be read is skipped and counted as a decode error (its index shows as a jump).
Images have no presentation time: ``pts`` is None.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from ..errors import SourceError
from ..types import FrameMeta, FramePacket
from .core import Source

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)


class ImageFolderSource(Source):
    live = False
    kind = "images"

    def __init__(self, uri: str, cam: str | None = None) -> None:
        super().__init__(uri, cam)
        self._files: list[Path] | None = None

    def open(self, sid: str | None = None) -> None:
        folder = Path(self.uri)
        if not folder.is_dir():
            raise SourceError(f"{self.uri}: no such folder")
        files = list_images(folder)
        if not files:
            raise SourceError(f"{self.uri}: no images in the folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self._files = files
        self.total_frames = len(files)
        self.finite = True
        self._start_session(sid)

    def frames(self) -> Iterator[FramePacket]:
        if self._files is None:
            raise SourceError(f"{self.uri}: frames() before open()")
        for index, path in enumerate(self._files):
            t0 = time.perf_counter()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.decode_errors += 1
                continue
            h, w = image.shape[:2]
            meta = FrameMeta(self.cam, self.sid, index, None, (1, 1), time.time_ns(), w, h)
            yield FramePacket(meta, image, {"decode": (time.perf_counter() - t0) * 1e3})

    def close(self) -> None:
        self._files = None
