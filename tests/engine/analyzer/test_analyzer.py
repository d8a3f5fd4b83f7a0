"""The analyzer's batching of models: sequential and parallel runs give the same results."""

from __future__ import annotations

import numpy as np
from auflow.engine.analyzer.core import Analyzer
from auflow.engine.config import AnalyzerSection, ModelSpec
from auflow.engine.types import FaceCrops, Faces, FrameMeta


def _items(n_frames: int, faces_per_frame: int) -> list[FaceCrops]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n_frames):
        n = faces_per_frame if i % 3 else 0  # every third frame has no face
        faces = Faces(np.tile([10, 10, 60, 70], (n, 1)), np.ones(n), np.zeros((n, 5, 2)))
        crops = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
        items.append(FaceCrops(FrameMeta("cam", "sid", i, i, (1, 25), 0, 640, 360), faces, crops, {"detect": 1.0}))
    return items


def test_parallel_models_give_the_sequential_results():
    models = [ModelSpec(name="fer", tta="flip"), ModelSpec(name="me_graphau", options={"input_size": 64})]
    items = _items(7, 2)
    runs = {}
    for parallel in (False, True):
        analyzer = Analyzer(AnalyzerSection(threads=1, parallel_models=parallel, models=models))
        analyzer.start()
        assert (analyzer._pool is not None) == parallel
        runs[parallel] = analyzer.run(items)
        analyzer.stop()
    for seq, par in zip(runs[False], runs[True]):
        assert seq.meta == par.meta and set(seq.outputs) == set(par.outputs) == {"expr", "au"}
        for k in seq.outputs:
            assert seq.outputs[k].shape == (len(seq.faces), len(seq.labels[k]))
            np.testing.assert_allclose(seq.outputs[k], par.outputs[k], rtol=0, atol=1e-6)
        assert "analyze" in par.latency_ms and par.latency_ms["detect"] == 1.0
