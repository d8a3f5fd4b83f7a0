"""Expression loaders on tiny fake trees that follow the documented layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from auflow.models.data.core import DatasetError
from auflow.models.data.expr import (
    AFEW_LABELS,
    RAFML_LABELS,
    RML_LABELS,
    AffWild2Expr,
    RafML,
    afew,
    affwild2_metric,
    build_expr_dataset,
    rml,
)
from auflow.models.data.sampling import dilated_indices, sparse_indices
from sklearn.metrics import accuracy_score, f1_score


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((20, 20, 3), value, np.uint8))


def _clip(folder: Path, n: int) -> None:
    for k in range(n):
        _img(folder / f"{k:04d}.png", 10 * k % 250)


def test_rml_loso(tmp_path):
    for s in ("s1", "s2", "s3"):
        for name in ("anger", "surprise"):
            _clip(tmp_path / s / name / f"{s}_{name}_clip", 20)
    test = rml(tmp_path, "test", fold=2, input_size=16)
    train = rml(tmp_path, "train", fold=2, input_size=16)
    assert set(test.groups) == {"s2"} and set(train.groups) == {"s1", "s3"}
    assert sorted(test.labels.tolist()) == [RML_LABELS.index("anger"), RML_LABELS.index("surprise")]
    item = test[0]
    assert item["frames"].shape == (16, 3, 16, 16) and str(item["frames"].dtype) == "torch.uint8"
    np.testing.assert_array_equal(test.indices(0), sparse_indices(20, 16))
    # the frame values follow the sampled indices (frame k has value 10k)
    assert [int(v) for v in item["frames"][:, 0, 0, 0]] == [10 * k for k in sparse_indices(20, 16)]
    for fold in (1, 2, 3):  # LOSO: every subject tested exactly once, never in its own training set
        assert set(rml(tmp_path, "test", fold=fold).groups).isdisjoint(rml(tmp_path, "train", fold=fold).groups)
    tr = rml(tmp_path, "train", fold=2, input_size=16)
    idx = tr.indices(0)
    assert len(idx) == 16 and np.all(np.diff(idx) >= 0) and idx.max() < 20
    with pytest.raises(DatasetError, match="Expected RML layout"):
        rml(tmp_path / "nothing", "train")
    (tmp_path / "s4" / "happy" / "c").mkdir(parents=True)  # wrong emotion folder name
    with pytest.raises(DatasetError, match="Expected RML layout"):
        rml(tmp_path, "test", fold=4)


def test_afew_split_and_labels(tmp_path):
    _clip(tmp_path / "Train" / "Happy" / "001", 5)
    _clip(tmp_path / "Train" / "Neutral" / "002", 30)
    _clip(tmp_path / "Val" / "Sad" / "003", 8)
    tr, va = afew(tmp_path, "train", input_size=8), afew(tmp_path, "val", input_size=8)
    assert tr.labels.tolist() == [AFEW_LABELS.index("Happy"), AFEW_LABELS.index("Neutral")]
    assert va.labels.tolist() == [AFEW_LABELS.index("Sad")]
    assert not {c[0] for c in tr.clips} & {c[0] for c in va.clips}
    assert tr[0]["frames"].shape == (16, 3, 8, 8)  # 5-frame clip: frames repeat
    with pytest.raises(DatasetError, match="Expected AFEW layout"):
        afew(tmp_path / "Train", "val")


def _affwild(root: Path) -> None:
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    for sub, vid, labels in (("Train_Set", "v1", [0, 1, -1, 2] + [3] * 26), ("Validation_Set", "v2", [7, -1, 4])):
        ann = root / "annotations" / "EXPR_Set" / sub / f"{vid}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(header + "\n" + "\n".join(map(str, labels)) + "\n")
        for k in range(len(labels)):
            if not (vid == "v1" and k == 5):  # frame 6 of v1 missing (no face)
                _img(root / "cropped_aligned" / vid / f"{k + 1:05d}.jpg", 8 * k)


def test_affwild2(tmp_path):
    _affwild(tmp_path)
    tr, va = AffWild2Expr(tmp_path, "train", input_size=8), AffWild2Expr(tmp_path, "val", input_size=8)
    assert tr.label_names[-1] == "Other" and len(tr.label_names) == 8
    assert tr.videos == ["v1"] and va.videos == ["v2"]
    assert va.labels.tolist() == [7, 4]  # -1 skipped
    assert len(tr) == 30 - 1 - 1  # one -1, one frame without an image
    np.testing.assert_array_equal(tr.indices(10), dilated_indices(tr.items[10][1], 30, 8, 3))
    item = tr[10]
    assert item["frames"].shape == (8, 3, 8, 8) and int(item["label"]) == tr.items[10][2]
    with pytest.raises(DatasetError, match="Expected Aff-Wild2 layout"):
        AffWild2Expr(tmp_path / "annotations", "train")


def test_affwild2_metric_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 8, 500), rng.integers(0, 8, 500)
    p[:200] = y[:200]
    f1 = f1_score(y, p, average="macro", labels=list(range(8)), zero_division=0)
    assert affwild2_metric(y, p, 8) == pytest.approx(0.67 * f1 + 0.33 * accuracy_score(y, p), abs=1e-9)
    assert affwild2_metric(y, p, 8, f1_only=True) == pytest.approx(f1, abs=1e-9)


def test_rafml(tmp_path):
    emo = tmp_path / "EmoLabel"
    emo.mkdir()
    dist = {"a.jpg": [0.6, 0.0, 0.0, 0.4, 0.0, 0.0], "b.jpg": [0, 0, 0.1, 0, 0.9, 0], "c.jpg": [1, 1, 1, 1, 1, 1.5]}
    emo.joinpath("distribution.txt").write_text("".join(f"{k} {' '.join(map(str, v))}\n" for k, v in dist.items()))
    emo.joinpath("partition_label.txt").write_text("a.jpg 0\nb.jpg 0\nc.jpg 1\n")
    for k in dist:
        _img(tmp_path / "Image" / "aligned" / f"{Path(k).stem}_aligned.jpg", 100)
    tr, te = build_expr_dataset("rafml", tmp_path, split="train", input_size=8), RafML(tmp_path, "test", input_size=8)
    assert len(tr) == 2 and len(te) == 1
    assert tr.labels[0].tolist() == [1, 0, 0, 1, 0, 0]  # Surprise + Happiness
    assert tr.labels[1].tolist() == [0, 0, 0, 0, 1, 0]  # 0.1 < 1/6
    assert te.labels[0].tolist() == [0, 0, 0, 0, 0, 1] and RAFML_LABELS[5] == "Anger"
    assert tr[0]["image"].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match="Expected RAF-ML layout"):
        RafML(tmp_path / "Image", "train")
