"""A plain AU classifier without any relation modelling: backbone → global average pool → linear → sigmoid.

The control for the graph models: the same backbones, the same input, the same loss (L_WA), but
every AU is read off one pooled feature vector by its own linear unit, so no AU's prediction can
use another AU's evidence except through what the backbone itself learns. ME-GraphAU's Table 3
baseline ("ResNet-50") and Topo-AU's Tables 4-5 ("Resnet50") are this model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auflow.engine.errors import ModelError
from auflow.models import register_model
from auflow.models.au.labels import resolve_au_names
from auflow.models.backbones import build_backbone, check_input_size
from auflow.models.card import ModelCard

#: the label sets the other AU models know, so ``dataset="disfa"`` works here too
from auflow.models.data.core import AU_SETS


class BaselineAU(nn.Module):
    """``forward(x)`` → AU probabilities (B, N); ``forward_aux(x)`` → ``{"probs", "logits", "features"}``."""

    def __init__(self, backbone: nn.Module, num_aus: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_channels, num_aus)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def _logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.backbone(x).mean(dim=(2, 3))  # global average pool
        return self.head(self.dropout(feat)), feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._logits(x)[0])

    def forward_aux(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, feat = self._logits(x)
        return {"probs": torch.sigmoid(logits), "logits": logits, "features": feat}


@register_model("baseline_au")
def baseline_au(backbone: str = "resnet50", dataset: str | None = None, au_names: tuple[str, ...] | list[str] | None = None,
                input_size: int = 224, dropout: float = 0.0, backbone_kw: dict[str, Any] | None = None) -> BaselineAU:
    """Build the no-graph baseline, randomly initialised (``card.kind == "untrained"``).

    Labels: ``au_names``, or ``dataset`` (``bp4d`` default, ``disfa``, ``emotionet``).
    """
    names, _ = resolve_au_names(au_names, dataset, None, AU_SETS, "bp4d", "baseline_au")
    check_input_size(input_size)
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}")
    model = BaselineAU(build_backbone(backbone, **(backbone_kw or {})), len(names), dropout)
    config = {"backbone": backbone, "au_names": list(names), "input_size": input_size, "dropout": dropout,
              "backbone_kw": dict(backbone_kw or {})}
    model.card = ModelCard("baseline_au", "au", names, config, input_size,
                           paper="no-graph control: backbone + global average pool + linear (ME-GraphAU Table 3 baseline)")
    return model
