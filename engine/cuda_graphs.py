"""A forward pass replayed from CUDA graphs, one per batch bucket: the GPU without Python's per-kernel cost.

Why: the first GPU run (H200, 2026-12-04, ``bench/results/*-nvidia-h200-20261204.json``) found every
model and the face detector bound by the host, not the GPU: a MobileNetV2-112 model took ~10 ms a
batch of 64 whatever its FLOPs, a batch of one 1080p frame in RetinaFace 14 ms, and py-spy showed the
analyzer thread inside ``Conv2d._conv_forward`` while ``nvidia-smi dmon`` read the SMs 0-22 % busy.
Each eager call launches a few hundred kernels, each costing the CPU more than the GPU needs to run
it. A CUDA graph records those launches once and replays them with one call (PyTorch's
``torch.cuda.graph``; the "whole-network capture" recipe of its CUDA semantics notes).

A graph has fixed shapes, so batches are padded up to a bucket (powers of two up to ``max_batch``,
and ``max_batch`` itself): at most ~8 graphs per input shape, each captured once (a few warm-up
calls and one recorded call) the first time its input shape is seen or in :meth:`capture` ahead of
the run. Rows past the real batch hold older inputs; their outputs are never returned, which is right
for per-sample models (eval mode: batch norm uses running statistics, nothing mixes the rows).
Outputs are cloned out of the graph's static buffers, under a lock, so a caller may keep them while
another batch replays.

On a device that is not CUDA the same bucketing runs the function eagerly on the padded static
buffers: the padding, chunking and output slicing are then testable on the CPU
(tests/engine/test_cuda_graphs.py); the capture itself runs only on a GPU (its ``gpu`` tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

Outputs = Any  # a tensor, or a tuple/list of tensors


def buckets_for(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch``: (1, 2, 4, 8, 16, 32, 64) for 64; (1, 2, 4, 6) for 6."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return (*out, max_batch)


def _map(fn: Callable[[torch.Tensor], torch.Tensor], out: Outputs) -> Outputs:
    if isinstance(out, torch.Tensor):
        return fn(out)
    if isinstance(out, (tuple, list)):
        return type(out)(_map(fn, o) for o in out)
    raise TypeError(f"a graphed function returns tensors or tuples of tensors, not {type(out).__name__}")


def _cat(parts: Sequence[Outputs]) -> Outputs:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    return type(first)(_cat([p[i] for p in parts]) for i in range(len(first)))


class _Entry:
    """One bucket's static input, outputs and graph (None off CUDA: replay runs the function eagerly)."""

    def __init__(self, static_in: torch.Tensor, static_out: Outputs, graph: Any, fn: Callable) -> None:
        self.static_in, self.static_out, self.graph, self.fn = static_in, static_out, graph, fn

    def replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        fresh = self.fn(self.static_in)  # off CUDA: the same buffers, run eagerly
        if isinstance(self.static_out, torch.Tensor):
            self.static_out.copy_(fresh)
        else:
            for dst, src in zip(self.static_out, fresh):
                dst.copy_(src)


class GraphedForward:
    """``fn(x)`` for a batch ``x`` (B, ...) on ``device``, replayed from CUDA graphs (see the module doc).

    ``fn`` must be a pure function of its input (a model in eval mode, under ``torch.inference_mode``
    and, for autocast, ``cache_enabled=False``: a cast cached during capture would be stale on replay).
    """

    def __init__(self, fn: Callable[[torch.Tensor], Outputs], device: str | torch.device, max_batch: int,
                 warmup: int = 3, name: str = "forward") -> None:
        self.fn = fn
        self.device = torch.device(device)
        self.buckets = buckets_for(max_batch)
        self.max_batch = max_batch
        self.warmup = warmup
        self.name = name
        self.cuda = self.device.type == "cuda"
        self._entries: dict[tuple, _Entry] = {}
        self._pool = None  # one memory pool shared by every graph (they never run at the same time)
        self._lock = threading.Lock()

    def bucket(self, n: int) -> int:
        for b in self.buckets:
            if b >= n:
                return b
        return self.max_batch

    def capture(self, item_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> None:
        """Record every bucket's graph for inputs of (B, *item_shape) ahead of the first batch (largest first,
        so the smaller ones reuse its memory)."""
        with self._lock:
            for b in sorted(self.buckets, reverse=True):
                self._entry(b, tuple(item_shape), dtype)

    def _entry(self, b: int, item_shape: tuple, dtype: torch.dtype) -> _Entry:
        key = (b, item_shape, dtype)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self._record(b, item_shape, dtype)
        return entry

    def _record(self, b: int, item_shape: tuple, dtype: torch.dtype) -> _Entry:
        with torch.inference_mode():
            static_in = torch.zeros((b, *item_shape), dtype=dtype, device=self.device)
            if not self.cuda:
                return _Entry(static_in, _map(torch.clone, self.fn(static_in)), None, self.fn)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the capture: cuDNN/cuBLAS pick and allocate their workspaces
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: another thread of the pipeline (the face stage, the other model) may call CUDA meanwhile
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                static_out = self.fn(static_in)
            if self._pool is None:
                self._pool = graph.pool()
        log.debug("%s: CUDA graph recorded for batch %d of %s %s", self.name, b, item_shape, dtype)
        return _Entry(static_in, static_out, graph, self.fn)

    def __call__(self, x: torch.Tensor) -> Outputs:
        n = x.shape[0]
        if n == 0:
            raise ValueError(f"{self.name}: empty batch")
        if n > self.max_batch:  # bigger than any graph: in chunks of the largest
            return _cat([self(x[i:i + self.max_batch]) for i in range(0, n, self.max_batch)])
        with self._lock, torch.inference_mode():
            entry = self._entry(self.bucket(n), tuple(x.shape[1:]), x.dtype)
            entry.static_in[:n].copy_(x)
            entry.replay()
            return _map(lambda t: t[:n].clone(), entry.static_out)
