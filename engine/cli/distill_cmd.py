"""``auflow distill VIDEOS... --model me_graphau --out DIR``: teacher pass with a bar per video, training
with a bar per epoch, and the held-out agreement with the teacher as a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.table import Table

from ..configfile import parse_override
from ..errors import ConfigError
from .progress import Bars


def agreement_table(agree: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("AU", "varies", "teacher std", "Pearson r", "mean |Δ|", "F1", "teacher positives"):
        table.add_column(col, justify="left" if col == "AU" else "right")

    def f(v, fmt=".3f"):
        return "n/a" if v is None else format(v, fmt)

    for au, r in agree["per_au"].items():
        table.add_row(au, "yes" if r["varies"] else "", f(r["teacher_std"]), f(r["pearson"], ".2f"), f(r["mae"]),
                      f(r["f1"], ".2f"), str(r["teacher_positives"]), style=None if r["varies"] else "dim")
    table.add_row("varying", "", "", f(agree["mean_pearson_varying"], ".2f"), "", f(agree["mean_f1_varying"], ".2f"), "",
                  style="bold")
    return table


def expr_agreement_table(agree: dict[str, Any], title: str) -> Table:
    """The held-out agreement of an expression student (windows) with its teacher."""
    table = Table(title=title, title_justify="left")
    for col in ("expression", "teacher top-1", "student top-1", "agreement", "teacher mean", "student mean"):
        table.add_column(col, justify="left" if col == "expression" else "right")

    def f(v, fmt=".3f"):
        return "n/a" if v is None else format(v, fmt)

    for name, r in agree["per_class"].items():
        table.add_row(name, str(r["teacher_top1"]), str(r["student_top1"]), f(r["agreement"], ".2f"), f(r["teacher_mean"]),
                      f(r["student_mean"]), style=None if r["teacher_top1"] else "dim")
    table.add_row("all", str(agree["windows"]), "", f(agree["top1"], ".3f"), "", "", style="bold")
    table.caption = (f"top-1 agreement {f(agree['top1'])} (always the teacher's commonest: {f(agree['majority_top1'])}; "
                     f"with fer's centre frame: {f(agree['top1_centre'])}); mean KL {f(agree['kl'])} nats; "
                     f"mean |Δ| {f(agree['mae'])}")
    return table


class DistillProgress(Bars):
    """A bar per video of the teacher pass (cached, resumed or run), then one over the training steps."""

    def __init__(self, out: Console) -> None:
        super().__init__(out, TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[info]}"))
        self.out = out
        self.video_tasks: dict[str, int] = {}
        self.train_task = None

    def callbacks(self):
        from auflow.models.train.distill import DistillCallbacks

        return DistillCallbacks(on_video=self.on_video, on_frame=self.on_frame, on_train_start=self.on_train_start,
                                on_step=self.on_step, on_epoch_end=self.on_epoch_end)

    def on_video(self, key: str, total: int | None, done: int) -> None:
        info = "cached" if total is not None and done >= total else (f"resuming at frame {done}" if done else "teacher")
        self.video_tasks[key] = self.progress.add_task(f"teacher {key}", total=total, completed=done, info=info)

    def on_frame(self, key: str, frame: int, total: int | None) -> None:
        if frame % 4 == 0 or (total and frame + 1 >= total):
            self.progress.update(self.video_tasks[key], completed=frame + 1)

    def on_train_start(self, first: int, epochs: int, steps: int, step: int) -> None:
        if first > 1:
            self.progress.console.print(f"[cyan]resuming training:[/] epoch {first} of {epochs} (step {step})")
        self.train_task = self.progress.add_task("train", total=epochs * steps, completed=step, info="")

    def on_step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        self.progress.update(self.train_task, advance=1, info=f"epoch {epoch} loss {loss:.4f}")

    def on_epoch_end(self, record: dict) -> None:
        h = record.get("heldout")
        if h and h.get("top1") is not None:
            self.progress.console.print(f"epoch {record['epoch']}/{record['epochs']}: loss {record['loss']['loss']:.4f}; held out: "
                                        f"top-1 agreement {h['top1']:.3f} (majority {h['majority_top1']:.3f}), "
                                        f"KL {h['kl']:.3f}", highlight=False)
        elif h and h.get("mean_pearson_varying") is not None:
            self.progress.console.print(f"epoch {record['epoch']}/{record['epochs']}: loss {record['loss']['loss']:.4f}; held out: "
                                        f"mean Pearson (varying AUs) {h['mean_pearson_varying']:.3f}, min "
                                        f"{h['min_pearson_varying']:.3f}", highlight=False)


def split_sets(items: list[str]) -> tuple[list[str], list[str]]:
    """``auflow distill --set``: each ``key=value`` goes to the distill options (DistillConfig: ``epochs=5``,
    ``options.input_size=96``) or to the run config whose face stage finds the faces (``face.detector.name=yunet``),
    by its first key; a key of neither is one error naming both sets."""
    from auflow.models.train.distill_config import DistillConfig

    from ..config import RunConfig

    distill, run = [], []
    for item in items:
        top = parse_override(item)[0].split(".")[0]
        if top in DistillConfig.model_fields:
            distill.append(item)
        elif top in RunConfig.model_fields:
            run.append(item)
        else:
            raise ConfigError(f"--set {item}: {top!r} is neither a distill option ({', '.join(DistillConfig.model_fields)}) "
                              f"nor a run config section ({', '.join(RunConfig.model_fields)})")
    return distill, run


def distill_inputs(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Video files, image files, folders of either, quoted globs of videos → the files to distil from (an image is
    a one-frame clip) and, for images found in a folder, whose they are: the folder's name (one person a folder)."""
    from ..sources import expand_inputs, is_live_uri
    from ..sources.images import IMAGE_EXTENSIONS, natural_key

    files: list[str] = []
    people: dict[str, str] = {}
    for u in expand_inputs(args).uris:
        if is_live_uri(u):
            raise ConfigError(f"auflow distill reads files (videos, images) and folders of them, not the stream {u}")
        p = Path(u)
        if p.is_dir():  # a folder of images
            images = sorted((q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
            files += [str(q) for q in images]
            people.update({str(q.resolve()): p.resolve().name for q in images})
        else:
            files.append(u)
    return files, people


def run_distill(out: Console, videos: list[str], out_dir: Path, distill_config: Path | None, overrides: dict[str, Any],
                run_config: Path | None, run_set: list[str], resume: bool, stop_after: int | None,
                distill_set: list[str] = ()) -> None:
    from auflow.models.train.distill import distill, load_distill_config

    from ..config import load_config

    cfg = load_distill_config(distill_config, overrides, distill_set)
    face = load_config(run_config, run_set).face
    files, people = distill_inputs(videos)
    if people:  # an image folder's images are one person unless the options' identities say otherwise
        cfg = cfg.model_copy(update={"identities": {**people, **(cfg.identities or {})}})
    with DistillProgress(out) as progress:
        result = distill(files, out_dir, cfg, face_cfg=face, resume=resume, callbacks=progress.callbacks(),
                         stop_after_epochs=stop_after)
    tp = result.teacher_pass
    out.print(f"teacher pass: {len(tp.videos)} video(s), {tp.frames_run} frames run now "
              f"({len(tp.skipped)} already cached, {len(tp.resumed)} resumed)", highlight=False)
    t = result.card.training
    expr = result.card.task == "expr"
    unit = "windows" if expr else "faces"
    out.print(f"split: {t['split']['meaning']}; {t[f'train_{unit}']} training {unit}, {t[f'heldout_{unit}']} held out",
              highlight=False)
    if result.stopped:
        out.print(f"stopped after epoch {result.history[-1]['epoch'] if result.history else 0} of {t['epochs']}: "
                  f"run the same command again to continue", highlight=False)
        return
    if expr:
        w = t["windows"]
        out.print(expr_agreement_table(result.agreement, f"held-out agreement of {result.card.name} with "
                                                         f"{t['teacher']['expr']['name']} ({result.agreement['windows']} "
                                                         f"windows of {w['num_frames']} frames; target: {w['target']})"))
        out.print(f"wrote {result.checkpoint} (kind: distilled) in {result.seconds:.0f} s; use it with "
                  f"--set temporal.enabled=true --set temporal.checkpoint={result.checkpoint} --set 'temporal.options={{}}'",
                  highlight=False)
    else:
        out.print(agreement_table(result.agreement, f"held-out agreement of {result.card.name} with {t['teacher']['au']['name']} "
                                                    f"({result.agreement['frames']} faces; 'varies': teacher std ≥ "
                                                    f"{result.agreement['vary_std']})"))
        out.print(f"wrote {result.checkpoint} (kind: distilled) in {result.seconds:.0f} s; use it with "
                  f"analyzer.models: [{{name: {result.card.name}, checkpoint: {result.checkpoint}}}]", highlight=False)
    out.print(f"[yellow]note:[/] {t['note']}", highlight=False)
    (out_dir / "agreement.json").write_text(json.dumps(result.agreement, indent=2))
