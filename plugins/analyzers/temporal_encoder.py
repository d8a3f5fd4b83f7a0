"""The temporal stage's per-face half (engine/temporal.py): a temporal model's ``encode_frames`` as an
analyzer plugin, batched with the per-frame models; its ``fuse`` runs per window in the stage.

``checkpoint: starter:NAME`` runs a shipped student only when its card passes
:func:`auflow.plugins.analyzers.student.temporal_gate`; otherwise the windows fuse ``fer_mean``.
"""

from __future__ import annotations

import logging

import numpy as np
from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.plugin import CPU, StartContext
from auflow.engine.registry import ANALYZERS
from auflow.engine.temporal import ENCODER
from auflow.engine.types import ModelInfo

from .student import STARTER_PREFIX, starter_path, temporal_gate
from .torch_model import TorchModelAnalyzer, resolve_device

log = logging.getLogger(__name__)

#: what the temporal stage fuses with when its shipped student fails its gate (models/expr/window_mean.py)
FALLBACK = "fer_mean"


@ANALYZERS.register(ENCODER)
class TemporalEncoder(TorchModelAnalyzer):
    """The temporal model's per-frame half as an analyzer: crops → features (N, 2C') (:meth:`features`),
    which travel in :attr:`FaceResults.features`, not among the named outputs. Preprocessing is the
    card's, as for every registry model.

    ``checkpoint``: ``starter:NAME`` is a checkpoint shipped in ``auflow/models/checkpoints`` (the
    default, ``starter:arpgnet_demo_student``): used, and reported ``distilled``, only when its card
    passes :func:`~auflow.plugins.analyzers.student.temporal_gate`; otherwise the windows fuse
    ``fer_mean`` — fer's probabilities averaged over the same T frames, the exact fusion the student was
    distilled to imitate (reported with fer's kind, ``trained``) — and one log line says why. A checkpoint given by path is the user's and reported
    ``user``; a model named without a checkpoint runs as its factory makes it (``untrained`` for arpgnet).
    """

    #: set by start(): the analyzer output fer_mean averages instead of encoding anything itself
    reused: str | None = None

    class Config(TorchModelAnalyzer.Config):
        reuse_output: str | None = None  # fer_mean: the analyzer output holding fer's probabilities, if any

    def start(self, ctx: StartContext = CPU) -> None:
        device = ctx.device
        import torch
        from auflow.models import create_model, load_checkpoint

        cfg = self.config
        self.device = resolve_device(device)
        ckpt, kind = cfg.checkpoint, None
        if ckpt and ckpt.startswith(STARTER_PREFIX):
            path = starter_path(ckpt)
            try:
                card, _ = load_checkpoint(path)
                ok, why = temporal_gate(card)
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
        self.outputs, self.provenance = {}, {}  # no named output: its features travel in FaceResults.features
        self.info = ModelInfo(card.name, self.kind)
        # fer_mean beside a fer analyzer: nothing to encode here, the stage averages that analyzer's output
        self.reused = cfg.reuse_output if card.name == FALLBACK and cfg.reuse_output else None
        self.feature_dim = 0 if self.reused else 2 * self.dim
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

    def features(self, crops: np.ndarray) -> np.ndarray:
        """Aligned crops (N, S, S, 3) uint8 BGR → features (N, :attr:`feature_dim`) float32."""
        import torch

        if len(crops) == 0 or self.reused is not None:  # reused: the stage takes the fer analyzer's output
            return np.zeros((len(crops), self.feature_dim), np.float32)
        step = self.config.batch
        parts = []
        for i in range(0, len(crops), step):
            with torch.inference_mode():
                x = self.preprocess(crops[i:i + step])
            parts.append(self.encode(x))
        return np.concatenate(parts)

    def analyze(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """No named outputs (its features are :meth:`features`, which the analyzer puts in their own field)."""
        return {}

    def fuse(self, windows: np.ndarray) -> np.ndarray:
        """Windows (B, T, 2C') of features → fused probabilities (B, classes)."""
        import torch

        with torch.inference_mode():
            w = torch.from_numpy(np.ascontiguousarray(windows, np.float32)).to(self.device)
            return self.net.fuse(w[..., :self.dim], w[..., self.dim:]).float().cpu().numpy()
