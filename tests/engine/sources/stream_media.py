"""Small generated videos for the source tests, and ways to damage them."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def write_clip(path: Path, frames: int = 60, size=(320, 240), fps: int = 25, fmt: str | None = None,
               faststart: bool = False, face: bool = False, bframes: int = 0) -> Path:
    """A moving bar (or the astronaut's face drifting across, ``face=True``) in H.264.

    No B-frames by default, so decode order is display order and "the frames before the damage"
    is the frames whose packets lie before it."""
    w, h = size
    head = None
    if face:
        from helpers import astronaut_bgr

        head = cv2.resize(astronaut_bgr()[20:300, 100:380], (h * 3 // 4, h * 3 // 4))
    opts = {"movflags": "faststart"} if faststart else {}
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        s = out.add_stream("libx264", rate=fps, options={"bf": str(bframes), "g": "12"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.full((h, w, 3), 80, np.uint8)
            if head is not None:
                fh, fw = head.shape[:2]
                x = int((w - fw) * (0.2 + 0.6 * i / max(frames - 1, 1)))
                img[(h - fh) // 2:(h - fh) // 2 + fh, x:x + fw] = head
            else:
                img[:, (i * 5) % w:(i * 5) % w + 20] = 220
                img[10:40, 10:40] = rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)  # texture: bigger packets
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def plain_decode(path: Path) -> list[np.ndarray]:
    """Every frame as PyAV decodes it with nothing of auflow in between (BGR)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def packet_ends(path: Path) -> list[int]:
    """For each video packet in file order, the byte offset where the next one starts (file size for the last)."""
    with av.open(str(path)) as c:
        pos = [p.pos for p in c.demux(video=0) if p.size and p.pos is not None and p.pos >= 0]
    return pos[1:] + [path.stat().st_size]


def damage(clean: Path, out: Path, how: str, at: float = 0.55, nbytes: int = 4000, seed: int = 0) -> int:
    """``truncate`` the file at ``at`` of its size, or overwrite ``nbytes`` there with ``garbage``.
    Returns the number of leading frames whose bytes are untouched."""
    data = bytearray(clean.read_bytes())
    offset = int(len(data) * at)
    if how == "truncate":
        data = data[:offset]
    elif how == "garbage":
        data[offset:offset + nbytes] = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    else:
        raise ValueError(how)
    out.write_bytes(bytes(data))
    return sum(1 for end in packet_ends(clean) if end <= offset)
