"""Wire-format v1 messages of a made-up run, for the sink, results, report and client tests."""

from __future__ import annotations

import math

from auflow.engine.wire import format as wire

AUS = ("AU01", "AU02", "AU04", "AU06", "AU12", "AU15", "AU26")
EXPRS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


def result_message(cam: str, sid: str, seq: int, frame: int, faces: list[dict], fps: int = 25) -> dict:
    """A valid ``result`` header (checked by the wire decoder) with ``faces`` as given."""
    msg = {
        "v": 1, "type": "result", "cam": cam, "sid": sid, "t_publish_ns": 1_700_000_000_000_000_000 + seq * 40_000_000,
        "seq": seq, "frame": frame, "pts": frame * 1000, "time_base": [1, 1000 * fps],
        "t_capture_ns": 1_700_000_000_000_000_000 + frame * 40_000_000 - 5_000_000,
        "latency_ms": {"decode": 1.5, "detect": 10.25 + seq % 3, "analyze": 20.125, "total": 35.0 + seq % 7},
        "models": {"au": {"name": "me_graphau", "kind": "untrained"}, "expr": {"name": "fer", "kind": "trained"}},
        "faces": faces,
    }
    wire.decode(wire.encode(msg))  # what the sinks get is what a publisher could send
    return msg


def face(track: int, frame: int, x: float = 100.0) -> dict:
    """A face whose probabilities change smoothly with ``frame`` (rounded as the wire rounds them)."""
    s = 0.5 + 0.45 * math.sin(frame / 7 + track)
    expr = [max(0.0, s - 0.1), 1 - s, 0.05, 0.02, 0.01, 0.01, 0.01]
    total = sum(expr)
    x += frame * 1.5
    return {
        "track": track, "bbox": [round(x, 1), 50.0, round(x + 80.5, 1), 150.2], "score": 0.9731,
        "kps": [[round(x + 20, 1), 80.0], [round(x + 60, 1), 80.0], [round(x + 40, 1), 100.0],
                [round(x + 25, 1), 125.0], [round(x + 55, 1), 125.0]],
        "au": {a: round(min(1.0, max(0.0, s + 0.1 * i - 0.3)), 4) for i, a in enumerate(AUS)},
        "expr": {e: round(p / total, 4) for e, p in zip(EXPRS, expr)},
    }


def fake_run(cam: str = "cam1", sid: str = "s1", frames: int = 30, tracks: tuple[int, ...] = (0, 3)) -> list[dict]:
    """status, results (some frames with no face, one with an unconfirmed face, a ``None`` probability), eos."""
    msgs = [wire.status_message(cam, sid, "live", 0.0, 0.0, 0, 0, {"frames": 0}, -1)]
    seq = 0
    for f in range(0, frames):
        if f % 10 == 9:
            faces = []  # a frame without a face: no row
        else:
            faces = [face(t, f, x=100.0 + 150 * k) for k, t in enumerate(tracks) if not (t == 3 and f < 4)]
            if f == 5:
                faces.append(face(-1, f, x=10.0))
            if f == 6:
                faces[0]["au"]["AU04"] = None  # a non-finite value arrives as None
        msgs.append(result_message(cam, sid, seq, f, faces))
        seq += 1
        if f % 10 == 0:
            msgs.append(wire.status_message(cam, sid, "live", 24.5, 24.1, 0, 0, {"frames": 2}, seq - 1))
    msgs.append(wire.eos_message(cam, sid, "end", seq - 1))
    return msgs
