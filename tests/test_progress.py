"""Long phases show progress in a log file too, not only in a terminal."""

import io
import types

from rich.console import Console

from rlvr_world import progress


def run_bar(monkeypatch, terminal: bool, every: float) -> str:
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=terminal, width=100))
    monkeypatch.setattr(progress, "LOG_EVERY_S", every)
    with progress.bar("MLE", 4) as p:
        for i in range(4):
            progress.advance(p, 1, f"loss {i}")
    return out.getvalue()


def test_a_log_file_gets_plain_progress_lines(monkeypatch):
    text = run_bar(monkeypatch, terminal=False, every=0.0)
    lines = [line for line in text.splitlines() if " so far" in line]
    assert len(lines) == 3  # the first update sets the pace's origin
    assert lines[0].startswith("MLE 2/4, ") and "left" in lines[0] and lines[0].endswith(": loss 1")


def test_plain_lines_are_rationed(monkeypatch):
    assert " so far" not in run_bar(monkeypatch, terminal=False, every=3600.0)


def test_a_terminal_gets_the_bar_only(monkeypatch):
    assert " so far" not in run_bar(monkeypatch, terminal=True, every=0.0)


def test_clock():
    assert progress.clock(75) == "1m15s" and progress.clock(3 * 3600 + 120) == "3h02m"


def test_time_left_leaves_out_work_done_before_a_resume(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=False, width=100))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    clock = iter([0.0, 0.0, 10.0, 20.0])  # bar made; resumed at 90 of 100; then a step every 10 s
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    with progress.bar("MLE", 100) as p:
        progress.advance(p, 90)
        progress.advance(p, 1)
        progress.advance(p, 1)
    lines = [line for line in out.getvalue().splitlines() if " so far" in line]
    assert lines[-1].startswith("MLE 92/100") and "~1m20s left" in lines[-1]  # 8 steps at 10 s, not 92 in 20 s


def test_time_left_leaves_out_items_found_done_among_new_ones(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=False, width=100))
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    clock = iter([0.0, 0.0, 10.0, 20.0])  # bar made; then a new item every 10 s, with records found between
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    with progress.bar("agents", 100) as p:
        progress.skip(p, 40)  # resumed: 40 items on record
        progress.advance(p, 1)
        progress.skip(p, 9)
        progress.advance(p, 1)
        progress.skip(p, 30)
        progress.advance(p, 1)
    lines = [line for line in out.getvalue().splitlines() if " so far" in line]
    assert lines[-1].startswith("agents 82/100") and "~3m00s left" in lines[-1]  # 2 new items in 20 s, 18 left
