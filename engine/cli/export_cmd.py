"""``auflow export MODEL --backend onnx``: write a model's deployable artefact with its card."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..configfile import parse_override
from ..errors import ConfigError


def run_export(out: Console, model_name: str, backend: str, path: Path | None, checkpoint: str | None,
               options: list[str], batch: int) -> Path:
    from auflow.models import create_model

    from ..analyzer.backends.core import export_onnx

    kwargs = {}
    for o in options:  # --set options.k=v (the model factory's options)
        key, value = parse_override(o)
        if not key.startswith("options.") or key.count(".") != 1:
            raise ConfigError(f"auflow export --set {o}: export takes the model's options, as options.KEY=VALUE")
        kwargs[key.split(".", 1)[1]] = value
    model = create_model(model_name, checkpoint=checkpoint, **kwargs)
    card = model.card
    if backend == "onnx":
        path = path or Path(f"{model_name}.onnx")
        export_onnx(model, card, path, batch=batch)
    elif backend == "torch":
        from auflow.models import save_checkpoint

        path = path or Path(f"{model_name}.pt")
        save_checkpoint(model, path, card)
    else:
        raise ConfigError(f"auflow export writes 'onnx' or 'torch' artefacts; backend {backend!r} is built at run time "
                          f"from the model (set analyzer.models.N.backend: {backend})")
    out.print(f"wrote {path} ({card.name}, {card.kind}, input {card.input_channels}x{card.input_size}², labels {', '.join(card.labels)})")
    if card.kind == "untrained":
        out.print("[yellow]note: this model has no trained weights; its outputs are not meaningful[/]")
    return path
