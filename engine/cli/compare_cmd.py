"""``auflow compare RUN_A RUN_B``: per-output agreement of two runs on the same video, a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def comparison_table(cmp) -> Table:
    table = Table(title=f"A = {cmp.a}\nB = {cmp.b}\n{cmp.matched} faces matched by ({'cam, frame, track' if cmp.match == 'track' else 'cam, frame, largest face'})",
                  title_justify="left")
    for col in ("output", "n", "Pearson r", "mean |A−B|", "mean A", "mean B", "std A", "std B"):
        table.add_column(col, justify="left" if col == "output" else "right")

    def f(v, fmt=".3f"):
        return "n/a" if v is None else format(v, fmt)

    for r in cmp.rows:
        table.add_row(r["label"], str(r["n"]), f(r["pearson"], ".2f"), f(r["mad"]), f(r["mean_a"]), f(r["mean_b"]),
                      f(r["std_a"]), f(r["std_b"]))
    return table


def run_compare(out: Console, run_a: Path, run_b: Path, plot: Path | None, match: str, cam: str | None,
                json_path: Path | None) -> None:
    from ..compare import compare_runs, plot_comparison

    cmp = compare_runs(run_a, run_b, match=match, cam=cam)
    for tag, models in (("A", cmp.models_a), ("B", cmp.models_b)):
        if models:
            out.print(f"{tag}: " + ", ".join(f"{k} = {v.get('name')} ({v.get('kind')})" for k, v in models.items()
                                              if isinstance(v, dict)), highlight=False)
    out.print(comparison_table(cmp))
    if cmp.only_a or cmp.only_b:
        out.print(f"not compared (in one run only): A {cmp.only_a or '-'}, B {cmp.only_b or '-'}", highlight=False)
    out.print("Pearson r is n/a where a run's values do not vary over the matched frames.", highlight=False)
    if plot is not None:
        out.print(f"wrote {plot_comparison(cmp, plot)}", highlight=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(cmp.to_dict(), indent=2))
        out.print(f"wrote {json_path}", highlight=False)
