"""The analyzer: faces from every stream gathered into batches, every model run on each batch.

Batches fill up to ``batch`` faces or until the oldest face has waited ``max_wait_ms``; frames
keep their order, and a frame without faces passes straight through as a result with no faces.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import AnalyzerSection, ModelSpec
from ..errors import ConfigError
from ..plugin import Plugin, StartContext, build
from ..registry import ANALYZERS
from ..au_baseline import CausalBaseline
from ..types import FaceResults, ModelInfo

log = logging.getLogger(__name__)

_FEATURES = object()  # the encoder's entry among one batch's outputs (a key no model output can be)


def build_analyzer(spec: ModelSpec, where: str, batch: int = 16) -> Plugin:
    """A registered analyzer by name, or a registered model wrapped by the generic 'model' analyzer.

    A model entry whose checkpoint is ``starter:NAME`` (a checkpoint shipped in the package) goes through
    the ``student`` analyzer: the student if its card matches its teacher, else the teacher
    (``plugins/analyzers/student.py``)."""
    if spec.name in ANALYZERS or ":" in spec.name:
        return build(ANALYZERS, spec.name, spec.options, where)
    opts = {"model": spec.name, "checkpoint": spec.checkpoint, "output": spec.output, "options": spec.options,
            "backend": spec.backend, "precision": spec.precision, "channels_last": spec.channels_last, "batch": batch}
    if spec.checkpoint and spec.checkpoint.startswith("starter:"):
        if spec.tta != "none":
            raise ConfigError(f"{where}: tta is not available for a starter checkpoint (its teacher cannot use it)")
        return build(ANALYZERS, "student", opts, where)
    opts["tta"] = spec.tta
    return build(ANALYZERS, "model", opts, where)


def run_model(plugin: Plugin, items: list) -> dict[str, np.ndarray]:
    """One model on the faces of host FaceCrops ``items``, as :class:`Analyzer` calls it: the items themselves to
    a model with the ``analyze_items`` hook (tracks, context crops), their concatenated crops to the others."""
    if hasattr(plugin, "analyze_items"):
        return plugin.analyze_items(items)
    return plugin.analyze(np.concatenate([it.crops for it in items]))


class Analyzer:
    """Every model of ``analyzer.models`` on each batch of faces; with an ``encoder`` (the temporal stage's,
    engine/temporal.py), also that encoder's per-face features, in :attr:`FaceResults.features`."""

    def __init__(self, cfg: AnalyzerSection, encoder: Plugin | None = None) -> None:
        self.cfg = cfg
        self.plugins = [build_analyzer(m, f"analyzer.models.{i}", cfg.batch) for i, m in enumerate(cfg.models)]
        self.encoder = encoder  # has features(crops) -> (N, D) and feature_dim (after start)
        self.labels: dict[str, tuple[str, ...]] = {}
        self.models: dict[str, ModelInfo] = {}
        self._pool: ThreadPoolExecutor | None = None
        # analyzer.au_baseline: each tracked person's resting AU level subtracted (causal: values seen so far)
        self._baseline = CausalBaseline(cfg.au_baseline_percentile) if cfg.au_baseline == "track" else None

    def _set_threads(self) -> None:
        """torch's intra-op thread count (``analyzer.threads``; 0 leaves torch's default): it is per thread."""
        if self.cfg.threads:
            import torch

            torch.set_num_threads(self.cfg.threads)

    def start(self) -> None:
        self._set_threads()
        for p in self.plugins:
            p.start(StartContext(device=self.cfg.device))
            for name, labels in p.outputs.items():
                if name in self.labels:
                    raise ValueError(f"two analyzers both produce the output {name!r}: give one `output:` another name")
                self.labels[name] = labels
                self.models[name] = p.provenance[name]
        if self.encoder is not None:
            self.encoder.start(StartContext(device=self.cfg.device))
        if self.cfg.parallel_models and len(self._callables()) > 1:
            self._pool = ThreadPoolExecutor(len(self._callables()) - 1, thread_name_prefix="auflow-model",
                                            initializer=self._set_threads)

    def _callables(self, items: list | None = None) -> list:
        """One call per model on a batch of crops, the encoder's last: each returns a dict of named outputs.
        With host ``items``, a model with the ``analyze_items`` hook gets the FaceCrops themselves (tracks,
        context crops) instead of their crops."""
        calls = []
        for p in self.plugins:
            if items is not None and hasattr(p, "analyze_items"):
                calls.append(lambda crops, p=p: p.analyze_items(items))
            else:
                calls.append(p.analyze)
        if self.encoder is not None:
            calls.append(lambda crops: {_FEATURES: self.encoder.features(crops)})
        return calls

    @property
    def takes_tensors(self) -> bool:
        """Every model takes crops as torch tensors (so the shared face stage's crops may stay on its device)."""
        every = [*self.plugins, *([self.encoder] if self.encoder is not None else [])]
        return bool(every) and all(getattr(p, "takes_tensors", False) for p in every)

    def run(self, items: list) -> list[FaceResults]:
        """One model call per plugin for all faces of ``items``; results in the same order.

        Items are FaceCrops; their crops stay a (N, 3, S, S) device tensor when every model takes
        tensors, otherwise a tensor batch is copied to the host first."""
        counts = [len(it.faces) for it in items]
        total = sum(counts)
        t0 = time.perf_counter()
        outputs: dict[str, np.ndarray] = {}
        on_device = [it.on_device for it in items]
        if any(on_device) and not (all(on_device) and self.takes_tensors):
            items = [it.to_host() for it in items]
            on_device = [False]
        if total and all(on_device):
            import torch

            crops = torch.cat([it.crops for it in items if len(it.faces)])
        elif total:
            crops = np.concatenate([it.crops for it in items if len(it.faces)])
        calls = self._callables(None if all(on_device) else [it for it in items if len(it.faces)])
        if total:
            if self._pool is not None:  # the first model in this thread, the others beside it
                futures = [self._pool.submit(call, crops) for call in calls[1:]]
                outputs.update(calls[0](crops))
                for f in futures:
                    outputs.update(f.result())
            else:
                for call in calls:
                    outputs.update(call(crops))
        else:
            outputs = {name: np.zeros((0, len(lab)), np.float32) for name, lab in self.labels.items()}
            if self.encoder is not None:
                outputs[_FEATURES] = np.zeros((0, self.encoder.feature_dim), np.float32)
        features = outputs.pop(_FEATURES, None)
        ms = (time.perf_counter() - t0) * 1e3
        results = []
        start = 0
        for it, n in zip(items, counts):
            lat = dict(it.latency_ms, analyze=ms)
            outs = {k: np.ascontiguousarray(v[start:start + n], dtype=np.float32) for k, v in outputs.items()}
            if self._baseline is not None and "au" in outs:
                self._apply_baseline(it, outs["au"])
            feats = None if features is None else np.ascontiguousarray(features[start:start + n], dtype=np.float32)
            results.append(FaceResults(it.meta, it.faces, outs, self.labels, self.models, lat, feats))
            start += n
        return results

    def _apply_baseline(self, item, au: np.ndarray) -> None:
        """In place: each tracked face's AUs less its person's resting level (an untracked face, track -1, as is)."""
        for j, track in enumerate(item.faces.track):
            if track >= 0:
                au[j] = self._baseline((item.meta.cam, item.meta.sid, int(track)), au[j])

    def forget(self, cam: str) -> None:
        """A stream ended: its people's baselines go (a new session of the camera starts afresh)."""
        if self._baseline is not None:
            self._baseline.forget((cam,))
        for p in self.plugins:
            if hasattr(p, "forget"):
                p.forget(cam)

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for p in self.plugins:
            p.stop()
        if self.encoder is not None:
            self.encoder.stop()
