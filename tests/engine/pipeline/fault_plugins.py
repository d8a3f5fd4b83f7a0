"""Plugins that fail on purpose, loaded by the fault tests as ``fault_plugins:Class`` (external plugin syntax)."""

from __future__ import annotations

import time

import numpy as np
from auflow.engine.plugin import Plugin, PluginConfig
from auflow.engine.types import ModelInfo


class ExplodingModel(Plugin):
    """An expression model whose ``fail_on``-th batch raises (a CUDA error, a bug in a user's model)."""

    class Config(PluginConfig):
        fail_on: int = 3
        delay_s: float = 0.0  # wait this long before raising (the source may reach its end meanwhile)

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.calls = 0
        self.outputs = {"expr": ("neutral", "happiness")}
        self.provenance = {"expr": ModelInfo("exploding", "user")}

    def start(self, device: str = "cpu") -> None:
        pass

    def analyze(self, crops) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == self.config.fail_on:
            time.sleep(self.config.delay_s)
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return {"expr": np.full((len(crops), 2), 0.5, np.float32)}
