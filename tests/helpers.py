"""Builders the tests share: generated videos with a real face, small config files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np


def astronaut_bgr() -> np.ndarray:
    """scikit-image's public-domain astronaut photo (one real face), BGR uint8 512×512."""
    spec = importlib.util.find_spec("skimage")
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"cannot read {path}"
    return img


def write_face_video(path: Path, frames: int = 40, size: tuple[int, int] = (320, 240), fps: int = 25,
                     codec: str = "libx264") -> Path:
    """A video of the astronaut's face drifting slowly across the frame (known: one face per frame)."""
    w, h = size
    face = astronaut_bgr()[20:300, 100:380]  # the head and shoulders
    face = cv2.resize(face, (h * 3 // 4, h * 3 // 4))
    fh, fw = face.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            canvas = np.full((h, w, 3), 90, np.uint8)
            x = int((w - fw) * (0.2 + 0.6 * i / max(frames - 1, 1)))
            y = (h - fh) // 2
            canvas[y:y + fh, x:x + fw] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1, y1, x2, y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def start_watched_run(video: Path, out_dir: Path, *extra: str):
    """`auflow run VIDEO` in a subprocess, publishing to a plain pyzmq SUB socket that is already
    connected (the run waits for it). Returns (process, socket); the caller closes both."""
    import os
    import subprocess
    import sys

    import zmq

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 1000)
    sub.connect(endpoint)
    proc = subprocess.Popen([sys.executable, "-m", "auflow.engine.cli.main", "run", str(video), "--publish", endpoint,
                             "--wait-subscribers", "1", "--out", str(out_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
    return proc, sub


def starter_au() -> dict:
    """What the default config's `au` output reports: the shipped student if its card passes the gate, else its teacher."""
    from auflow.models.card import load_checkpoint
    from auflow.plugins.analyzers.student import gate, starter_path, teacher_unsupported

    card, _ = load_checkpoint(starter_path("starter:me_graphau_demo_student"))
    dead = {u.split("_")[0] for u in teacher_unsupported("mediapipe_au")}
    unsupported = [a for a in card.labels if a.split("_")[0] in dead]  # null whichever runs
    who = ({"name": "me_graphau", "kind": "distilled"} if gate(card, unsupported=tuple(unsupported))[0]
           else {"name": "mediapipe_au", "kind": "teacher"})
    return {**who, "unsupported": unsupported} if unsupported else who
