"""The AU label set a model predicts, from its factory's ``au_names`` / ``dataset`` / ``num_classes``.

Every AU model takes the same three ways of naming its labels; each knows its own papers' benchmark
sets (``sets``) and a default one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from auflow.engine.errors import ModelError

__all__ = ["BENCHMARK_AUS", "resolve_au_names"]

#: the one table of the benchmarks' AU label sets: BP4D and DISFA as ME-GraphAU (paper 001, Tables 1 and 2)
#: and AU-GCN use them; EmotioNet's 12 AUs as Topo-AU (paper 000, Sec. 3.1.1, Table 3) does. Every model and
#: dataset loader takes its sets from here.
BENCHMARK_AUS: dict[str, tuple[str, ...]] = {
    "bp4d": ("AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"),
    "disfa": ("AU01", "AU02", "AU04", "AU06", "AU09", "AU12", "AU25", "AU26"),
    "emotionet": ("AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU17", "AU20", "AU25", "AU26", "AU43"),
}


def resolve_au_names(
    au_names: Sequence[str] | None,
    dataset: str | None,
    num_classes: int | None,
    sets: Mapping[str, tuple[str, ...]],
    default: str,
    model: str,
) -> tuple[tuple[str, ...], str | None]:
    """(label names, the benchmark they are) — the benchmark is None for a custom set.

    ``au_names`` wins, then ``dataset`` (one of ``sets``), then ``num_classes`` (the set of that
    size), then ``default``; contradicting arguments are a :class:`ModelError`."""
    if dataset is not None and dataset not in sets:
        raise ModelError(f"unknown AU dataset {dataset!r} for {model}; choose one of {', '.join(sets)} or pass au_names")
    if au_names is not None:
        names = tuple(au_names)
        if not names or len(set(names)) != len(names):
            raise ModelError(f"au_names must be non-empty and unique, got {names}")
        if dataset is not None and names != sets[dataset]:
            raise ModelError(f"au_names {names} differ from dataset {dataset!r}'s {sets[dataset]}: pass one of them")
        found = next((ds for ds, aus in sets.items() if aus == names), None)
    elif dataset is not None:
        names, found = sets[dataset], dataset
    elif num_classes is not None:
        found = next((ds for ds, aus in sets.items() if len(aus) == num_classes), None)
        if found is None:
            sizes = ", ".join(f"{ds}: {len(aus)}" for ds, aus in sets.items())
            raise ModelError(f"num_classes={num_classes} matches no known AU set ({sizes}): pass au_names")
        names = sets[found]
    else:
        names, found = sets[default], default
    if num_classes is not None and num_classes != len(names):
        raise ModelError(f"num_classes={num_classes} but {len(names)} AUs {names}: drop num_classes or fix au_names")
    return names, found
