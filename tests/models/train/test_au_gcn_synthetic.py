"""A real training run of AU-GCN (paper 002) on the generated faces, with the shipped config
configs/train/au_gcn_synthetic.yaml: both stages (auto-encoders with L_ROI, Eq. 3; then every
module with L_au, Eq. 9), the AU graph from the training labels, evaluated on 1,000 held-out faces.

Measured on the 2-core CPU, 2026-12-04, with the config's one epoch of stage 1 and four of stage 2
(seed 0, 1 thread, ~110 s at load ~2): mean F1 0.996; AU01 0.999, AU02 1.000, AU04 1.000, AU09 1.000,
AU12 0.997, AU15 0.984, AU25 0.993, AU26 1.000, AU06 0.997, AU17 0.988; every seed and thread count
below. AU17 is exactly one of AU15 and AU04 (an XOR of a mouth cue and a brow cue, no pixel cue of
its own), learnt last. With three epochs of stage 2 (until issue 17) seed 0 gave 0.988 (AU17 0.951),
but seed 1 (train and data seed: AUFLOW_TEST_SEED=1) 0.960 with AU17 0.831, 0.010 over the target.

History: with two epochs of stage 2 the run ended with AU17 half learnt, and the result hung on
the machine's float kernels: mean F1 0.952 (AU17 0.798) on one machine and 0.936 (AU17 0.633) on
another, same thread count and libraries; a fresh-clone CI run failed the 0.95 target on it. The
config at the start of this work (64x64, SGD 0.01, paper ROI size) gave mean F1 0.175. A lower
graph threshold h = 0.85 (linking AU17 to AU15 as well) was worse: 0.849.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from auflow.models.data.synthetic_au import VISIBLE_AUS
from auflow.models.train import load_train_config, train

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).parents[3] / "configs" / "train" / "au_gcn_synthetic.yaml"


@pytest.fixture(scope="module")
def au_gcn_run(tmp_path_factory, train_overrides):
    cfg = load_train_config(CONFIG, train_overrides)  # AUFLOW_TEST_SEED: tests/models/conftest.py
    res = train(cfg, out_dir=tmp_path_factory.mktemp("au_gcn_synthetic"))
    print(f"au_gcn (seed {cfg.train.seed}, {cfg.train.threads} thread(s)): {_summary(res)}")
    return res


def _summary(res) -> str:
    m = res.metrics
    return (f"mean F1 {m.mean_f1:.3f}; " + ", ".join(f"{a} {f:.3f}" for a, f in zip(m.au_names, m.f1))
            + f"; {res.seconds:.0f} s")


#: Per seed x torch threads (issue 17; the 2-core Zen 4 VM, 2026-12-04; docs/training_tests.md):
#:   mean F1 (AU06, AU17, visible mean):
#:   seed 0: 1 thread 0.996 (AU06 0.997, AU17 0.988, visible 0.997); 2 threads 0.995 (AU06 0.997, AU17 0.984, visible 0.996)
#:   seed 1: 1 thread 0.989 (AU06 0.970, AU17 0.975, visible 0.993); 2 threads 0.989 (AU06 0.962, AU17 0.979, visible 0.994)
#:   seed 2: 1 thread 0.991 (AU06 0.976, AU17 0.978, visible 0.994); 2 threads 0.992 (AU06 0.981, AU17 0.979, visible 0.995)
def test_au_gcn_learns_the_generated_aus(au_gcn_run):
    res = au_gcn_run
    assert res.metrics.f1_of(list(VISIBLE_AUS)) >= 0.95, _summary(res)  # measured 0.993-0.997
    assert res.metrics.mean_f1 >= 0.9, _summary(res)  # measured 0.989-0.996, hidden AUs included
    assert res.card.kind == "trained" and "synthetic" in res.card.training["note"]
    assert res.card.training["graph"]["source"] == "training labels"


def test_au_gcn_reaches_the_target_mean_f1(au_gcn_run):
    # per seed and thread count: the comment block above test_au_gcn_learns_the_generated_aus
    assert au_gcn_run.metrics.mean_f1 >= 0.95, _summary(au_gcn_run)
