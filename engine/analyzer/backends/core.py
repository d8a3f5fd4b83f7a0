"""Backends by name. See the package docstring."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import typing
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...config import Precision
from ...errors import ConfigError, ModelError
from ...registry import Registry

log = logging.getLogger(__name__)

PRECISIONS = typing.get_args(Precision)


class Runner:
    """``runner(x) -> np.ndarray``; ``x`` is a normalised float32 tensor on the runner's device."""

    name = "base"

    def __init__(self, fn: Callable, device: str) -> None:
        self._fn = fn
        self.device = device

    def __call__(self, x) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._fn(x)
        return out.float().cpu().numpy() if hasattr(out, "cpu") else np.asarray(out, np.float32)


def _dtype(precision: str):
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _prepare(model, device: str, precision: str, channels_last: bool):
    import torch

    if precision != "fp32" and not device.startswith("cuda"):
        raise ConfigError(f"precision {precision} needs a CUDA device (the analyzer runs on {device}); use fp32 on CPU")
    model = model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _forward(model, device: str, precision: str, channels_last: bool, cache_casts: bool = True) -> Callable:
    """The model's forward as eager runs it: channels-last input if asked, autocast for fp16/bf16.
    ``cache_casts=False`` for CUDA graphs: a weight cast cached during capture would be stale on replay."""
    import torch

    model = _prepare(model, device, precision, channels_last)
    dtype = _dtype(precision)

    def fn(x):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dtype is torch.float32:
            return model(x)
        with torch.autocast(device_type="cuda", dtype=dtype, cache_enabled=cache_casts):
            return model(x)

    return fn


def eager(model, card, device: str, precision: str = "fp32", channels_last: bool = False, batch: int = 16) -> Runner:
    r = Runner(_forward(model, device, precision, channels_last), device)
    r.name = "eager"
    return r


def compiled(model, card, device: str, precision: str = "fp32", channels_last: bool = False, batch: int = 16,
             mode: str | None = None) -> Runner:
    """torch.compile (inductor). On CUDA ``mode="max-autotune"`` adds CUDA graphs; compiles on first call."""
    import torch

    base = eager(model, card, device, precision, channels_last, batch)
    compiled_fn = torch.compile(base._fn, mode=mode or ("max-autotune" if device.startswith("cuda") else None), dynamic=False)
    r = Runner(compiled_fn, device)
    r.name = "compile"
    return r


def graphs(model, card, device: str, precision: str = "fp32", channels_last: bool = False, batch: int = 16) -> Runner:
    """Eager kernels replayed from CUDA graphs, one per batch bucket up to ``batch`` (engine/cuda_graphs.py).

    The first GPU run found the models bound by Python's per-kernel launch cost, not the GPU; a graph
    replays a whole forward pass with one call. Every bucket is recorded here, at start, so no batch of
    the run waits for a capture. Same kernels as ``eager``: the outputs match it (gpu test).
    """
    from ...cuda_graphs import GraphedForward

    if not device.startswith("cuda"):
        raise ConfigError(f"backend 'graphs' replays CUDA graphs: it needs a CUDA device (the analyzer runs on {device}); "
                          "use 'eager' on the CPU")
    fn = _forward(model, device, precision, channels_last, cache_casts=False)
    graphed = GraphedForward(fn, device, batch, name=card.name)
    graphed.capture((card.input_channels, card.input_size, card.input_size))
    r = Runner(graphed, device)
    r.name = "graphs"
    return r


def export_onnx(model, card, path: str | Path, batch: int = 16, opset: int = 17) -> Path:
    """Write an ONNX file with a dynamic batch axis and the card beside it (``<file>.card.json``). The file
    appears whole (written under a temporary name, then renamed): processes exporting the same model to the
    same cache at once (several runs, the test suite's workers) never read a half-written one."""
    import tempfile

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(batch, card.input_channels, card.input_size, card.input_size)
    model = model.eval().cpu()
    import warnings

    with warnings.catch_warnings():
        # export-time notices only (the TorchScript exporter announcing its successor, constant
        # folding skipped for strided slices); the parity tests check the exported graph itself
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            torch.onnx.export(model, (x,), tmp, input_names=["input"], output_names=["probs"], opset_version=opset,
                              dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}}, dynamo=False)
            path.with_suffix(path.suffix + ".card.json").write_text(json.dumps(card.to_dict(), indent=2))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def _cache_dir() -> Path:
    return Path(os.environ.get("AUFLOW_CACHE", Path.home() / ".cache" / "auflow"))


def _state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def onnx(model, card, device: str, precision: str = "fp32", channels_last: bool = False, batch: int = 16,
         path: str | Path | None = None) -> Runner:
    """ONNX Runtime: CUDA provider when ``device`` is cuda and the provider exists, else CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("backend 'onnx' needs onnxruntime: pip install onnxruntime onnx onnxscript") from None
    if precision != "fp32":
        raise ConfigError("backend 'onnx' runs fp32 here; use backend 'eager' or 'compile' for fp16/bf16")
    path = Path(path) if path else _cache_dir() / "onnx" / f"{card.name}-{_state_hash(model)}.onnx"
    if not path.is_file():
        export_onnx(model, card, path, batch)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelError("backend 'onnx' on cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available)")
        providers.insert(0, "CUDAExecutionProvider")
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # the analyzer's thread budget (analyzer.threads, applied to torch before the models start), and
    # no spin-waiting: on a few shared cores spinning ORT threads take the CPU the stream workers need
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=providers)

    def fn(x):
        return np.asarray(session.run(["probs"], {"input": x.detach().cpu().numpy().astype(np.float32)})[0])

    r = Runner(fn, device)
    r.name = "onnx"
    return r


def tensorrt(model, card, device: str, precision: str = "fp16", channels_last: bool = False, batch: int = 16) -> Runner:
    """TensorRT through torch-tensorrt. UNTESTED ON HARDWARE: TensorRT cannot be installed where
    auflow is developed (PyPI's tensorrt wheels fetch from a host these machines cannot reach)."""
    try:
        import torch_tensorrt  # noqa: F401 - lazy: optional extra
    except Exception as e:  # noqa: BLE001 - any import failure means the backend is absent
        raise ModelError(f"backend 'tensorrt' needs torch-tensorrt and TensorRT on a CUDA machine "
                         f"(pip install 'auflow[tensorrt]'); import failed: {type(e).__name__}: {e}") from None
    import torch

    if not device.startswith("cuda"):
        raise ConfigError("backend 'tensorrt' needs a CUDA device")
    model = _prepare(model, device, "fp32", channels_last)
    dtype = _dtype(precision)
    shape = (card.input_channels, card.input_size, card.input_size)
    trt_input = torch_tensorrt.Input(min_shape=(1, *shape), opt_shape=(batch, *shape), max_shape=(batch, *shape), dtype=torch.float32)
    trt_model = torch_tensorrt.compile(model, ir="dynamo", inputs=[trt_input], enabled_precisions={dtype, torch.float32})
    r = Runner(trt_model, device)
    r.name = "tensorrt"
    log.warning("backend 'tensorrt' is untested on hardware by the auflow project: check its parity with eager on your machine")
    return r


#: how a registry model runs, by name (the config's ``backend`` choices, engine/config.py's Backend, are these)
BACKENDS: Registry = Registry(
    "backend",
    "How a registry model runs. Entry: ``factory(model, card, device, precision=, channels_last=, batch=) -> Runner``.",
)
for _name, _factory in {"eager": eager, "graphs": graphs, "compile": compiled, "onnx": onnx, "tensorrt": tensorrt}.items():
    BACKENDS.register(_name)(_factory)


def load_backend(name: str, model, card, device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
                 batch: int = 16) -> Runner:
    if ":" in name or name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    factory = BACKENDS.get(name)
    return factory(model, card, device, precision=precision, channels_last=channels_last, batch=batch)
