"""auflow's models: the papers' AU and expression networks, by name.

``create_model(name, **cfg)`` builds one (``checkpoint=PATH`` loads weights and card);
``list_models()`` lists the names.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from auflow.engine.errors import ModelError
from auflow.engine.registry import MODELS

from .card import ModelCard, load_checkpoint, save_checkpoint

register_model = MODELS.register


def list_models(pattern: str = "*") -> list[str]:
    return [n for n in MODELS.names() if fnmatch.fnmatch(n, pattern)]


def create_model(name: str, checkpoint: str | Path | None = None, **cfg: Any):
    """Build a registered model. With ``checkpoint`` the card's config rebuilds it and the weights load.

    The returned module has ``.card`` (a :class:`ModelCard`); its ``kind`` is ``untrained`` unless
    weights were loaded, in which case it is the checkpoint card's kind.
    """
    factory = MODELS.get(name)
    if checkpoint is not None:
        card, state = load_checkpoint(checkpoint)
        if card.name != name:
            raise ModelError(f"checkpoint {checkpoint} holds {card.name!r}, not {name!r}")
        if not isinstance(card.config, dict):
            raise ModelError(f"checkpoint {checkpoint}: its card's config is not a mapping of {name}'s options")
        try:
            model = factory(**{**card.config, **cfg})
        except (TypeError, ValueError) as e:  # options the factory does not take, or values it refuses
            raise ModelError(f"checkpoint {checkpoint}: its card's config does not build {name}: "
                             f"{' '.join(str(e).split())[:300]}") from None
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # tensors of the wrong shape: torch lists every one, one per line
            first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
            raise ModelError(f"checkpoint {checkpoint} does not fit {name}: {first[:300]}") from None
        if missing or unexpected:
            raise ModelError(f"checkpoint {checkpoint} does not fit {name}: missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
        model.card = card
        return model
    return factory(**cfg)


__all__ = ["ModelCard", "create_model", "list_models", "load_checkpoint", "register_model", "save_checkpoint"]
