"""ARPGNet's frame sampling (paper 003, Sec. 4.2.1): sparse for RML/AFEW, dilated for Aff-Wild2."""

from __future__ import annotations

import numpy as np
import pytest

from auflow.models.data.sampling import dilated_indices, sparse_indices


def test_sparse_sampling_at_test_time_takes_segment_middles():
    np.testing.assert_array_equal(sparse_indices(160, 16), np.arange(16) * 10 + 5)
    np.testing.assert_array_equal(sparse_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])  # short videos repeat
    assert sparse_indices(1, 16).tolist() == [0] * 16


def test_sparse_sampling_in_training_takes_one_random_frame_per_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([sparse_indices(100, 16, train=True, rng=rng) for _ in range(300)])
    assert draws.shape == (300, 16) and draws.dtype == np.int64
    seg = np.floor(np.arange(17) * 100 / 16).astype(int)
    assert (draws >= seg[:-1]).all() and (draws < np.ceil(np.arange(1, 17) * 100 / 16)).all()
    assert len(np.unique(draws[:, 0])) > 3  # random within the segment
    with pytest.raises(ValueError, match="rng"):
        sparse_indices(100, 16, train=True)


def test_dilated_sampling_for_affwild2():
    np.testing.assert_array_equal(dilated_indices(50, 100), 50 + 3 * (np.arange(8) - 4))  # −12 … +9
    np.testing.assert_array_equal(dilated_indices(50, 100, causal=True), 50 - 3 * np.arange(7, -1, -1))
    np.testing.assert_array_equal(dilated_indices(2, 10), [0, 0, 0, 0, 2, 5, 8, 9])  # clamped at both ends
    with pytest.raises(ValueError, match="outside"):
        dilated_indices(10, 10)
