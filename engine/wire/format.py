"""Wire format v1: what auflow publishes and how a reader checks it (docs/protocol.md).

A message is two ZeroMQ frames, ``[topic, header]``:

- ``topic``: UTF-8 ``"<type>/<cam>/"``; the trailing ``/`` keeps a ``cam1`` subscription from
  matching ``cam10`` under ZeroMQ's prefix matching.
- ``header``: a msgpack map that always holds ``v``, ``type``, ``cam``, ``sid``, ``t_publish_ns``,
  plus the keys of its type (``REQUIRED``). Unknown keys are kept, so a v1 reader reads a
  message that a newer v1 writer extended.

The builders (:func:`result_message`, :func:`window_message`, :func:`status_message`,
:func:`eos_message`) return plain dicts of Python scalars, lists and dicts: no numpy, nothing
pickled, floats rounded to what they mean (pixels to 0.1, probabilities to 1e-4), and non-finite
floats as ``None`` so the dict is also valid JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from auflow.engine.errors import WireError
from auflow.engine.types import FaceResults

#: schema version written by this module; bump it only for changes an old reader would misread
SCHEMA_VERSION = 1
#: message types of v1, in topic order
MESSAGE_TYPES: tuple[str, ...] = ("result", "window", "status", "eos")
#: states a ``status`` message reports for a camera session
STATES: tuple[str, ...] = ("connecting", "live", "reconnecting", "ended")
#: keys every header has
COMMON_KEYS: tuple[str, ...] = ("v", "type", "cam", "sid", "t_publish_ns")
#: keys each v1 type has besides the common ones (a reader may rely on them)
REQUIRED: dict[str, tuple[str, ...]] = {
    "result": ("seq", "frame", "pts", "time_base", "t_capture_ns", "latency_ms", "models", "faces"),
    "window": ("track", "start_seq", "end_seq", "expr"),
    "status": ("state", "fps_in", "fps_out", "dropped", "decode_errors", "queue", "last_seq"),
    "eos": ("reason", "last_seq"),
}
#: keys of one face in a ``result`` (other model outputs are added under their own name)
FACE_KEYS: tuple[str, ...] = ("track", "bbox", "score", "kps", "au", "expr")
#: largest header a reader accepts by default; bounds what a hostile message can allocate
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: msgpack container limits (a v1 header never comes near them)
MAX_CONTAINER_LEN = 100_000

# decimals kept on the wire
_PX = 1  # pixel coordinates
_P = 4  # probabilities and detector scores
_MS = 3  # latencies in milliseconds
_FPS = 2


class SchemaVersionError(WireError):
    """A message carries a schema version this reader does not accept."""

    def __init__(self, sender_version: Any, expected_version: int = SCHEMA_VERSION) -> None:
        self.sender_version = sender_version
        self.expected_version = expected_version
        super().__init__(
            f"message has wire schema v={sender_version!r}, this reader speaks v{expected_version}; "
            "upgrade auflow on the reader, or read with tolerant=True to accept newer versions "
            "(unknown keys are kept)"
        )


# ---------------------------------------------------------------------------------------------
# topics and framing


def _check_cam(cam: Any) -> str:
    if not isinstance(cam, str) or not cam or "/" in cam:
        raise WireError(f"camera name must be a non-empty string without '/', got {cam!r}")
    return cam


def topic(type: str, cam: str) -> bytes:  # noqa: A002 - `type` is the wire-format key's name
    """The ZeroMQ topic of a message: ``topic("result", "cam1") == b"result/cam1/"``.

    Subscribe to ``topic(t, cam)`` for one type of one camera, to ``f"{t}/"`` for a type of every
    camera, or to ``""`` for everything.
    """
    if type not in MESSAGE_TYPES:
        raise WireError(f"unknown message type {type!r}; v{SCHEMA_VERSION} types are {MESSAGE_TYPES}")
    return f"{type}/{_check_cam(cam)}/".encode()


def _to_python(obj: Any) -> Any:
    """msgpack ``default``: numpy scalars and arrays become Python ones; anything else is refused."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot put a {type(obj).__name__} on the wire (plain scalars, lists, dicts only)")


def encode(header: Mapping[str, Any]) -> list[bytes]:
    """Frame a header as ``[topic, msgpack header]``; the topic comes from its ``type`` and ``cam``."""
    missing = [k for k in COMMON_KEYS if k not in header]
    if missing:
        raise WireError(f"cannot encode a header without {missing}; build it with the *_message functions")
    try:
        body = msgpack.packb(dict(header), use_bin_type=True, default=_to_python)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode {header.get('type')!r} message for {header.get('cam')!r}: {exc}") from exc
    return [topic(header["type"], header["cam"]), body]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def decode(frames: Sequence[bytes], tolerant: bool = False, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Check and unpack ``[topic, header]`` frames into the header dict.

    Raises :class:`WireError` (never anything else) naming what is wrong: not exactly two frames,
    a header that is not a msgpack map (or is larger than ``max_bytes``), a missing key, a topic
    that does not match the header's ``type``/``cam``. A header with ``v`` newer than
    :data:`SCHEMA_VERSION` raises :class:`SchemaVersionError` unless ``tolerant``; then only the
    common keys are checked. Unknown keys are kept.
    """
    if not isinstance(frames, (list, tuple)) or len(frames) != 2:
        n = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise WireError(f"a wire v{SCHEMA_VERSION} message has 2 frames [topic, header], got {n}")
    raw_topic, body = frames
    if not isinstance(raw_topic, (bytes, bytearray, memoryview)) or not isinstance(
        body, (bytes, bytearray, memoryview)
    ):
        raise WireError("message frames must be bytes")
    if len(body) > max_bytes:
        raise WireError(f"header of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        topic_str = bytes(raw_topic).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"topic is not UTF-8: {bytes(raw_topic[:40])!r}") from None
    limit = min(len(body), max_bytes)
    try:
        header = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=False,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=min(limit, MAX_CONTAINER_LEN),
            max_map_len=min(limit, MAX_CONTAINER_LEN),
            max_ext_len=0,  # v1 uses no msgpack extension types
        )
    except Exception as exc:  # msgpack raises several types; any of them means "not a header"
        raise WireError(f"header on topic {topic_str[:60]!r} is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise WireError(f"header on topic {topic_str[:60]!r} must be a msgpack map, got {type(header).__name__}")

    missing = [k for k in COMMON_KEYS if k not in header]
    if missing:
        raise WireError(f"header on topic {topic_str[:60]!r} lacks {missing}")
    v = header["v"]
    if not _is_int(v) or v < 1:
        raise WireError(f"header 'v' must be a positive integer, got {v!r}")
    if v > SCHEMA_VERSION and not tolerant:
        raise SchemaVersionError(v)
    for key in ("type", "cam", "sid"):
        if not isinstance(header[key], str) or not header[key]:
            raise WireError(f"header {key!r} must be a non-empty string, got {header[key]!r}")
    if not _is_int(header["t_publish_ns"]):
        raise WireError(f"header 't_publish_ns' must be an integer, got {header['t_publish_ns']!r}")
    expected_topic = f"{header['type']}/{header['cam']}/"
    if topic_str != expected_topic:
        raise WireError(f"topic {topic_str[:60]!r} does not match header type/cam (expected {expected_topic!r})")

    mtype = header["type"]
    if mtype not in REQUIRED:
        if v > SCHEMA_VERSION:
            return header  # a newer writer's new type: pass it through, the caller asked tolerant
        raise WireError(f"unknown message type {mtype!r}; v{SCHEMA_VERSION} types are {MESSAGE_TYPES}")
    missing = [k for k in REQUIRED[mtype] if k not in header]
    if missing:
        raise WireError(f"{mtype!r} message for {header['cam']!r} lacks {missing}")
    for key in ("seq", "frame", "last_seq", "start_seq", "end_seq"):
        if key in REQUIRED[mtype] and not _is_int(header[key]):
            raise WireError(f"{mtype!r} message key {key!r} must be an integer, got {header[key]!r}")
    if mtype == "result" and not isinstance(header["faces"], list):
        raise WireError(f"'result' message key 'faces' must be a list, got {type(header['faces']).__name__}")
    return header


# ---------------------------------------------------------------------------------------------
# message builders


def _num(x: Any, ndigits: int) -> float | None:
    x = float(x)
    return round(x, ndigits) if math.isfinite(x) else None


def _common(mtype: str, cam: str, sid: str, t_publish_ns: int | None) -> dict:
    if not isinstance(sid, str) or not sid:
        raise WireError(f"session id must be a non-empty string, got {sid!r}")
    return {
        "v": SCHEMA_VERSION,
        "type": mtype,
        "cam": _check_cam(cam),
        "sid": sid,
        "t_publish_ns": time.time_ns() if t_publish_ns is None else int(t_publish_ns),
    }


def _merge_extra(msg: dict, extra: Mapping[str, Any]) -> dict:
    clash = sorted(set(extra) & set(msg))
    if clash:
        raise WireError(f"extra keys {clash} would overwrite {msg['type']!r} message keys")
    msg.update(extra)
    return msg


def _probs(labels: Sequence[str], row: Sequence[float]) -> dict[str, float | None]:
    return {label: _num(p, _P) for label, p in zip(labels, row)}


def result_message(res: FaceResults, seq: int, t_publish_ns: int | None = None) -> dict:
    """The ``result`` header for one analysed frame; ``seq`` is its index among this session's results.

    Each face gets ``track``, ``bbox``, ``score``, ``kps``, ``au`` and ``expr`` (``{}`` when no
    model produced that output); any other output of ``res`` goes in the face under its own name,
    as ``{label: probability}``. Only what is in ``res.outputs`` is published: the caller decides
    whether embeddings or pixels ever get there (DESIGN.md: never unless a config flag asks).
    """
    meta, faces = res.meta, res.faces
    clash = sorted(set(res.outputs) & {"track", "bbox", "score", "kps"})
    if clash:
        raise WireError(f"model output names {clash} collide with face keys; rename the outputs")
    msg = _common("result", meta.cam, meta.sid, t_publish_ns)
    msg.update(
        seq=int(seq),
        frame=int(meta.frame),
        pts=None if meta.pts is None else int(meta.pts),
        time_base=[int(meta.time_base[0]), int(meta.time_base[1])],
        t_capture_ns=int(meta.t_capture_ns),
        latency_ms={str(stage): _num(ms, _MS) for stage, ms in res.latency_ms.items()},
        models={str(name): info.to_wire() for name, info in res.models.items()},
    )
    # tolist() once per array gives Python floats; _num rounds them
    bbox = faces.bbox.tolist()
    kps = faces.kps.tolist()
    score = faces.score.tolist()
    track = faces.track.tolist()
    outputs = {name: arr.tolist() for name, arr in res.outputs.items()}
    out_faces = []
    for i in range(len(faces)):
        face = {
            "track": int(track[i]),
            "bbox": [_num(x, _PX) for x in bbox[i]],
            "score": _num(score[i], _P),
            "kps": [[_num(x, _PX), _num(y, _PX)] for x, y in kps[i]],
            "au": {},
            "expr": {},
        }
        for name, rows in outputs.items():
            face[name] = _probs(res.labels[name], rows[i])
        out_faces.append(face)
    msg["faces"] = out_faces
    return msg


def window_message(
    cam: str,
    sid: str,
    track: int,
    start_seq: int,
    end_seq: int,
    expr: Mapping[str, float],
    au: Mapping[str, float] | None = None,
    t_publish_ns: int | None = None,
    **extra: Any,
) -> dict:
    """The ``window`` header: the fused result of ``track`` over results ``start_seq..end_seq``
    (inclusive). ``au`` is included only when the fusion model predicts AUs."""
    msg = _common("window", cam, sid, t_publish_ns)
    msg.update(
        track=int(track),
        start_seq=int(start_seq),
        end_seq=int(end_seq),
        expr={str(k): _num(p, _P) for k, p in expr.items()},
    )
    if au is not None:
        msg["au"] = {str(k): _num(p, _P) for k, p in au.items()}
    return _merge_extra(msg, extra)


def status_message(
    cam: str,
    sid: str,
    state: str,
    fps_in: float,
    fps_out: float,
    dropped: int,
    decode_errors: int,
    queue: Mapping[str, int],
    last_seq: int,
    **extra: Any,
) -> dict:
    """The ``status`` heartbeat of one camera session (at least one per second).

    ``dropped``/``decode_errors`` are session totals; ``queue`` maps a queue name to its current
    depth; ``last_seq`` is the last ``result`` seq sent (-1 before the first).
    """
    if state not in STATES:
        raise WireError(f"status state must be one of {STATES}, got {state!r}")
    msg = _common("status", cam, sid, None)
    msg.update(
        state=state,
        fps_in=_num(fps_in, _FPS),
        fps_out=_num(fps_out, _FPS),
        dropped=int(dropped),
        decode_errors=int(decode_errors),
        queue={str(k): int(d) for k, d in queue.items()},
        last_seq=int(last_seq),
    )
    return _merge_extra(msg, extra)


def eos_message(cam: str, sid: str, reason: str, last_seq: int, **extra: Any) -> dict:
    """The ``eos`` header: session ``sid`` of ``cam`` is over. ``last_seq`` is the last ``result``
    seq sent in it (-1 if none), so a reader sees loss at the very end. ``reason`` is a short word:
    ``end`` (the source ended), ``error``, ``interrupted`` (SIGINT/SIGTERM), ``disconnected`` (a live
    source dropped; a new ``sid`` follows when it reconnects), ``node_lost`` (a fleet camera's Ray node
    died; its restarted actor sends this for the old session, docs/protocol.md)."""
    msg = _common("eos", cam, sid, None)
    msg.update(reason=str(reason), last_seq=int(last_seq))
    return _merge_extra(msg, extra)
