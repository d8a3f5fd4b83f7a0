"""Real training runs on the generated faces, with the shipped configs (slow: minutes on 2 cores).

What they show (the measured numbers are in the assertion messages and in the configs' comments):

- **The relation graph against no graph, same backbone** (me_graphau_local / baseline_au_local):
  a MobileNetV2 cut after 4 blocks, whose every feature sees at most a 27-px patch of the 96-px
  face — less than the distance between the brows and the mouth. Each hidden AU is a function of a
  brow AU and a mouth AU (AU06 = AU12 and AU02, AU17 = AU15 xor AU04), so no single feature sees
  both of its causes. The no-graph model reads every AU off the global average of those features
  with one linear unit: a sum of local evidence, which cannot express "exactly one of two distant
  cues" (AU17). ME-GraphAU's AU nodes exchange their evidence through the graph and recover both.
  The gap on the hidden AUs is asserted (≥ 0.1 in their mean F1). ME-GraphAU's nodes and edges are
  32 wide (``dim: 32``, the authors' backbone channels / 4; issue 17: at 16 the XOR-coded AU17 left its
  plateau late in stage 2 and by chance — the config's comment has the learning curve); with it
  (seed 0, 1 thread, 2026-12-04): mean F1 0.999, AU06 0.997, AU17 0.994, ~245 s; every seed and thread
  count is listed above each test. ARM runs on each AU's
  FAM map pooled from 12×12 to 6×6 (``edge_grid: 6``; its (N·D)² attention was most of the run's
  time); with it and dim 16 (2026-12-02): mean F1 0.994, AU06 0.992, AU17 0.977. Before (every position): graph mean F1 0.988,
  AU06 0.979, AU17 0.969; no graph 0.839, AU06 0.892 (an "and" is a threshold on summed evidence,
  so it follows its two causes), AU17 0.659 (the F1 of calling every face positive: 49 % accuracy),
  visible AUs 0.855 (AU04 0.674: pooled local features lose where a brow is relative to the eyes).
- What the gap is not: with the whole MobileNetV2 (every feature sees the whole face) the backbone
  computes the relations itself, and the no-graph model recovers the hidden AUs as well as the
  graph does (measured with configs/train/{me_graphau,baseline_au}_synthetic.yaml: graph mean F1
  0.996, AU06 0.995, AU17 0.995; no graph 0.991, AU06 0.989, AU17 0.983). So does a linear head over
  the frozen backbone of backbone_visible_synthetic.yaml, which never saw a hidden label (trained
  with ``model.init_from`` + ``model.freeze: [backbone.]``: AU06 0.975, AU17 0.948, against 0.990 and
  0.988 for ME-GraphAU's head over the same frozen backbone). The graph earns its place where the features are local — as are the per-region
  features of AU-GCN and the papers' AU-specific ones — not everywhere.
- **Topo-AU on a given backbone** (topo_au_local_synthetic.yaml): its modules (MAFG, GNN, CCFG,
  fusion, similarity head), from scratch, over the frozen local backbone that the ME-GraphAU run
  above trained (the papers start from a pretrained backbone; from scratch with the whole
  MobileNetV2, 2 x 750 steps gave Topo-AU mean F1 0.837 in an earlier session). One short epoch
  (400 steps), so the test costs little beyond the run it reuses (12 s on the 2-core Zen 4 VM).
  Measured (2026-12-02) over a ME-GraphAU run of mean F1 0.993, 200 steps: mean F1 0.988, AU06 0.990,
  AU17 0.942 (400 steps: 0.993, AU17 0.979); over the dim-32 backbone, per seed: above its test.
- **Seeds and threads**: ``AUFLOW_TEST_SEED`` (default 0) seeds every run and the generated data;
  ``AUFLOW_TEST_THREADS`` sets their thread count: 2 by default on a machine with 2 cores or more, else the
  configs' pinned 1 (tests/models/conftest.py; both were measured for every seed, above each test).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from auflow.models.card import load_checkpoint
from auflow.models.data.synthetic_au import HIDDEN_AUS, VISIBLE_AUS, clear_render_cache
from auflow.models.train import load_train_config, train

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).parents[3] / "configs" / "train"
#: configs that start from another config's checkpoint (``model.init_from``), which is trained first
INIT_FROM = {"topo_au_local_synthetic": "me_graphau_local_synthetic"}


class Runs:
    """Each config trained once per module, on first use (so ``-k`` trains only what it needs)."""

    def __init__(self, out: Path, overrides: list[str]) -> None:
        self.out, self.overrides, self.done = out, overrides, {}

    def __getitem__(self, name: str):
        if name not in self.done:
            overrides = [f"model.init_from={self[INIT_FROM[name]].checkpoint}"] if name in INIT_FROM else []
            cfg = load_train_config(CONFIGS / f"{name}.yaml", self.overrides + overrides)
            self.done[name] = train(cfg, out_dir=self.out / name)
            print(f"{name} (seed {cfg.train.seed}, {cfg.train.threads} thread(s)): {_summary(self.done[name])}")
        return self.done[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_overrides):
    # the three runs read one stream of 12,000 generated faces: each face is drawn once (the
    # dataset's render cache, 330 MB at 96 px) rather than once per epoch and run; let go after.
    # AUFLOW_TEST_SEED picks the seed of every run and of the generated data (tests/models/conftest.py)
    yield Runs(tmp_path_factory.mktemp("synthetic_training"), train_overrides)
    clear_render_cache()


def _summary(res) -> str:
    m = res.metrics
    return (f"mean F1 {m.mean_f1:.3f}; " + ", ".join(f"{a} {f:.3f}" for a, f in zip(m.au_names, m.f1))
            + f"; {res.seconds:.0f} s")


def _learns_every_au(res) -> None:
    m = res.metrics
    assert m.mean_f1 >= 0.95, _summary(res)
    for au in HIDDEN_AUS:  # no pixel cue: recovered only through the other AUs' evidence
        assert m.f1_of([au]) >= 0.9, _summary(res)
    assert m.f1_of(list(VISIBLE_AUS)) >= 0.95, _summary(res)
    assert res.card.kind == "trained" and "synthetic" in res.card.training["note"]


#: Per seed x torch threads (issue 17; the 2-core Zen 4 VM, 2026-12-04; docs/training_tests.md):
#:   mean F1 (AU06, AU17, visible mean):
#:   seed 0: 1 thread 0.999 (AU06 0.997, AU17 0.994, visible 0.999); 2 threads 0.998 (AU06 0.997, AU17 0.993, visible 0.998)
#:   seed 1: 1 thread 0.998 (AU06 0.995, AU17 0.999, visible 0.999); 2 threads 0.998 (AU06 0.995, AU17 0.995, visible 0.998)
#:   seed 2: 1 thread 0.998 (AU06 0.989, AU17 0.998, visible 0.999); 2 threads 0.996 (AU06 0.987, AU17 0.994, visible 0.998)
def test_me_graphau_learns_every_generated_au_from_local_features(runs):
    _learns_every_au(runs["me_graphau_local_synthetic"])


#: Per seed x torch threads (issue 17; the 2-core Zen 4 VM, 2026-12-04; docs/training_tests.md):
#:   hidden-AU F1 gap, no-graph AU17 (= all-positive F1), no-graph visible:
#:   seed 0: 1 thread gap 0.217, AU17 0.659, visible 0.850; 2 threads gap 0.219, AU17 0.659, visible 0.855
#:   seed 1: 1 thread gap 0.201, AU17 0.664, visible 0.884; 2 threads gap 0.249, AU17 0.664, visible 0.897
#:   seed 2: 1 thread gap 0.238, AU17 0.641, visible 0.891; 2 threads gap 0.210, AU17 0.641, visible 0.871
def test_without_the_graph_the_same_backbone_misses_the_hidden_aus(runs):
    graph, base = runs["me_graphau_local_synthetic"], runs["baseline_au_local_synthetic"]
    g, b = graph.metrics, base.metrics
    detail = f"graph: {_summary(graph)}\nno graph: {_summary(base)}"
    # the acceptance: on the AUs only co-occurrence reveals, no graph scores >= 0.1 lower
    assert g.f1_of(list(HIDDEN_AUS)) - b.f1_of(list(HIDDEN_AUS)) >= 0.1, detail
    # why: the exclusion (AU17 = AU15 xor AU04) is out of reach of a sum of local evidence — no better
    # than calling every face positive — while the graph recovers it
    i = b.au_names.index("AU17")
    rate = b.support[i] / b.samples
    all_positive_f1 = 2 * rate / (1 + rate)
    assert b.f1[i] <= all_positive_f1 + 0.05 and g.f1_of(["AU17"]) >= 0.9, detail
    # and not because the no-graph model learnt nothing: it sees the visible AUs (less well: pooled
    # local features lose where a brow is relative to the eyes)
    assert b.f1_of(list(VISIBLE_AUS)) >= 0.8, detail


#: Per seed x torch threads (issue 17; the 2-core Zen 4 VM, 2026-12-04; docs/training_tests.md):
#:   mean F1 (AU06, AU17, visible mean):
#:   seed 0: 1 thread 0.989 (AU06 0.975, AU17 0.958, visible 0.995); 2 threads 0.992 (AU06 0.980, AU17 0.981, visible 0.995)
#:   seed 1: 1 thread 0.991 (AU06 0.968, AU17 0.988, visible 0.994); 2 threads 0.988 (AU06 0.968, AU17 0.978, visible 0.992)
#:   seed 2: 1 thread 0.994 (AU06 0.984, AU17 0.994, visible 0.995); 2 threads 0.991 (AU06 0.983, AU17 0.974, visible 0.995)
def test_topo_au_learns_every_generated_au_over_a_given_local_backbone(runs):
    res = runs["topo_au_local_synthetic"]
    _learns_every_au(res)
    init = res.card.training["init"]
    assert init["init_from"]["model"] == "me_graphau" and init["frozen"]["prefixes"] == ["backbone."], init
    # the backbone stayed as given: only Topo-AU's own modules trained
    _, given = load_checkpoint(runs["me_graphau_local_synthetic"].checkpoint)
    _, trained = load_checkpoint(res.checkpoint)
    backbone = [k for k in given if k.startswith("backbone.")]
    assert backbone and all(torch.equal(given[k], trained[k]) for k in backbone)
