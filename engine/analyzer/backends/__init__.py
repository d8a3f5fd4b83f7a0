"""Inference backends: the same model and the same outputs, run by torch eager, torch.compile,
ONNX Runtime or TensorRT (torch-tensorrt).

``load_backend(name, model, card, device, precision, batch)`` returns a :class:`Runner`: a callable
from a normalised (N, C, H, W) float32 tensor to (N, labels) probabilities on the CPU. Each backend
is checked against eager by a parity test (tests/engine/analyzer/test_backends.py).
"""

from __future__ import annotations

from .core import BACKENDS, Runner, load_backend

__all__ = ["BACKENDS", "Runner", "load_backend"]
