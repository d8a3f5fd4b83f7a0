"""``auflow train CONFIG`` and ``auflow eval CHECKPOINT DATA``: training with a live bar and per-epoch
metrics tables (per-AU F1 / accuracy; accuracy and per-class F1 for ``arpgnet``; the nine multi-label
metrics for ``svml_rgcn``), evaluation as a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.table import Table

from .progress import Bars


#: paper 004's names of the nine metrics (Table 1), ↓ lower is better
MULTILABEL_HEADERS = {"hamming_loss": "HL↓", "coverage": "Cov↓", "one_error": "OE↓", "ranking_loss": "RL↓",
                      "average_precision": "AP", "micro_f1": "micro-F1", "macro_f1": "macro-F1", "micro_auc": "micro-AUC",
                      "macro_auc": "macro-AUC"}


def metrics_table(title: str, metrics, width: int = 200) -> Table:
    """F1 and accuracy (in %) per AU and their means: one column per AU when ``width`` fits them,
    else one row per AU. Expression metrics: :func:`expr_table`."""
    if getattr(metrics, "kind", None) in ("single_label", "multi_label"):
        return expr_table(title, metrics)
    table = Table(title=title, title_justify="left")
    f1 = [f"{100 * v:.1f}" for v in metrics.f1] + [f"{100 * metrics.mean_f1:.1f}"]
    acc = [f"{100 * v:.1f}" for v in metrics.accuracy] + [f"{100 * metrics.mean_accuracy:.1f}"]
    names = [*metrics.au_names, "mean"]
    if width >= 8 * (len(names) + 1):
        table.add_column("", style="bold")
        for name in names:
            table.add_column(name, justify="right", style="bold" if name == "mean" else None)
        table.add_row("F1", *f1)
        table.add_row("acc", *acc)
    else:
        for col in ("AU", "F1", "acc"):
            table.add_column(col, justify="left" if col == "AU" else "right")
        for name, a, b in zip(names, f1, acc):
            table.add_row(name, a, b, style="bold" if name == "mean" else None)
    return table


def expr_table(title: str, metrics) -> Table:
    """Single-label: accuracy, macro F1 (and Aff-Wild2's M), then F1 per class (in %). Multi-label:
    the nine metrics of paper 004 as fractions, then F1 per label."""
    table = Table(title=title, title_justify="left")
    if metrics.kind == "single_label":
        head = {"accuracy": f"{100 * metrics.accuracy:.1f}", "macro F1": f"{100 * metrics.macro_f1:.1f}"}
        if metrics.challenge is not None:
            head["M = 0.67·F1 + 0.33·Acc"] = f"{metrics.challenge:.4f}"
    else:
        head = {MULTILABEL_HEADERS.get(k, k): f"{v:.4f}" for k, v in metrics.values.items()}
    per = {f"F1 {c}": f"{100 * f:.1f}" for c, f in zip(metrics.labels, metrics.f1)}
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in head.items():
        table.add_row(k, v, style="bold")
    for k, v in per.items():
        table.add_row(k, v)
    table.add_row("samples", str(metrics.samples))
    return table


def summary_line(metrics) -> str:
    """The headline figures of a metrics object, for the line after training."""
    if getattr(metrics, "kind", None) == "single_label":
        s = f"accuracy {100 * metrics.accuracy:.1f}, macro F1 {100 * metrics.macro_f1:.1f}"
        return s if metrics.challenge is None else s + f", M {metrics.challenge:.4f}"
    if getattr(metrics, "kind", None) == "multi_label":
        return ", ".join(f"{MULTILABEL_HEADERS[k].rstrip('↓')} {v:.4f}" for k, v in metrics.values.items())
    return f"mean F1 {100 * metrics.mean_f1:.1f}, mean accuracy {100 * metrics.mean_accuracy:.1f}"


class TrainProgress(Bars):
    """A bar per stage epoch (batches done, running loss) and a metrics table after each evaluated epoch."""

    def __init__(self, out: Console) -> None:
        super().__init__(out, TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("loss {task.fields[loss]:.4f}"), transient=True)
        self.out = out
        self.task = None

    def callbacks(self):
        from auflow.models.train import TrainCallbacks

        return TrainCallbacks(on_batch=self.on_batch, on_epoch_end=self.on_epoch_end, on_resume=self.on_resume)

    def on_resume(self, stage: str, done: int) -> None:
        self.out.print(f"[cyan]resuming:[/] stage {stage}, {done} epoch(s) already done")

    def on_batch(self, stage: str, epoch: int, batch: int, batches: int, loss: float) -> None:
        if batch == 1 or self.task is None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"{stage} epoch {epoch}", total=batches, loss=loss)
            self._sum, self._n = 0.0, 0
        self._sum, self._n = self._sum + loss, self._n + 1
        self.progress.update(self.task, completed=batch, loss=self._sum / self._n)

    def on_epoch_end(self, record) -> None:
        terms = ", ".join(f"{k} {v:.4f}" for k, v in record.loss.items())
        self.progress.console.print(f"[bold]{record.stage}[/] epoch {record.epoch}/{record.epochs}: {terms}; "
                                    f"lr {record.lr:.2e}; {record.seconds:.1f} s", highlight=False)
        if record.metrics is not None:
            self.progress.console.print(metrics_table(f"test split after {record.stage} epoch {record.epoch}", record.metrics,
                                                      self.out.width))


def run_train(out: Console, config: Path, overrides: list[str], out_dir: Path | None, resume: bool) -> None:
    from auflow.models.train import load_train_config, train

    cfg = load_train_config(config, overrides)
    with TrainProgress(out) as progress:
        result = train(cfg, out_dir=out_dir, resume=resume, callbacks=progress.callbacks())
    m = result.metrics
    summary = f"wrote {result.checkpoint} in {result.seconds:.0f} s"
    if m is not None:
        split = (result.card.training.get("metrics") or {}).get("split", "test") if result.card is not None else "test"
        summary += f": {split} {summary_line(m)}"
    out.print(summary, highlight=False)
    if result.card is not None and "note" in result.card.training:
        out.print(f"[yellow]note:[/] {result.card.training['note']}", highlight=False)


def run_eval(out: Console, checkpoint: Path, data: str, fold: int | None, split: str, batch: int, device: str,
             threshold: float | None, json_path: Path | None) -> None:
    from auflow.models.train.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(checkpoint, data, fold=fold, split=split, batch_size=batch, device=device, threshold=threshold)
    out.print(metrics_table(f"{ev.model} ({checkpoint}) on {ev.data}", ev.metrics, out.width))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(ev.to_dict(), indent=2))
        out.print(f"wrote {json_path}")
