"""The streaming temporal stage: per-track ring buffers of per-frame features, fused over windows.

A temporal model (``arpgnet``, paper 003) is split in two (``encode_frames`` / ``fuse``):

- the **encoder** runs once per face per frame, in the analyzer thread, batched with the per-frame
  models (:class:`TemporalEncoder` is one more analyzer plugin). Its output, the frame's features
  ``[appearance ‖ relation]`` (2C' floats), travels in the frame's :class:`FaceResults` under
  :data:`FEATURES` and is taken out again before the ``result`` message is built: features are
  never published.
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
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.types import FaceResults, ModelInfo
from auflow.engine.wire import format as wire
from auflow.plugins.analyzers.torch_model import TorchModelAnalyzer, resolve_device

log = logging.getLogger(__name__)

#: analyzer output key of the per-frame features (never published)
FEATURES = "_temporal_features"

Mode = Literal["causal", "centred"]


# -- the encoder, an analyzer plugin ---------------------------------------------------------------
#: the gate for a shipped (``starter:``) temporal checkpoint: held-out top-1 agreement with its teacher
MIN_TOP1 = 0.8


def starter_gate(card, min_top1: float = MIN_TOP1) -> tuple[bool, str]:
    """(passes, why) for a shipped expression student's card: distilled, complete, its agreement measured on
    people absent from its training data (issue 18: the same rule as the ``au`` gate), and held-out top-1
    agreement with its teacher (``training.agreement.top1``, written by ``auflow distill``) ≥ ``min_top1``."""
    from auflow.models.card import held_out_people

    t = card.training or {}
    if card.kind != "distilled":
        return False, f"its card says kind {card.kind!r}, not a distilled student"
    if not t.get("complete", False):
        return False, "its distillation did not finish (card: complete = false)"
    ok, on = held_out_people(card)
    if not ok:
        return False, on
    top1 = (t.get("agreement") or {}).get("top1")
    if top1 is None:
        return False, "its card holds no held-out top-1 agreement with its teacher"
    teacher = ((t.get("teacher") or {}).get("expr") or {}).get("name", "its teacher")
    if top1 < min_top1:
        return False, f"held-out top-1 agreement with {teacher} {top1:.3f} < {min_top1} ({on})"
    return True, f"held-out top-1 agreement with {teacher} {top1:.3f} >= {min_top1} ({on})"


#: what the temporal stage fuses with when its shipped student fails its gate (models/expr/window_mean.py)
FALLBACK = "fer_mean"


class TemporalEncoder(TorchModelAnalyzer):
    """The temporal model's per-frame half as an analyzer: crops → features (N, 2C') under
    :data:`FEATURES`. Preprocessing is the card's, as for every registry model.

    ``checkpoint``: ``starter:NAME`` is a checkpoint shipped in ``auflow/models/checkpoints`` (the
    default, ``starter:arpgnet_demo_student``): used, and reported ``distilled``, only when its card
    passes :func:`starter_gate`; otherwise the windows fuse ``fer_mean`` — fer's probabilities averaged
    over the same T frames, the exact fusion the student was distilled to imitate (reported with fer's
    kind, ``trained``) — and one log line says why. A checkpoint given by path is the user's and reported
    ``user``; a model named without a checkpoint runs as its factory makes it (``untrained`` for arpgnet).
    """

    #: set by start(): the analyzer output fer_mean averages instead of encoding anything itself
    reused: str | None = None

    class Config(TorchModelAnalyzer.Config):
        reuse_output: str | None = None  # fer_mean: the analyzer output holding fer's probabilities, if any

    def start(self, device: str = "cpu") -> None:
        import torch
        from auflow.models import create_model, load_checkpoint
        from auflow.plugins.analyzers.student import STARTER_PREFIX, starter_path

        cfg = self.config
        self.device = resolve_device(device)
        ckpt, kind = cfg.checkpoint, None
        if ckpt and ckpt.startswith(STARTER_PREFIX):
            path = starter_path(ckpt)
            try:
                card, _ = load_checkpoint(path)
                ok, why = starter_gate(card)
            except ModelError as e:  # a missing or unreadable shipped file: run untrained, say so
                card, ok, why = None, False, f"cannot read {path} ({e})"
            if ok:
                ckpt, kind = str(path), card.kind
                log.info("temporal: %s from %s: %s", cfg.model, ckpt, why)
            else:
                # the teacher until a student earns its place: fer averaged over the same windows, the fusion
                # the shipped student was distilled to imitate, rather than the student's network untrained
                t = int({**(card.config if card is not None else {}), **cfg.options}.get("num_frames", 8))
                log.warning("temporal: the shipped %s is not used (%s): windows fuse %s (fer averaged over T = %d "
                            "frames) instead", ckpt, why, FALLBACK, t)
                ckpt = None
                cfg = cfg.model_copy(update={"model": FALLBACK, "options": {"num_frames": t}})
        model = create_model(cfg.model, checkpoint=ckpt, **cfg.options)
        if not (hasattr(model, "encode_frames") and hasattr(model, "fuse") and hasattr(model, "num_frames")):
            raise ConfigError(f"temporal.model: {cfg.model!r} has no encode_frames/fuse split (a temporal model such as arpgnet)")
        self.net = model.eval().to(self.device)
        self.card = card = model.card
        self.kind = kind or ("user" if ckpt else card.kind)  # the card itself keeps its own kind
        self.num_frames = int(model.num_frames)
        self.dim = int(model.dim)
        self.output = FEATURES
        self.outputs = {FEATURES: tuple(f"f{i}" for i in range(2 * self.dim))}
        self.provenance = {FEATURES: ModelInfo(card.name, self.kind)}
        # fer_mean beside a fer analyzer: nothing to encode here, the stage averages that analyzer's output
        self.reused = cfg.reuse_output if card.name == FALLBACK and cfg.reuse_output else None
        if self.reused:
            self.outputs = {FEATURES: ()}
        if self.kind == "untrained":
            log.warning("%s has no trained weights: its windows are random and every window marks it 'untrained'", card.name)
        c = len(card.mean)
        self._mean = torch.tensor(card.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._std = torch.tensor(card.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)

    def encode(self, x) -> np.ndarray:
        """Normalised frames (N, 3, S, S) tensor → features (N, 2C') float32."""
        import torch

        with torch.inference_mode():
            a, r = self.net.encode_frames(x)
            return torch.cat([a, r], dim=-1).float().cpu().numpy()

    def analyze(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if len(crops) == 0 or self.reused is not None:  # reused: the stage takes the fer analyzer's output
            return {FEATURES: np.zeros((len(crops), 0 if self.reused else 2 * self.dim), np.float32)}
        step = self.config.batch
        parts = []
        for i in range(0, len(crops), step):
            with torch.inference_mode():
                x = self.preprocess(crops[i:i + step])
            parts.append(self.encode(x))
        return {FEATURES: np.concatenate(parts)}

    def fuse(self, windows: np.ndarray) -> np.ndarray:
        """Windows (B, T, 2C') of features → fused probabilities (B, classes)."""
        import torch

        with torch.inference_mode():
            w = torch.from_numpy(np.ascontiguousarray(windows, np.float32)).to(self.device)
            return self.net.fuse(w[..., :self.dim], w[..., self.dim:]).float().cpu().numpy()


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
    """What the pipeline holds when ``temporal.enabled``: the encoder (appended to the analyzer's
    plugins, so it runs batched once per face) and the runner, called where results are published."""

    def __init__(self, cfg, batch: int = 16, per_frame: list | None = None) -> None:
        from auflow.engine.registry import MODELS

        if cfg.model not in MODELS:  # fail when the pipeline is built, not when its first frame arrives
            raise ConfigError(f"temporal.model: unknown model {cfg.model!r}; valid: {', '.join(sorted(MODELS.names()))}")
        self.cfg = cfg
        # fer_mean averages fer's per-frame probabilities: when the analyzer already runs fer for `expr`, its
        # output (test-time views included) is what gets averaged, instead of running fer a second time
        shared = next((m.output or "expr" for m in (per_frame or []) if m.name == "fer"), None)
        self.encoder = TemporalEncoder(TemporalEncoder.Config(model=cfg.model, checkpoint=cfg.checkpoint,
                                                              options=dict(cfg.options), batch=batch,
                                                              reuse_output=shared))
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
        feats = res.outputs.get(FEATURES)
        if feats is None:
            return res, []
        reuse = self.encoder.reused
        if reuse is not None:  # fer_mean over the analyzer's own fer output, in the card's label order
            order = [res.labels[reuse].index(label) for label in self.encoder.card.labels]
            probs = np.asarray(res.outputs[reuse], np.float32)[:, order]
            feats = np.concatenate([probs, np.zeros_like(probs)], axis=1)
        outputs = {k: v for k, v in res.outputs.items() if k != FEATURES}
        labels = {k: v for k, v in res.labels.items() if k != FEATURES}
        models = {k: v for k, v in res.models.items() if k != FEATURES}
        clean = FaceResults(res.meta, res.faces, outputs, labels, models, res.latency_ms)
        windows = self._runner().push(res.meta.cam, res.meta.sid, seq, res.faces.track, feats, self.mode_for(live))
        return clean, self.messages(windows)

    def end_session(self, cam: str, sid: str) -> list[dict]:
        if self.runner is None:
            return []
        return self.messages(self.runner.end_session(cam, sid))
