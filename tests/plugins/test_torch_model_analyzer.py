"""The generic ``model`` analyzer: an untrained model is the same on every run."""

from __future__ import annotations

import numpy as np
import torch

from auflow.engine.plugin import build
from auflow.engine.registry import ANALYZERS


def _outputs(crops: np.ndarray) -> np.ndarray:
    a = build(ANALYZERS, "model", {"model": "me_graphau", "options": {"backbone": "mobilenet_v2", "input_size": 64}}, "t")
    a.start("cpu")
    try:
        assert a.provenance["au"].kind == "untrained"
        return a.analyze(crops)["au"]
    finally:
        a.stop()


def test_an_untrained_model_gives_the_same_outputs_on_every_run_and_leaves_the_global_rng_alone():
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    torch.manual_seed(123)
    first = _outputs(crops)
    after = torch.rand(1)
    torch.manual_seed(123)
    second = _outputs(crops)
    assert torch.equal(after, torch.rand(1))  # the analyzer's fixed seed did not leak into the caller's stream
    torch.manual_seed(7)  # a different global state does not change the model either
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, _outputs(crops))
