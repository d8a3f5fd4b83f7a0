"""Any model of the registry run as an analyzer: crops in, named probabilities out.

Preprocessing comes from the model's card (input size, channels, mean/std on [0, 1] pixels), so
a new model needs no new analyzer. The card's ``kind`` is the provenance every result carries:
a model without trained weights is reported ``untrained`` and a warning says so once; a checkpoint
named in the config is the user's and reported ``user`` (its card's own kind — trained, distilled —
stays in the card); a shipped starter checkpoint comes through the ``student`` analyzer, which
reports it ``distilled`` when it passes its gate.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
from auflow.engine.config import Backend, Precision, Tta
from auflow.engine.errors import ConfigError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import ANALYZERS
from auflow.engine.types import ModelInfo, ModelKind
from pydantic import Field

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _lateral(label: str) -> bool:
    low = label.lower()
    return label.endswith(("_L", "_R")) or "left" in low or "right" in low


def tta_views(crops, mode: str) -> list:
    """The views of (N, S, S, 3) crops that test-time augmentation ``mode`` averages (the ``tta`` option).

    ``flip``: the crop and its mirror image. The shifted modes take windows of 104/112 of the side:
    ``flip_shift2``: one moved 4/112 of the side up-left, one moved as much down-right and mirrored;
    ``flip_shift``: centred, up-left and down-right, each also mirrored (6 views).
    Also for (N, 3, S, S) torch tensors (crops left on the device by the shared face stage)."""
    if mode == "none":
        return [crops]
    host = isinstance(crops, np.ndarray)

    def mirror(v):
        return np.ascontiguousarray(v[:, :, ::-1]) if host else v.flip(-1)

    if mode == "flip":
        return [crops, mirror(crops)]
    side = crops.shape[1] if host else crops.shape[-1]
    w, d = round(side * 104 / 112), round(side * 4 / 112)
    c = (side - w) // 2

    def window(o: int, flip: bool):
        v = crops[:, c + o:c + o + w, c + o:c + o + w] if host else crops[..., c + o:c + o + w, c + o:c + o + w]
        return mirror(v) if flip else (np.ascontiguousarray(v) if host else v)

    if mode == "flip_shift2":
        return [window(-d, False), window(d, True)]
    return [window(o, m) for o in (0, -d, d) for m in (False, True)]


@ANALYZERS.register("model")
class TorchModelAnalyzer(Plugin):
    class Config(PluginConfig):
        model: str
        checkpoint: str | None = None
        output: str | None = None
        options: dict[str, Any] = {}
        backend: Backend = "eager"
        precision: Precision = "fp32"
        channels_last: bool = False
        batch: int = 16  # the largest batch the backend is built for (ONNX/TensorRT shapes)
        # provenance of a checkpoint: None = `user` (a checkpoint named in the config is the user's, whatever its
        # card says); the `student` analyzer sets the card's kind for a shipped starter checkpoint
        kind: ModelKind | None = None
        tta: Tta = Field(
            "none", description="test-time augmentation, outputs averaged over the views (see tta_views): flip (2 views), "
            "flip_shift2 (2), flip_shift (6). Steadier outputs where landmarks jitter; costs one model call per view. "
            "Only for models whose labels have no left/right side")

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.model = None
        self.card = None
        self.device = "cpu"
        self.outputs: dict[str, tuple[str, ...]] = {}
        self.provenance: dict[str, ModelInfo] = {}

    def start(self, ctx: StartContext = CPU) -> None:
        device = ctx.device
        import torch
        from auflow.engine.analyzer.backends import load_backend
        from auflow.models import create_model

        cfg = self.config
        self.device = resolve_device(device)
        # a model without weights is initialised from a fixed seed: the same (meaningless) outputs on
        # every run, and one cached ONNX export instead of a new one per run
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(cfg.model, checkpoint=cfg.checkpoint, **cfg.options)
        self.card = card = model.card
        self.model = load_backend(cfg.backend, model, card, self.device, cfg.precision, cfg.channels_last, cfg.batch)
        kind = (cfg.kind or "user") if cfg.checkpoint else card.kind  # the card itself keeps its own kind
        name = self.config.output or card.task
        self.output = name
        self.outputs = {name: tuple(card.labels)}
        self.provenance = {name: ModelInfo(card.name, kind)}
        if cfg.tta != "none" and any(_lateral(label) for label in card.labels):
            raise ConfigError(f"analyzer {card.name}: tta {cfg.tta!r} mirrors the face, but its labels have a left/right "
                              f"side ({', '.join(lb for lb in card.labels if _lateral(lb))}); use tta: none")
        if kind == "untrained":
            log.warning("%s has no trained weights: its %r output is random and every result marks it 'untrained'", card.name, name)
        c = len(card.mean)
        self._mean = torch.tensor(card.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._std = torch.tensor(card.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)

    #: takes crops as (N, 3, S, S) uint8 BGR torch tensors too (the shared face stage's, left on its device)
    takes_tensors = True

    def _preprocess_tensor(self, crops):
        """The device twin of the host path: resize (cv2's INTER_AREA weights down, bilinear up; rounded to
        uint8 levels as cv2 does), gray or BGR → RGB, normalise."""
        import torch.nn.functional as F

        from auflow.plugins.align_torch import _area_matrix

        size = self.card.input_size
        x = crops.to(self.device, non_blocking=True).float()
        side = x.shape[-1]
        if side > size:
            r = _area_matrix(side, size, x.dtype, x.device)
            x = (r @ x @ r.T).round_().clamp_(0, 255)
        elif side < size:
            x = F.interpolate(x, size=(size, size), mode="bilinear").round_().clamp_(0, 255)
        if self.card.input_channels == 1:  # cv2's BGR2GRAY weights
            x = (0.114 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.299 * x[:, 2:3]).round_()
        else:
            x = x.flip(1)  # BGR → RGB
        return (x.div_(255.0) - self._mean) / self._std

    def preprocess(self, crops: np.ndarray):
        """(N, S, S, 3) BGR uint8 → (N, C, s, s) float on the device, normalised as the card says."""
        import torch

        if isinstance(crops, torch.Tensor):
            return self._preprocess_tensor(crops)
        card = self.card
        size = card.input_size
        if crops.shape[1] != size:
            interp = cv2.INTER_AREA if crops.shape[1] > size else cv2.INTER_LINEAR
            crops = np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops]) if len(crops) else np.zeros((0, size, size, 3), np.uint8)
        if card.input_channels == 1:
            x = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in crops])[:, None] if len(crops) else np.zeros((0, 1, size, size), np.uint8)
        else:
            x = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2))  # BGR → RGB, NCHW
        t = torch.from_numpy(x).to(self.device, non_blocking=True).float().div_(255.0)
        return (t - self._mean) / self._std

    def analyze(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if len(crops) == 0:
            return {self.output: np.zeros((0, len(self.card.labels)), np.float32)}
        step = self.config.batch  # never more than the backend was built for
        parts = []
        for i in range(0, len(crops), step):
            views = tta_views(crops[i:i + step], self.config.tta)
            out = 0.0
            for v in views:
                with torch.inference_mode():
                    x = self.preprocess(v)
                out = out + self.model(x).astype(np.float32, copy=False)
            parts.append(out / len(views) if len(views) > 1 else out)
        return {self.output: np.concatenate(parts)}

    def stop(self) -> None:
        self.model = None
