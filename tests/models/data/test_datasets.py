"""BP4D / DISFA / EmotioNet loaders on tiny fake directories in the documented layouts, and the folds."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from auflow.engine.errors import ConfigError
from auflow.models.au.me_graphau import AU_SETS as MODEL_AU_SETS
from auflow.models.data import AU_SETS, DatasetError, build_dataset, dataset_au_names
from auflow.models.data.bp4d import BP4D_AUS, BP4D_FOLDS, BP4D_SUBJECTS
from auflow.models.data.disfa import DISFA_AUS, DISFA_FOLDS, DISFA_SUBJECTS
from auflow.models.data.emotionet import EMOTIONET_AUS, hash_fold
from auflow.models.train.evaluate import detect_dataset


def _image(path: Path, value: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value, np.uint8)
    img[: size // 2, :, 2] = 255 - value  # not uniform, so a flip or crop is visible
    assert cv2.imwrite(str(path), img)


# -- folds ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("folds, subjects, n", [(BP4D_FOLDS, BP4D_SUBJECTS, 41), (DISFA_FOLDS, DISFA_SUBJECTS, 27)])
def test_every_subject_is_in_exactly_one_test_fold(folds, subjects, n):
    assert sorted(folds) == [1, 2, 3]
    all_test = [s for k in folds for s in folds[k]]
    assert len(all_test) == n == len(set(all_test))  # no subject tests twice
    assert set(all_test) == set(subjects)


def test_fold_lists_are_the_papers_split():
    # ME-GraphAU's lists: fold 1 tests part 3 (13 subjects starting F007), fold 3 tests part 1 (F001 …)
    assert BP4D_FOLDS[1][:3] == ("F007", "F015", "F006") and len(BP4D_FOLDS[1]) == 13
    assert BP4D_FOLDS[3][0] == "F001" and len(BP4D_FOLDS[3]) == 14
    assert {f"F{i:03d}" for i in range(1, 24)} | {f"M{i:03d}" for i in range(1, 19)} == set(BP4D_SUBJECTS)
    assert DISFA_FOLDS[1][0] == "SN003" and DISFA_FOLDS[3][0] == "SN002"
    missing = {14, 15, 19, 20, 22}  # DISFA has no SN014, SN015, SN019, SN020, SN022
    assert set(DISFA_SUBJECTS) == {f"SN{i:03d}" for i in range(1, 33) if i not in missing}


def test_au_sets_match_the_models():
    assert AU_SETS["bp4d"] == MODEL_AU_SETS["bp4d"] == BP4D_AUS
    assert AU_SETS["disfa"] == MODEL_AU_SETS["disfa"] == DISFA_AUS
    assert EMOTIONET_AUS == ("AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU12", "AU17", "AU20", "AU25", "AU26", "AU43")


# -- BP4D -------------------------------------------------------------------------------------------
BP4D_PICK = {1: ("F007", "M006"), 2: ("M011",), 3: ("F001", "M007")}  # two parts of test subjects per fold


def make_bp4d(root: Path, frames: int = 4) -> dict[str, np.ndarray]:
    """Subjects of every fold, task T1, ``frames`` frames each; frame 3 of each is coded 9 (skipped)."""
    occ = root / "AUCoding" / "AU_OCC"
    occ.mkdir(parents=True)
    truth = {}
    rng = np.random.default_rng(0)
    numbers = [int(a[2:]) for a in BP4D_AUS]
    for subjects in BP4D_PICK.values():
        for subj in subjects:
            codes = rng.integers(0, 2, (frames, len(BP4D_AUS)))
            codes[:, 0] = np.arange(frames) % 2  # AU01 alternates, so labels are known per frame
            codes[2, 3] = 9
            header = ["0"] + [str(n) for n in (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)]
            with (occ / f"{subj}_T1.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                for i in range(frames):
                    row = {str(n): 0 for n in header[1:]}
                    row.update({str(n): int(c) for n, c in zip(numbers, codes[i])})
                    w.writerow([100 + i] + [row[h] for h in header[1:]])
                    _image(root / "img" / subj / "T1" / f"{100 + i}.jpg", 40 * i)
            truth[subj] = codes
    return truth


def test_bp4d_loads_folds_and_labels(tmp_path):
    truth = make_bp4d(tmp_path)
    test = build_dataset("bp4d", "test", fold=1, root=tmp_path, input_size=32)
    train = build_dataset("bp4d", "train", fold=1, root=tmp_path, input_size=32)
    assert set(test.subjects) == {"F007", "M006"}
    assert set(train.subjects) == {"M011", "F001", "M007"}
    assert not set(test.subjects) & set(train.subjects)
    assert len(test) == 2 * 3 and len(train) == 3 * 3  # the frame coded 9 is skipped
    assert test.au_names == BP4D_AUS
    item = test[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["labels"].dtype == torch.float32 and item["labels"].shape == (12,)
    expected = np.concatenate([np.delete(truth[s], 2, axis=0) for s in ("F007", "M006")])
    assert sorted(map(tuple, test.labels.astype(int))) == sorted(map(tuple, expected))
    assert detect_dataset(tmp_path) == "bp4d"


def test_bp4d_folds_partition_the_frames(tmp_path):
    make_bp4d(tmp_path)
    everything = build_dataset("bp4d", "all", root=tmp_path, input_size=32)
    seen = []
    for k in (1, 2, 3):
        test = build_dataset("bp4d", "test", fold=k, root=tmp_path, input_size=32)
        train = build_dataset("bp4d", "train", fold=k, root=tmp_path, input_size=32)
        assert set(test.subjects) == set(BP4D_PICK[k])
        assert not set(test.subjects) & set(train.subjects)
        assert len(test) + len(train) == len(everything)
        seen += [str(p) for p in test.paths]
    assert sorted(seen) == sorted(str(p) for p in everything.paths)  # each frame tests exactly once


def test_bp4d_wrong_layout_names_the_expected_one(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"AUCoding/AU_OCC.*img/<subject>/<task>/<frame>\.jpg"):
        build_dataset("bp4d", "test", fold=1, root=tmp_path)
    assert issubclass(DatasetError, ConfigError)


def test_bp4d_logs_what_it_skips_and_without_images_says_so(tmp_path, caplog):
    make_bp4d(tmp_path)
    with caplog.at_level("INFO", logger="auflow.models.data.bp4d"):
        build_dataset("bp4d", "test", fold=1, root=tmp_path, input_size=32)
    assert "BP4D" in caplog.text and "skipped 5 frames with an AU coded 9 and 0 without an image" in caplog.text  # one per subject
    for jpg in (tmp_path / "img").rglob("*.jpg"):
        jpg.unlink()
    with pytest.raises(DatasetError, match=r"no frame with an image .* \(5 frames not coded, 15 without image\)"):
        build_dataset("bp4d", "test", fold=1, root=tmp_path)


def test_bp4d_needs_a_fold_and_a_known_one(tmp_path):
    make_bp4d(tmp_path)
    with pytest.raises(DatasetError, match="give a fold"):
        build_dataset("bp4d", "test", root=tmp_path)
    with pytest.raises(DatasetError, match="folds 1, 2, 3"):
        build_dataset("bp4d", "test", fold=4, root=tmp_path)


def test_training_transform_crops_and_flips_evaluation_does_not(tmp_path):
    make_bp4d(tmp_path)
    ev = build_dataset("bp4d", "test", fold=1, root=tmp_path, input_size=32)
    aug = build_dataset("bp4d", "test", fold=1, root=tmp_path, input_size=32, augment=True)
    assert torch.equal(ev[1]["image"], ev[1]["image"])  # deterministic centre crop
    torch.manual_seed(0)
    outs = {aug[1]["image"].numpy().tobytes() for _ in range(12)}
    assert len(outs) > 1  # random crops/flips differ
    torch.manual_seed(0)
    again = {aug[1]["image"].numpy().tobytes() for _ in range(12)}
    assert again == outs  # and repeat under the same torch seed


# -- DISFA ------------------------------------------------------------------------------------------
def make_disfa(root: Path, subjects=("SN003", "SN013", "SN002"), frames: int = 5) -> dict[str, np.ndarray]:
    truth = {}
    for k, subj in enumerate(subjects):
        intens = (np.arange(frames)[:, None] + np.arange(8)[None, :] + k) % 6  # 0..5
        for j, au in enumerate(DISFA_AUS):
            f = root / "ActionUnit_Labels" / subj / f"{subj}_au{int(au[2:])}.txt"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("".join(f"{i + 1},{intens[i, j]}\n" for i in range(frames)))
        for i in range(frames - 1):  # the last labelled frame has no image
            _image(root / "img" / subj / f"{i}.png", 50 * i)
        truth[subj] = intens[: frames - 1]
    return truth


def test_disfa_intensity_two_or_more_is_present(tmp_path):
    truth = make_disfa(tmp_path)
    test = build_dataset("disfa", "test", fold=1, root=tmp_path, input_size=24)  # fold 1 tests SN003
    assert set(test.subjects) == {"SN003"} and len(test) == 4
    np.testing.assert_array_equal(test.labels, (truth["SN003"] >= 2).astype(np.float32))
    train = build_dataset("disfa", "train", fold=1, root=tmp_path, input_size=24)
    assert set(train.subjects) == {"SN013", "SN002"}
    assert test[0]["image"].shape == (3, 24, 24)
    assert detect_dataset(tmp_path) == "disfa"


def test_disfa_missing_label_file_is_a_clear_error(tmp_path):
    make_disfa(tmp_path)
    (tmp_path / "ActionUnit_Labels" / "SN003" / "SN003_au26.txt").unlink()
    with pytest.raises(DatasetError, match=r"SN003_au26\.txt.*ActionUnit_Labels/<subject>/<subject>_au<N>\.txt"):
        build_dataset("disfa", "test", fold=1, root=tmp_path)


def test_disfa_without_images_says_where_they_go(tmp_path):
    make_disfa(tmp_path)
    for p in (tmp_path / "img").rglob("*.png"):
        p.unlink()
    with pytest.raises(DatasetError, match=r"img/<subject>/<i>\.png"):
        build_dataset("disfa", "all", root=tmp_path)


# -- EmotioNet --------------------------------------------------------------------------------------
def make_emotionet(root: Path, n: int = 30, with_fold: bool = False) -> np.ndarray:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (n, 12))
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *EMOTIONET_AUS] + (["fold"] if with_fold else []))
        for i in range(n):
            row = [f"im{i:03d}.jpg", *labels[i]]
            if i == 0:
                row[5] = 999  # AU06 not coded: skipped
            w.writerow(row + ([i % 3 + 1] if with_fold else []))
            _image(root / "img" / f"im{i:03d}.jpg", 7 * i)
    return labels


def test_emotionet_folds_by_hash_partition_the_images(tmp_path):
    make_emotionet(tmp_path)
    everything = build_dataset("emotionet", "all", root=tmp_path, input_size=32)
    assert len(everything) == 29
    tests = [build_dataset("emotionet", "test", fold=k, root=tmp_path, input_size=32) for k in (1, 2, 3)]
    names = [Path(p).name for t in tests for p in t.paths]
    assert sorted(names) == sorted(Path(p).name for p in everything.paths)
    for k, t in zip((1, 2, 3), tests):
        assert all(hash_fold(Path(p).name) == k for p in t.paths)
    assert hash_fold("im001.jpg") == hash_fold("im001.jpg")
    assert detect_dataset(tmp_path) == "emotionet"


def test_emotionet_fold_column_overrides_and_labels_load(tmp_path):
    labels = make_emotionet(tmp_path, with_fold=True)
    test = build_dataset("emotionet", "test", fold=2, root=tmp_path, input_size=32)
    idx = [int(Path(p).stem[2:]) for p in test.paths]
    assert idx == [i for i in range(1, 30) if i % 3 + 1 == 2]
    np.testing.assert_array_equal(test.labels, labels[idx].astype(np.float32))


def test_emotionet_wrong_layout(tmp_path):
    (tmp_path / "img").mkdir()
    with pytest.raises(DatasetError, match="labels.csv is missing.*image, AU01"):
        build_dataset("emotionet", "test", fold=1, root=tmp_path)
    (tmp_path / "labels.csv").write_text("file,AU01\nx.jpg,1\n")
    with pytest.raises(DatasetError, match="no 'image' column"):
        build_dataset("emotionet", "test", fold=1, root=tmp_path)


def test_unknown_dataset_and_missing_root():
    with pytest.raises(DatasetError, match="bp4d, disfa, emotionet, synthetic"):
        build_dataset("affwild2", "train")
    with pytest.raises(DatasetError, match="needs root"):
        build_dataset("disfa", "train", fold=1)
    assert dataset_au_names("disfa") == DISFA_AUS


def test_every_benchmark_au_set_has_a_registered_loader():
    from auflow.engine.registry import Registry
    from auflow.models.data import AU_DATASET_LOADERS, AU_SETS, DATASETS

    assert isinstance(AU_DATASET_LOADERS, Registry)
    assert sorted(AU_DATASET_LOADERS) == sorted(AU_SETS) and set(DATASETS) == {*AU_SETS, "synthetic"}
