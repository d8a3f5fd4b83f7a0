"""A real training run of AU-GCN (paper 002) on the generated faces, with the shipped config
configs/train/au_gcn_synthetic.yaml: both stages (auto-encoders with L_ROI, Eq. 3; then every
module with L_au, Eq. 9), the AU graph from the training labels, evaluated on 1,000 held-out faces.

Measured on the 2-core CPU, 2026-12-04, with the config's one epoch of stage 1 and three of stage 2
(~70 s): mean F1 0.988; AU01 0.999, AU02 1.000, AU04 0.998, AU09 1.000, AU12 0.991, AU15 0.961,
AU25 0.993, AU26 0.999, AU06 0.984, AU17 0.951. Train seed 1: 0.987 (AU17 0.960); two torch
threads: 0.986 (AU17 0.936). AU17 is exactly one of AU15 and AU04 (an XOR of a mouth cue and a
brow cue, no pixel cue of its own), learnt last.

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


def test_au_gcn_learns_the_generated_aus(au_gcn_run):
    res = au_gcn_run
    assert res.metrics.f1_of(list(VISIBLE_AUS)) >= 0.95, _summary(res)  # measured 0.993
    assert res.metrics.mean_f1 >= 0.9, _summary(res)  # measured 0.988, hidden AUs included
    assert res.card.kind == "trained" and "synthetic" in res.card.training["note"]
    assert res.card.training["graph"]["source"] == "training labels"


def test_au_gcn_reaches_the_target_mean_f1(au_gcn_run):
    # measured 0.986-0.988 over seeds and thread counts (AU17 0.936-0.960)
    assert au_gcn_run.metrics.mean_f1 >= 0.95, _summary(au_gcn_run)
