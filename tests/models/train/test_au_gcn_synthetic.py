"""A real training run of AU-GCN (paper 002) on the generated faces, with the shipped config
configs/train/au_gcn_synthetic.yaml: both stages (auto-encoders with L_ROI, Eq. 3; then every
module with L_au, Eq. 9), the AU graph from the training labels, evaluated on 1,000 held-out faces.

Measured (2-core CPU shared with other jobs, 1054 s wall under load ~13; the config's
eight visible AUs and the two hidden ones): mean F1 0.932; AU01 0.993, AU02 0.993, AU04 0.996,
AU09 1.000, AU12 0.955, AU15 0.888, AU25 0.995, AU26 0.998, AU06 0.883, AU17 0.617. The visible
AUs are learnt (mean 0.977); AU17 (exactly one of AU15 and AU04, an XOR of a mouth cue and a brow
cue) is not yet, and AU15 lags: the target mean F1 0.95 is not reached, and the last test says so.
The shipped config at the start of this work (64x64, SGD 0.01, paper ROI size) gave mean F1 0.175.

With one torch thread (train.threads: 1, now in the config; 2026-12-02, 212 s at load 1.8-3.9): mean
F1 0.952; AU01 0.999, AU02 0.998, AU04 1.000, AU09 1.000, AU12 0.940, AU15 0.858, AU25 0.995, AU26
0.994, AU06 0.938, AU17 0.798. A lower graph threshold h = 0.85 (linking AU17 to AU15 as well) was
worse in the same conditions: mean F1 0.849 (AU17 0.649, AU01 0.591, AU02 0.722).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from auflow.models.data.synthetic_au import VISIBLE_AUS
from auflow.models.train import load_train_config, train

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).parents[3] / "configs" / "train" / "au_gcn_synthetic.yaml"


@pytest.fixture(scope="module")
def au_gcn_run(tmp_path_factory):
    return train(load_train_config(CONFIG), out_dir=tmp_path_factory.mktemp("au_gcn_synthetic"))


def _summary(res) -> str:
    m = res.metrics
    return (f"mean F1 {m.mean_f1:.3f}; " + ", ".join(f"{a} {f:.3f}" for a, f in zip(m.au_names, m.f1))
            + f"; {res.seconds:.0f} s")


def test_au_gcn_learns_the_generated_aus(au_gcn_run):
    res = au_gcn_run
    assert res.metrics.f1_of(list(VISIBLE_AUS)) >= 0.95, _summary(res)  # measured 0.977
    assert res.metrics.mean_f1 >= 0.9, _summary(res)  # measured 0.932, hidden AUs included
    assert res.card.kind == "trained" and "synthetic" in res.card.training["note"]
    assert res.card.training["graph"]["source"] == "training labels"


def test_au_gcn_reaches_the_target_mean_f1(au_gcn_run):
    # measured 0.952 with the config's one torch thread (AU17 0.798): a thin margin, but the run is
    # deterministic for a given thread count and library versions
    assert au_gcn_run.metrics.mean_f1 >= 0.95, _summary(au_gcn_run)
