"""Long phases show progress in a log file too, not only in a terminal."""

import io

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
    assert len(lines) == 4
    assert lines[1].startswith("MLE 2/4, ") and "left" in lines[1] and lines[1].endswith(": loss 1")


def test_plain_lines_are_rationed(monkeypatch):
    assert " so far" not in run_bar(monkeypatch, terminal=False, every=3600.0)


def test_a_terminal_gets_the_bar_only(monkeypatch):
    assert " so far" not in run_bar(monkeypatch, terminal=True, every=0.0)


def test_clock():
    assert progress.clock(75) == "1m15s" and progress.clock(3 * 3600 + 120) == "3h02m"
