"""``student``: a distilled checkpoint, used only when its card shows it matches its teacher on people it
never saw; else the teacher.

The default config's ``au`` entry is ``{name: me_graphau, checkpoint: "starter:me_graphau_demo_student"}``:
a checkpoint named ``starter:NAME`` is one shipped inside the package (``auflow/models/checkpoints/NAME.pt``,
built by ``make starter``), and ``build_analyzer`` runs it through this analyzer. At start-up it reads the
checkpoint's card and applies the gate (issue 18: it must measure generalisation, not memory of a face):

- the card says ``kind: distilled``, its training is complete, and it holds the held-out agreement with
  its teacher (``training.agreement``, written by ``auflow distill``);
- that agreement was measured on **people absent from its training data**: the card's split is
  ``mode: identity`` and names the held-out people (``heldout_people``); a time split of the same people
  (the first starter's) or a split by video that does not say whose faces it holds out is refused;
- every AU that varies on those people (``agreement.varying``) has a held-out Pearson r with the teacher
  of at least ``min_pearson`` (0.8), and every AU a mean |Δ| of at most ``max_mae`` (0.1).

If it passes, the student runs and every result says ``kind: distilled``; if not (or the file is missing
or unreadable), the teacher named in the card (``mediapipe_au``) runs for the same output and every
result says ``kind: teacher``; its columns are cut to the student's labels (the 17 AUs, without the
teacher's left/right columns), so the output has the same columns whichever runs. One log line says
which, and why; ``auflow models list`` too. AUs the teacher cannot measure (``unsupported_aus``) are null
in the output whichever runs: a student cannot learn from its teacher what the teacher does not see.
A checkpoint given by path (``checkpoint: runs/distill/x/model.pt``) does not come here: it is used as
given, ``kind: user``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from auflow.engine.config import Backend, Precision
from auflow.engine.errors import ConfigError, ModelError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, build, StartContext
from auflow.engine.registry import ANALYZERS
from auflow.models.card import held_out_people
from pydantic import Field

log = logging.getLogger(__name__)

#: ``checkpoint: starter:NAME`` in a model entry names a checkpoint shipped in this folder
STARTER_PREFIX = "starter:"
#: the gate: held-out Pearson r with the teacher on every AU that varies, on people the student never saw ...
MIN_PEARSON = 0.8
#: ... and mean |Δ| with the teacher on every AU
MAX_MAE = 0.1


def starter_dir() -> Path:
    import auflow.models

    return Path(auflow.models.__file__).resolve().parent / "checkpoints"


def starter_path(ref: str) -> Path:
    """``starter:NAME`` (or a plain path) → the checkpoint file; the file need not exist."""
    if not ref.startswith(STARTER_PREFIX):
        return Path(ref)
    name = ref[len(STARTER_PREFIX):]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ConfigError(f"checkpoint {ref!r}: a starter checkpoint is named by letters, digits, '_', '-' or '.'")
    return starter_dir() / (name if name.endswith(".pt") else name + ".pt")


def _distilled_on_unseen_people(card) -> tuple[bool, str]:
    """(True, the held-out people) when the card is a finished distillation whose agreement with its teacher
    was measured on people absent from its training data; else (False, why not). Both gates start here."""
    if card.kind != "distilled":
        return False, f"its card says kind {card.kind!r}, not a distilled student"
    if not (card.training or {}).get("complete", False):
        return False, "its distillation did not finish (card: complete = false)"
    return held_out_people(card)


def gate(card, min_pearson: float = MIN_PEARSON, max_mae: float = MAX_MAE,
         unsupported: tuple[str, ...] = ()) -> tuple[bool, str]:
    """(passes, why) for a checkpoint card: distilled, complete, held out by identity (people named), every
    varying AU's held-out r ≥ ``min_pearson`` and every AU's mean |Δ| ≤ ``max_mae``. ``unsupported``: AUs the
    teacher cannot measure, left out of both checks (their outputs are null whatever runs)."""
    t = card.training or {}
    ok, on = _distilled_on_unseen_people(card)
    if not ok:
        return False, on
    agree = t.get("agreement") or {}
    per, varying = agree.get("per_au") or {}, agree.get("varying") or []
    if not per:
        return False, "its card holds no held-out agreement with its teacher"
    skip = {a for a in per if a.split("_")[0] in {u.split("_")[0] for u in unsupported}}
    rs = {a: (per.get(a) or {}).get("pearson") for a in varying if a not in skip}
    maes = {a: (v or {}).get("mae") for a, v in per.items() if a not in skip}
    teacher = (t.get("teacher") or {}).get("au", {}).get("name", "its teacher")
    low = [a for a, r in rs.items() if r is None or r < min_pearson]
    far = [a for a, m in maes.items() if m is None or m > max_mae]
    shown = ", ".join(f"{a} {'n/a' if r is None else f'{r:.3f}'}" for a, r in rs.items()) or "none vary"
    if low:
        return False, f"held-out Pearson with {teacher} below {min_pearson} on {', '.join(low)} ({on}; AUs that vary: {shown})"
    if far:
        return False, (f"held-out mean |Δ| with {teacher} above {max_mae} on "
                       + ", ".join(f"{a} {maes[a] if maes[a] is None else round(maes[a], 3)}" for a in far) + f" ({on})")
    return True, f"on {on}: Pearson with {teacher} >= {min_pearson} on every AU that varies ({shown}), mean |Δ| <= {max_mae}"


def teacher_unsupported(teacher: str) -> tuple[str, ...]:
    """The AUs a teacher analyzer cannot measure (its class's ``unsupported_aus``), () if it names none."""
    try:
        return tuple(getattr(ANALYZERS.get(teacher), "unsupported_aus", ()))
    except Exception:  # noqa: BLE001 - an unknown teacher fails later, with the registry's own message
        return ()


#: the gate for a shipped (``starter:``) temporal (expression) checkpoint: held-out top-1 agreement with its teacher
MIN_TOP1 = 0.8


def temporal_gate(card, min_top1: float = MIN_TOP1) -> tuple[bool, str]:
    """(passes, why) for a shipped expression student's card: distilled, complete, its agreement measured on
    people absent from its training data (issue 18: the same rule as the ``au`` gate), and held-out top-1
    agreement with its teacher (``training.agreement.top1``, written by ``auflow distill``) ≥ ``min_top1``."""
    t = card.training or {}
    ok, on = _distilled_on_unseen_people(card)
    if not ok:
        return False, on
    top1 = (t.get("agreement") or {}).get("top1")
    if top1 is None:
        return False, "its card holds no held-out top-1 agreement with its teacher"
    teacher = ((t.get("teacher") or {}).get("expr") or {}).get("name", "its teacher")
    if top1 < min_top1:
        return False, f"held-out top-1 agreement with {teacher} {top1:.3f} < {min_top1} ({on})"
    return True, f"held-out top-1 agreement with {teacher} {top1:.3f} >= {min_top1} ({on})"


@ANALYZERS.register("student")
class StudentOrTeacherAnalyzer(Plugin):
    """A distilled student if its card passes the gate, else its teacher, for one output."""

    class Config(PluginConfig):
        checkpoint: str = Field(..., description="starter:NAME (shipped) or a path to a distilled checkpoint")
        model: str | None = Field(None, description="the registry model the checkpoint must hold (None: the card's)")
        output: str | None = Field(None, description="output key (default: the card's task, 'au')")
        options: dict[str, Any] = Field(default_factory=dict, description="model factory options on top of the card's")
        min_pearson: float = Field(MIN_PEARSON, gt=-1.0, le=1.0)
        max_mae: float = Field(MAX_MAE, gt=0.0, le=1.0)
        teacher: str | None = Field(None, description="the fallback analyzer (default: the teacher named in the card, "
                                    "else mediapipe_au)")
        teacher_options: dict[str, Any] = Field(default_factory=dict)
        backend: Backend = "eager"
        precision: Precision = "fp32"
        channels_last: bool = False
        batch: int = 16

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.inner: Plugin | None = None
        self.choice = ""  # "student" | "teacher", after start()
        self.reason = ""
        self.outputs: dict[str, tuple[str, ...]] = {}
        self.provenance: dict = {}
        self._cols: dict[str, list[int]] = {}
        self._nan: dict[str, list[int]] = {}

    def _card(self, path: Path):
        from auflow.models.card import load_checkpoint

        card, _ = load_checkpoint(path)  # ModelError if missing or unreadable
        if self.config.model and card.name != self.config.model:
            raise ConfigError(f"checkpoint {self.config.checkpoint} holds {card.name!r}, not {self.config.model!r}")
        return card

    def start(self, ctx: StartContext = CPU) -> None:
        cfg = self.config
        path = starter_path(cfg.checkpoint)
        card, teacher = None, cfg.teacher
        try:
            card = self._card(path)
            teacher = teacher or ((card.training or {}).get("teacher") or {}).get("au", {}).get("name") or "mediapipe_au"
            ok, why = gate(card, cfg.min_pearson, cfg.max_mae, teacher_unsupported(teacher))
        except ModelError as e:
            hint = " (build it: make starter)" if cfg.checkpoint.startswith(STARTER_PREFIX) else ""
            ok, why = False, f"{e}{hint}"
        teacher = teacher or "mediapipe_au"
        if ok:
            self.inner = build(ANALYZERS, "model", {
                "model": card.name, "checkpoint": str(path), "output": cfg.output, "options": cfg.options,
                "backend": cfg.backend, "precision": cfg.precision, "channels_last": cfg.channels_last,
                "batch": cfg.batch, "kind": card.kind}, "student")
            self.choice = "student"
        else:
            opts = dict(cfg.teacher_options)
            if cfg.output and "au_output" in ANALYZERS.get(teacher).Config.model_fields:
                opts.setdefault("au_output", cfg.output)
            self.inner = build(ANALYZERS, teacher, opts, f"student.teacher ({teacher})")
            self.choice = "teacher"
        self.inner.start(ctx)
        self.reason = why
        self.outputs = dict(self.inner.outputs)
        self.provenance = dict(self.inner.provenance)
        self._cols = {}
        if not ok and card is not None:  # the teacher's columns the student has, so `au` keeps the same columns
            for name, labels in self.outputs.items():
                if set(card.labels) <= set(labels) and tuple(card.labels) != tuple(labels):
                    self._cols[name] = [labels.index(a) for a in card.labels]
                    self.outputs[name] = tuple(card.labels)
        # AUs the teacher cannot see: null whichever runs (the teacher's own output has them null already)
        dead = {u.split("_")[0] for u in teacher_unsupported(teacher)}
        self._nan: dict[str, list[int]] = {}
        for name, info in list(self.provenance.items()):
            labels = self.outputs.get(name, ())
            cols = [i for i, a in enumerate(labels) if a.split("_")[0] in dead]
            if cols:
                self._nan[name] = cols
            self.provenance[name] = replace(info, unsupported=tuple(labels[i] for i in cols))  # of its columns only
        who = ", ".join(f"{k}: {v.name} ({v.kind})" for k, v in self.provenance.items())
        if ok:
            log.info("%s: running the distilled student %s: %s", who, path.name, why)
        else:
            log.info("%s: running the teacher instead of the student %s: %s", who, path.name, why)

    @property
    def takes_tensors(self) -> bool:
        return bool(getattr(self.inner, "takes_tensors", False))

    def analyze(self, crops):
        return self._columns(self.inner.analyze(crops))

    def analyze_items(self, items: list) -> dict:
        """Whole FaceCrops to an inner model that takes them (the teacher's tracked ROIs), else their crops."""
        if hasattr(self.inner, "analyze_items"):
            return self._columns(self.inner.analyze_items(items))
        return self.analyze(np.concatenate([it.crops for it in items]))

    def forget(self, cam: str) -> None:
        if hasattr(self.inner, "forget"):
            self.inner.forget(cam)

    def _columns(self, out: dict) -> dict:
        """The student's columns of the teacher's output, and null for AUs the teacher cannot see."""
        for name, cols in self._cols.items():
            out[name] = out[name][:, cols]
        for name, cols in self._nan.items():
            out[name] = np.array(out[name], dtype=np.float32)  # a copy: the inner model's array stays as it was
            out[name][:, cols] = np.nan
        return out

    def stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()
