"""The streaming temporal stage: per-track ring buffers of per-frame features, fused over windows.

A temporal model (``arpgnet``, paper 003) is split in two (``encode_frames`` / ``fuse``):

- the **encoder** runs once per face per frame, in the analyzer thread, batched with the per-frame
  models: the registered analyzer ``temporal_encoder`` (plugins/analyzers/temporal_encoder.py), built
  here by name like every plugin and handed to the :class:`~auflow.engine.analyzer.core.Analyzer` as its
  feature encoder. Its output, the frame's features ``[appearance ‖ relation]`` (2C' floats), travels in
  the frame's :attr:`FaceResults.features` (not among the named outputs) and is dropped before the
  ``result`` message is built: features are never published.
- the **fusion graph** runs per window, in the publishing thread (:class:`TemporalStage`), on the
  features kept in a ring buffer of T frames per ``(cam, sid, track)``. Nothing of the past is
  recomputed: a window costs one ``fuse`` call, whatever T.

The rules (docs/protocol.md, "window", says the same):

- A track's *frames* are the results of its session in which it has a face (confirmed tracks only,
  ``track >= 0``). Index them 0, 1, … in order. A result in which the track has no face (a pause)
  adds nothing: windows are made of the track's own frames and may span a pause
  (``missing`` counts the results inside ``start_seq..end_seq`` that it was absent from).
- **Anchors** are the track frames 0, stride, 2·stride, … A *causal* window for anchor a holds
  frames a−T+1 … a (it ends at the newest frame and is published as soon as a arrives); a *centred*
  window holds a−⌊T/2⌋ … a−⌊T/2⌋+T−1 (published when its last frame arrives). ``at_seq`` is the
  seq of the anchor: the result the window describes (the newest frame for causal windows, the
  centre for centred ones).
- **Padding**: a window position before the track's first frame repeats the first frame; one
  after its last frame (only in the final flush) repeats the last frame. ``padded`` counts them.
- **Track lost**: a track absent from ``evict_after`` consecutive results of its session, or any
  track when its session ends (``eos``), is flushed and evicted: every anchor not yet published is
  published (padded with its last frame), then, if its last frame is not an anchor already, one
  more window anchored at its last frame, so the final partial stride is covered too. A track id
  seen again after eviction starts afresh.
- ``mode: auto`` is causal for live sources and centred for files.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from auflow.engine.errors import ConfigError
from auflow.engine.plugin import build
from auflow.engine.registry import ANALYZERS
from auflow.engine.types import FaceResults, ModelInfo
from auflow.engine.wire import format as wire

log = logging.getLogger(__name__)

Mode = Literal["causal", "centred"]

#: the registered analyzer that encodes each face for the stage (its ``encode_frames`` half; ``fuse`` per window)
ENCODER = "temporal_encoder"


# -- the ring buffers ---------------------------------------------------------------------------------
@dataclass
class Window:
    """One fused window: ``seqs`` are the T frames' result seqs (repeats where padded)."""

    cam: str
    sid: str
    track: int
    mode: Mode
    at_seq: int
    seqs: list[int]
    probs: np.ndarray

    @property
    def start_seq(self) -> int:
        return self.seqs[0]

    @property
    def end_seq(self) -> int:
        return self.seqs[-1]

    @property
    def frames(self) -> int:
        return len(set(self.seqs))


@dataclass
class _Track:
    mode: Mode
    ring: collections.deque  # (index, seq, features) of the newest ≤ T frames
    last_seq: int = -1
    n: int = 0  # frames seen
    next_anchor: int = 0
    last_anchor: int = -1


@dataclass
class _Pending:
    key: tuple[str, str, int]
    mode: Mode
    at_seq: int = -1
    seqs: list[int] = field(default_factory=list)
    feats: list[np.ndarray] = field(default_factory=list)


class TemporalRunner:
    """Ring buffers and window scheduling; ``fuse`` turns (B, T, F) windows into (B, C).

    Independent of torch and of the pipeline, so the rules can be tested on synthetic features.
    """

    def __init__(self, fuse: Callable[[np.ndarray], np.ndarray], num_frames: int, stride: int, evict_after: int) -> None:
        if num_frames < 1 or stride < 1 or evict_after < 1:
            raise ValueError("num_frames, stride and evict_after must be >= 1")
        self.fuse, self.T, self.stride, self.evict_after = fuse, num_frames, stride, evict_after
        self.tracks: dict[tuple[str, str, int], _Track] = {}
        self.windows_run = 0

    def _delay(self, mode: Mode) -> int:
        return 0 if mode == "causal" else self.T - 1 - self.T // 2

    def _window(self, key, tr: _Track, anchor: int) -> _Pending:
        start = anchor - (self.T - 1 if tr.mode == "causal" else self.T // 2)
        first = tr.ring[0][0]
        newest = tr.n - 1
        p = _Pending(key, tr.mode)
        for k in range(self.T):
            idx = min(max(start + k, 0), newest)  # replicate padding at either end of the track
            if idx < first:
                raise AssertionError("temporal ring buffer too short")  # cannot happen: the ring holds T frames
            _, seq, feat = tr.ring[idx - first]
            p.seqs.append(seq)
            p.feats.append(feat)
        p.at_seq = p.seqs[anchor - start]  # the anchor itself is never a padded position
        return p

    def _emit_ready(self, key, tr: _Track, out: list[_Pending], final: bool) -> None:
        newest = tr.n - 1
        d = 0 if final else self._delay(tr.mode)
        while tr.next_anchor + d <= newest:
            out.append(self._window(key, tr, tr.next_anchor))
            tr.last_anchor = tr.next_anchor
            tr.next_anchor += self.stride
        if final and tr.n and tr.last_anchor != newest:
            out.append(self._window(key, tr, newest))
            tr.last_anchor = newest

    def _run(self, pending: list[_Pending]) -> list[Window]:
        """Fuse every window due now in one batch."""
        if not pending:
            return []
        probs = self.fuse(np.stack([np.stack(p.feats) for p in pending]))
        self.windows_run += len(pending)
        return [Window(p.key[0], p.key[1], p.key[2], p.mode, p.at_seq, p.seqs, np.asarray(row, np.float32))
                for p, row in zip(pending, probs)]

    def push(self, cam: str, sid: str, seq: int, tracks, feats: np.ndarray, mode: Mode) -> list[Window]:
        """One result of session (cam, sid): its faces' track ids and features, in face order."""
        pending: list[_Pending] = []
        present = set()
        for tid, f in zip(np.asarray(tracks).tolist(), feats):
            tid = int(tid)
            if tid < 0 or tid in present:
                continue  # unconfirmed faces have no history; a duplicate id keeps its first face
            present.add(tid)
            key = (cam, sid, tid)
            tr = self.tracks.get(key)
            if tr is None:
                tr = self.tracks[key] = _Track(mode, collections.deque(maxlen=self.T))
            tr.ring.append((tr.n, int(seq), np.asarray(f, np.float32)))
            tr.n += 1
            tr.last_seq = int(seq)
            self._emit_ready(key, tr, pending, final=False)
        for key in [k for k, tr in self.tracks.items() if k[:2] == (cam, sid) and k[2] not in present
                    and seq - tr.last_seq >= self.evict_after]:
            pending.extend(self._evict(key))
        return self._run(pending)

    def _evict(self, key) -> list[_Pending]:
        tr = self.tracks[key]
        out: list[_Pending] = []
        self._emit_ready(key, tr, out, final=True)
        del self.tracks[key]
        return out

    def end_session(self, cam: str, sid: str) -> list[Window]:
        """The session is over: flush and evict every one of its tracks."""
        pending: list[_Pending] = []
        for key in [k for k in self.tracks if k[:2] == (cam, sid)]:
            pending.extend(self._evict(key))
        return self._run(pending)


# -- the pipeline's stage ---------------------------------------------------------------------------
class TemporalStage:
    """What the pipeline holds when ``temporal.enabled``: the encoder (the analyzer's feature encoder, so it
    runs batched once per face) and the runner, called where results are published."""

    def __init__(self, cfg, batch: int = 16, per_frame: list | None = None) -> None:
        from auflow.engine.registry import MODELS

        if cfg.model not in MODELS:  # fail when the pipeline is built, not when its first frame arrives
            raise ConfigError(f"temporal.model: unknown model {cfg.model!r}; valid: {', '.join(sorted(MODELS.names()))}")
        self.cfg = cfg
        # fer_mean averages fer's per-frame probabilities: when the analyzer already runs fer for `expr`, its
        # output (test-time views included) is what gets averaged, instead of running fer a second time
        shared = next((m.output or "expr" for m in (per_frame or []) if m.name == "fer"), None)
        self.encoder = build(ANALYZERS, ENCODER, {"model": cfg.model, "checkpoint": cfg.checkpoint,
                                                  "options": dict(cfg.options), "batch": batch, "reuse_output": shared},
                             "temporal")
        self.runner: TemporalRunner | None = None

    def mode_for(self, live: bool) -> Mode:
        if self.cfg.mode == "auto":
            return "causal" if live else "centred"
        return self.cfg.mode

    def _runner(self) -> TemporalRunner:
        if self.runner is None:  # the encoder is started by the analyzer: T is known from then on
            enc = self.encoder
            self.runner = TemporalRunner(enc.fuse, enc.num_frames, self.cfg.stride, self.cfg.evict_after)
        return self.runner

    def messages(self, windows: list[Window]) -> list[dict]:
        card = self.encoder.card
        info = ModelInfo(card.name, self.encoder.kind)
        task = card.task if card.task in ("expr", "au") else "expr"
        out = []
        for w in windows:
            probs = {label: float(p) for label, p in zip(card.labels, w.probs)}
            n = w.frames
            out.append(wire.window_message(
                w.cam, w.sid, w.track, w.start_seq, w.end_seq,
                expr=probs if task == "expr" else {}, au=probs if task == "au" else None,
                at_seq=w.at_seq, mode=w.mode, frames=n, padded=len(w.seqs) - n,
                missing=w.end_seq - w.start_seq + 1 - n, models={task: info.to_wire()},
            ))
        return out

    def push(self, res: FaceResults, seq: int, live: bool) -> tuple[FaceResults, list[dict]]:
        """Take the features out of ``res`` (returned without them) and the windows now due."""
        feats = res.features
        if feats is None:
            return res, []
        reuse = self.encoder.reused
        if reuse is not None:  # fer_mean over the analyzer's own fer output, in the card's label order
            order = [res.labels[reuse].index(label) for label in self.encoder.card.labels]
            probs = np.asarray(res.outputs[reuse], np.float32)[:, order]
            feats = np.concatenate([probs, np.zeros_like(probs)], axis=1)
        clean = dataclasses.replace(res, features=None)
        windows = self._runner().push(res.meta.cam, res.meta.sid, seq, res.faces.track, feats, self.mode_for(live))
        return clean, self.messages(windows)

    def end_session(self, cam: str, sid: str) -> list[dict]:
        if self.runner is None:
            return []
        return self.messages(self.runner.end_session(cam, sid))
