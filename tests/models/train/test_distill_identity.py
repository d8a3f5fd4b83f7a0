"""`auflow distill --holdout identity` (issue 18): whole people held out, never a time split of the same people."""

from __future__ import annotations

import numpy as np
import pytest
from auflow.engine.errors import ConfigError
from auflow.models.train.distill import DistillConfig, person_of, split_rows
from auflow.models.train.distill_cache import CachedVideo

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'auflow[parquet]')")


def clip(name: str, n: int = 20) -> CachedVideo:
    rows = pd.DataFrame({"frame": np.arange(n), "timestamp": np.arange(n) / 10.0, "presence": np.ones(n)})
    return CachedVideo(name, {"video": f"/data/{name}", "name": name, "fps": 10.0}, rows, np.zeros((n, 8, 8, 3), np.uint8))


def test_each_input_is_its_own_person_and_every_kth_person_is_held_out_whole():
    vids = [clip(f"p{i}.mp4") for i in range(6)]
    train, test, desc = split_rows(vids, DistillConfig(holdout="identity", holdout_every=3, holdout_offset=1))
    assert desc["mode"] == "identity" and desc["heldout_people"] == ["p1", "p4"]
    assert desc["train_people"] == ["p0", "p2", "p3", "p5"]
    for i, (tr, te) in enumerate(zip(train, test)):
        held = i in (1, 4)
        assert (len(te), len(tr)) == ((20, 0) if held else (0, 20))  # nothing of a held-out person trains


def test_a_manifest_joins_inputs_of_one_person_and_keeps_them_on_one_side():
    """Three recordings of the same man and two of a woman: whichever is held out, all of that person is."""
    vids = [clip("a1.mp4"), clip("a2.mp4"), clip("b1.mp4"), clip("/x/a3.mov"), clip("c.jpg")]
    ids = {"a1.mp4": "man", "a2": "man", "/data//x/a3.mov": "man", "b1.mp4": "woman", "c.jpg": "woman"}
    assert [person_of(v.meta, ids) for v in vids] == ["man", "man", "woman", "man", "woman"]
    train, test, desc = split_rows(vids, DistillConfig(holdout="identity", identities=ids, heldout_people=["man"]))
    assert desc["heldout_people"] == ["man"] and desc["train_people"] == ["woman"]
    assert [len(t) for t in test] == [20, 20, 0, 20, 0] and [len(t) for t in train] == [0, 0, 20, 0, 20]


def test_identity_split_errors_say_what_to_give():
    with pytest.raises(ConfigError, match="at least 2 people"):
        split_rows([clip("a.mp4"), clip("b.mp4")], DistillConfig(holdout="identity", identities={"a.mp4": "x", "b.mp4": "x"}))
    with pytest.raises(ConfigError, match="not among"):
        split_rows([clip("a.mp4"), clip("b.mp4")], DistillConfig(holdout="identity", heldout_people=["z"]))
    with pytest.raises(ConfigError, match="every person"):
        split_rows([clip("a.mp4"), clip("b.mp4")], DistillConfig(holdout="identity", heldout_people=["a", "b"]))
