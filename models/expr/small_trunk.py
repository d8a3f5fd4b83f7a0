"""A small conv trunk for CPU tests and demos on small frames, and the trunk lookup the expression
models use: ``models/backbones.py``'s names plus ``small_conv``.

The papers' trunks (ResNet-50, or ResNet-18 / MobileNetV2 for CPU) need far more optimisation
steps than a unit test on two cores can afford before their features move; ``small_conv`` learns
the generated faces of ``synthetic.py`` in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from auflow.engine.errors import ModelError
from auflow.models.backbones import BACKBONES, build_backbone

__all__ = ["TRUNKS", "SmallConvTrunk", "build_trunk"]


class SmallConvTrunk(nn.Module):
    """A four-stage conv trunk (conv–BN–ReLU–max-pool, strides 2, 4, 8, 16).

    Same contract as ``models/backbones.py`` (``(B, 3, H, W) → (B, C, H/16, W/16)``,
    ``.out_channels``), plus ``split(stride)`` → (stages up to ``stride``, the rest, channels there),
    which ARPGNet uses to tap its relation branch.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64)) -> None:
        super().__init__()
        chans = [3, *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True), nn.MaxPool2d(2))
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.widths = tuple(widths)
        self.out_channels = widths[-1]

    def split(self, stride: int) -> tuple[list[nn.Module], list[nn.Module], int]:
        k = {2: 1, 4: 2, 8: 3, 16: 4}[stride]
        return list(self.stages[:k]), list(self.stages[k:]), self.widths[k - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


#: every trunk name the expression models accept
TRUNKS: tuple[str, ...] = (*BACKBONES, "small_conv")


def build_trunk(name: str, **kw) -> nn.Module:
    """``build_backbone(name, **kw)``, or :class:`SmallConvTrunk` for ``small_conv`` (``widths=…``)."""
    if name != "small_conv":
        return build_backbone(name, **kw)
    try:
        return SmallConvTrunk(**kw)
    except TypeError as e:
        raise ModelError(f"trunk 'small_conv' takes only widths=(…); got options {sorted(kw)}: {e}") from None
