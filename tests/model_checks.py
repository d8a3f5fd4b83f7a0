"""Checks the model tests share: non-trivial BatchNorm statistics, and that a sample's output does
not depend on its batch-mates."""

from __future__ import annotations

import torch

def randomise_bn(module: torch.nn.Module, affine: bool = False) -> torch.nn.Module:
    """Random BN running statistics (with ``affine``, scale and shift too), so eval mode is not an
    identity that hides wiring mistakes. Draws from torch's global generator; returns ``module``."""
    with torch.no_grad():
        for mod in module.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                if affine:
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.1, 0.1)
    return module


def assert_batch_independent(model: torch.nn.Module, inputs: torch.Tensor, *, atol: float) -> None:
    """Each sample run alone gives what it gives inside the batch ``inputs``, within ``atol`` (each test
    names its own: what its model's float32 kernels need, far below what a sample that saw its batch-mates,
    through a train-mode BN or a pooling over the batch axis, is off by)."""
    with torch.no_grad():
        batch = model(inputs)
        for i in range(len(inputs)):
            torch.testing.assert_close(model(inputs[i : i + 1]), batch[i : i + 1], atol=atol, rtol=0)
