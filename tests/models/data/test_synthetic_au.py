"""The generated AU dataset: deterministic by seed, labels follow the documented rules, each visible
AU changes its own part of the face, hidden AUs change no pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auflow.models.data import DatasetError, build_dataset
from auflow.models.data import synthetic_au
from auflow.models.data.synthetic_au import (
    HIDDEN_AUS,
    HIDDEN_RULES,
    SYNTHETIC_AUS,
    VISIBLE_AUS,
    SyntheticAU,
    _look,
    clear_render_cache,
    render_face,
)


@pytest.fixture
def drawn_each_time(monkeypatch):
    """No render cache: every read draws the face again (so determinism is the generator's, not the cache's)."""
    monkeypatch.setattr(synthetic_au, "RENDER_CACHE_BYTES", 0)


def col(au: str) -> int:
    return SYNTHETIC_AUS.index(au)


def test_same_seed_same_images_other_seed_or_split_other_images(drawn_each_time):
    a, b = SyntheticAU(20, seed=5, image_size=48), SyntheticAU(20, seed=5, image_size=48)
    for i in (0, 7, 19):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["labels"], b[i]["labels"])
    c = SyntheticAU(20, seed=6, image_size=48)
    t = SyntheticAU(20, seed=5, split="test", image_size=48)
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert not any(torch.equal(a[i]["image"], t[i]["image"]) for i in range(20))


def test_a_sample_does_not_depend_on_order_or_dataset_size(drawn_each_time):
    small, big = SyntheticAU(5, seed=1, image_size=32), SyntheticAU(50, seed=1, image_size=32)
    late_first = big[40]["image"].clone()
    for i in range(5):
        assert torch.equal(small[i]["image"], big[i]["image"])
    assert torch.equal(big[40]["image"], late_first)
    np.testing.assert_array_equal(small.labels, big.labels[:5])


def test_the_render_cache_returns_the_drawn_faces(monkeypatch):
    clear_render_cache()
    picks = (0, 29, 5)
    ds = SyntheticAU(30, seed=9, image_size=40)
    first = [ds.image(i) for i in picks]
    first[0][:] = 0  # a caller that writes into its image does not change the cached face
    again = SyntheticAU(30, seed=9, image_size=40)  # another dataset of the same stream: served from the cache
    assert again._store is ds._store and int(ds._store[1].sum()) == len(picks)
    longer = SyntheticAU(60, seed=9, image_size=40)  # a longer prefix keeps what was drawn
    assert int(longer._store[1].sum()) == len(picks)
    monkeypatch.setattr(synthetic_au, "RENDER_CACHE_BYTES", 0)
    fresh = SyntheticAU(30, seed=9, image_size=40)
    assert fresh._store is None
    for i in picks:
        drawn = fresh.image(i)
        assert drawn.std() > 10
        np.testing.assert_array_equal(again.image(i), drawn)
        np.testing.assert_array_equal(longer.image(i), drawn)
    clear_render_cache()


def test_items_have_the_dataset_contract():
    ds = build_dataset("synthetic", "train", input_size=40, size=8, seed=0)
    item = ds[3]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 40, 40)
    assert item["labels"].dtype == torch.float32 and item["labels"].shape == (len(SYNTHETIC_AUS),)
    assert ds.au_names == SYNTHETIC_AUS and "hidden" in ds.description
    torch.testing.assert_close(item["labels"], torch.from_numpy(ds.labels[3]))
    assert item["image"].float().std() > 10  # a drawn face, not a blank


def test_label_rules_hold_on_every_sample():
    y = SyntheticAU(3000, seed=2, image_size=16).labels.astype(bool)
    np.testing.assert_array_equal(y[:, col("AU06")], y[:, col("AU12")] & y[:, col("AU02")])  # both
    np.testing.assert_array_equal(y[:, col("AU17")], y[:, col("AU15")] ^ y[:, col("AU04")])  # exactly one
    assert set(HIDDEN_RULES) == set(HIDDEN_AUS) == {"AU06", "AU17"}
    assert not np.any(y[:, col("AU12")] & y[:, col("AU15")])  # corners go up or down
    assert np.all(y[y[:, col("AU26")], col("AU25")])  # a dropped jaw parts the lips
    rates = y.mean(0)
    assert np.all(rates > 0.1) and np.all(rates < 0.8)  # every AU occurs, none is constant
    # visible AUs that no rule ties are independent: P(AU01 & AU09) ≈ P(AU01) P(AU09)
    assert abs((y[:, col("AU01")] & y[:, col("AU09")]).mean() - rates[col("AU01")] * rates[col("AU09")]) < 0.03


def _render(intensity: dict[str, float], size: int = 96) -> np.ndarray:
    look = _look(np.random.default_rng(11))
    return render_face(intensity, look, size, np.random.default_rng(12)).astype(np.int32)


def test_hidden_aus_have_no_pixel_cue():
    base = {au: 0.0 for au in VISIBLE_AUS}
    ref = _render(base)
    np.testing.assert_array_equal(_render({**base, **{h: 1.0 for h in HIDDEN_AUS}}), ref)


@pytest.mark.parametrize("au, rows", [
    ("AU01", (0.2, 0.55)), ("AU02", (0.2, 0.55)), ("AU04", (0.2, 0.55)), ("AU09", (0.35, 0.65)),
    ("AU12", (0.6, 0.95)), ("AU15", (0.6, 0.95)), ("AU25", (0.6, 0.95)), ("AU26", (0.6, 1.0)),
])
def test_each_visible_au_changes_its_own_region(au, rows):
    size = 96
    base = {a: 0.0 for a in VISIBLE_AUS}
    diff = np.abs(_render({**base, au: 1.0}, size) - _render(base, size)).sum(axis=(1, 2))  # per row
    lo, hi = int(rows[0] * size), int(rows[1] * size)
    assert diff.sum() > 2000, f"{au} barely changes the image"
    assert diff[lo:hi].sum() / diff.sum() > 0.9, f"{au} changes pixels outside rows {lo}-{hi}"
    weak = np.abs(_render({**base, au: 0.15}, size) - _render(base, size)).sum()
    assert weak < diff.sum() / 2  # absent-level intensity (≤ 0.15) is a much smaller change


def test_bad_arguments_are_dataset_errors():
    with pytest.raises(DatasetError, match="split"):
        SyntheticAU(4, split="val")
    with pytest.raises(DatasetError, match="size"):
        SyntheticAU(0)
    with pytest.raises(DatasetError, match="splits train and test"):
        build_dataset("synthetic", "all", input_size=32)
