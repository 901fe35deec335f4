"""Progress bars for every long phase (rich), quiet enough for CI logs.

In a terminal the bar redraws in place. Where stderr is not a terminal (a log
file, `nohup`, CI) rich would show nothing until the phase ends, so a plain
line is printed instead at most every `LOG_EVERY_S` seconds: how far, how long
so far, how long left, and the phase's latest figures.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
LOG_EVERY_S = 60.0


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
    p.logged_at = time.monotonic()  # when a plain progress line was last printed (not in a terminal)
    p.origin = None  # (completed, time) at the first update: the rate leaves out work done before (a resumed run)
    return p


def advance(p: Progress, n: int = 1, info: str | None = None) -> None:
    task = p.task_ids[0]
    p.update(task, advance=n, **({"info": info} if info is not None else {}))
    now = time.monotonic()
    if p.origin is None:
        p.origin = (p.tasks[0].completed, now)
    elif not p.disable and not p.console.is_terminal and now - p.logged_at >= LOG_EVERY_S:
        p.logged_at = now
        p.console.print(log_line(p.tasks[0], p.origin, now), highlight=False, markup=False)


def skip(p: Progress, n: int = 1, info: str | None = None) -> None:
    """Count work found already done (a resumed run): shown as done, left out of the rate of what is left."""
    p.update(p.task_ids[0], advance=n, **({"info": info} if info is not None else {}))
    if p.origin is not None:  # work done before some new work: the rate's start moves past it
        p.origin = (p.origin[0] + n, p.origin[1])


def log_line(task, origin: tuple[float, float], now: float) -> str:
    """`MLE 37/280, 2m13s so far, ~14m40s left: loss 1.2` for a task of a progress display; the time left is
    at the rate since `origin` (completed, time)."""
    done = f"{task.completed:g}/{task.total:g}" if task.total is not None else f"{task.completed:g}"
    line = f"{task.description} {done}, {clock(task.elapsed or 0.0)} so far"
    rate = (task.completed - origin[0]) / max(now - origin[1], 1e-9)
    if task.total and rate > 0:
        line += f", ~{clock((task.total - task.completed) / rate)} left"
    info = task.fields.get("info", "")
    return f"{line}: {info}" if info else line


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
