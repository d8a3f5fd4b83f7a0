"""Real training runs on the generated faces, with the shipped configs: ME-GraphAU (MobileNetV2 at
96², two stages of 750 steps) and the no-graph baseline (same backbone, input, data, 1,500 steps
and loss; its own learning rate).

What they show (the measured numbers are in the assertion messages):

- ME-GraphAU learns every AU, including the two hidden ones that have no pixel cue: AU06 (AU12
  and AU02 both present) and AU17 (exactly one of AU15, AU04). Measured: mean F1 0.996, AU06
  0.995, AU17 0.995.
- The baseline — global average pool + one linear unit per AU — recovers the hidden AUs as well
  (measured: mean F1 0.991, AU06 0.989, AU17 0.983). Every unit of its last feature map sees the
  brows and the mouth at once, so the backbone computes the relation a hidden AU needs by itself;
  on this data the graph is not what makes them recoverable, and a 0.1 F1 gap between the two
  does not appear. (At 64² ME-GraphAU from scratch left one or two AU nodes untrained in three of
  four runs, mean F1 0.81-0.95; at 96² every node learns.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auflow.models.data.synthetic_au import HIDDEN_AUS, VISIBLE_AUS
from auflow.models.train import load_train_config, train

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).parents[3] / "configs" / "train"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_training")
    return {name: train(load_train_config(CONFIGS / f"{name}_synthetic.yaml"), out_dir=out / name)
            for name in ("me_graphau", "baseline_au")}


def _summary(res) -> str:
    m = res.metrics
    return (f"mean F1 {m.mean_f1:.3f}; " + ", ".join(f"{a} {f:.3f}" for a, f in zip(m.au_names, m.f1))
            + f"; {res.seconds:.0f} s")


def test_me_graphau_learns_every_generated_au_hidden_ones_included(runs):
    res = runs["me_graphau"]
    m = res.metrics
    assert m.mean_f1 >= 0.95, _summary(res)
    for au in HIDDEN_AUS:  # no pixel cue: recovered only through the other AUs' evidence
        assert m.f1_of([au]) >= 0.9, _summary(res)
    assert m.f1_of(list(VISIBLE_AUS)) >= 0.95, _summary(res)
    assert res.card.kind == "trained" and "synthetic" in res.card.training["note"]


def test_no_graph_baseline_recovers_the_hidden_aus_too(runs):
    base = runs["baseline_au"].metrics
    detail = f"graph: {_summary(runs['me_graphau'])}\nbaseline: {_summary(runs['baseline_au'])}"
    for au in HIDDEN_AUS:
        assert base.f1_of([au]) >= 0.9, detail
