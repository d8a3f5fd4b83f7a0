"""Model cards: what a model is, what it takes, what it was trained on.

Every model built by ``create_model`` carries ``model.card``; every checkpoint carries the card
it was saved with. ``kind`` is what the wire format reports as provenance: a model without
trained weights is ``untrained`` and says so in every result.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from auflow.engine.errors import ModelError
from auflow.engine.types import MODEL_KINDS


@dataclass
class ModelCard:
    name: str  # registry name, e.g. "me_graphau"
    task: str  # "au" | "expr"
    labels: tuple[str, ...]  # output column names ("AU01", … or canonical expressions)
    config: dict[str, Any] = field(default_factory=dict)  # kwargs that rebuild the model
    input_size: int = 112  # square crop side the model takes
    input_channels: int = 3  # 3 = RGB, 1 = grayscale
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # on [0, 1] inputs
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    kind: str = "untrained"  # trained | teacher | distilled | user | untrained
    multilabel: bool = True  # sigmoid per label (AUs) vs softmax over labels (expressions)
    training: dict[str, Any] = field(default_factory=dict)  # data, protocol, metrics, teacher…
    paper: str = ""

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.kind not in MODEL_KINDS:
            raise ModelError(f"model card kind must be one of {MODEL_KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def held_out_people(card: ModelCard) -> tuple[bool, str]:
    """Whether a distilled card's agreement was measured on people absent from its training data: its split is
    ``identity`` and names them (``auflow distill --holdout identity``). (ok, why): ``why`` names the people when
    it was, else what the agreement shows instead. Both starter gates (``au`` and the temporal ``expr``) ask this."""
    split = (card.training or {}).get("split") or {}
    people = split.get("heldout_people") or []
    if split.get("mode") == "identity" and people:
        return True, f"{len(people)} held-out people"
    how = split.get("mode") or "no"
    return False, (f"its held-out agreement comes from a {how} split, not from people absent from its training data: it "
                   "shows memory of the faces it learnt, not how it does on a new face (distill with --holdout identity)")


def save_checkpoint(model: torch.nn.Module, path: str | Path, card: ModelCard | None = None) -> Path:
    """Write ``{"card": dict, "state_dict": …}``; plain tensors and dicts only (weights_only loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = card or model.card
    torch.save({"card": card.to_dict(), "state_dict": model.state_dict()}, path)
    return path


def _first_line(e: BaseException) -> str:
    """An exception as one short line (torch's unpickling errors run to a dozen lines of advice)."""
    text = " ".join(str(e).split("\n", 1)[0].split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_checkpoint(path: str | Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Read a checkpoint without unpickling arbitrary objects (``weights_only=True``).

    Anything else — a truncated or foreign file, a pickle that would build objects or run code, a card
    that is not a card, weights that are not tensors — is refused with one :class:`ModelError` line.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist: train one (`auflow train`) or point the config at yours")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        what = ("it holds Python objects other than tensors and plain values (refused: loading them could run code)"
                if isinstance(e, pickle.UnpicklingError) else _first_line(e))
        raise ModelError(f"checkpoint {path} is not a readable auflow checkpoint: {what}") from None
    if not isinstance(blob, dict) or "card" not in blob or "state_dict" not in blob:
        raise ModelError(f"checkpoint {path} has no card/state_dict: not written by auflow")
    card, state = blob["card"], blob["state_dict"]
    labels = card.get("labels") if isinstance(card, dict) else None
    if (not isinstance(card, dict) or not isinstance(card.get("name"), str) or not isinstance(card.get("task"), str)
            or not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels)):
        raise ModelError(f"checkpoint {path}: its card is not a model card (a mapping with name, task and labels)")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"checkpoint {path}: its state_dict is not a mapping of names to tensors")
    try:
        return ModelCard.from_dict(card), state
    except ModelError as e:
        raise ModelError(f"checkpoint {path}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ModelError(f"checkpoint {path}: its card is malformed ({_first_line(e)})") from None
