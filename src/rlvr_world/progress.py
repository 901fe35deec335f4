"""Progress bars for every long phase (rich), quiet enough for CI logs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def bar(description: str, total: int | None, *, disable: bool = False) -> Progress:
    """A started progress display with one task; use as a context manager."""
    p = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=disable,
        transient=False,
    )
    p.add_task(description, total=total, info="")
    return p


def advance(p: Progress, n: int = 1, info: str | None = None) -> None:
    task = p.task_ids[0]
    p.update(task, advance=n, **({"info": info} if info is not None else {}))
