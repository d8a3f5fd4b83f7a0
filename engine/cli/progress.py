"""Progress bars and run summaries for people (rich)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from ..pipeline.core import StreamStats
    from ..runner import RunOutcome


class Bars:
    """The bars of a long command (run, archive, train, distill): rich's Progress with ``columns`` and then
    the time elapsed and remaining, shown while the ``with`` block runs; ``transient`` clears them at its end."""

    def __init__(self, console: Console, *columns: ProgressColumn, transient: bool = False) -> None:
        self.progress = Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=transient)

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


class RunProgress(Bars):
    """One bar per stream: frames done of the container's count, fps, faces."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[fps]:>6.1f} fps"), TextColumn("{task.fields[faces]} faces"))
        self.tasks: dict[str, int] = {}

    def update(self, st: StreamStats) -> None:
        task = self.tasks.get(st.cam)
        if task is None:
            task = self.tasks[st.cam] = self.progress.add_task(st.cam, total=st.total_frames, fps=0.0, faces=0)
        if st.frames_out % 5 == 0 or st.frames_out == st.total_frames:
            self.progress.update(task, completed=st.frames_out, fps=st.fps, faces=st.faces)


class ArchiveProgress(Bars):
    """executor ray: one bar over the batch: videos ended of all, frames/s over the cluster, videos per node."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, TextColumn("[bold]videos"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[failed]} failed"), TextColumn("{task.fields[fps]:>7.1f} frames/s"),
                         TextColumn("{task.fields[nodes]}"))
        self.task: int | None = None

    def update(self, p: dict) -> None:
        if self.task is None:
            self.task = self.progress.add_task("videos", total=p["total"], failed=0, fps=0.0, nodes="")
        nodes = ", ".join(f"{name}: {n}" for name, n in sorted(p["nodes"].items()))
        self.progress.update(self.task, completed=p["done"] + p["failed"], failed=p["failed"], fps=p["fps"], nodes=nodes)


def print_summary(console: Console, outcome: RunOutcome) -> None:
    table = Table(title=f"run {outcome.run_dir}", title_justify="left")
    for col in ("camera", "frames", "with face", "faces", "tracks", "fps", "end"):
        table.add_column(col, justify="right" if col not in ("camera", "end") else "left",
                         overflow="fold", no_wrap=col != "camera")
    for cam, s in outcome.stats.items():
        main_track = max(s.tracks.values(), default=0)
        table.add_row(cam, str(s.frames_out), f"{s.frames_with_face} ({100 * s.frames_with_face / max(s.frames_out, 1):.1f}%)",
                      str(s.faces), f"{len(s.tracks)} (max {main_track})", f"{s.fps:.1f}", s.reason or "?")
    console.print(table)
    console.print(f"outputs: {outcome.run_dir}/ (config.yaml, summary.json, <camera>.jsonl)")
