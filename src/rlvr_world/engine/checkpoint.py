"""Run directories, checkpoints and metric logs.

A checkpoint is a Hugging Face directory (`save_pretrained`: weights, config,
tokenizer) plus `trainer_state.pt` (optimizer, step, random states), written
to a temporary name and renamed into place, so an interrupted save never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch


def save_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def save_config(run_dir: Path, config: Any) -> None:
    save_json(run_dir / "config.json", dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config)


def save_model(path: Path, model, tokenizer, trainer_state: dict | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer_state.pt")
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(path: Path) -> dict | None:
    f = path / "trainer_state.pt"
    return torch.load(f, weights_only=False) if f.is_file() else None


class MetricLog:
    """Appends one JSON object per step to `metrics.jsonl`."""

    def __init__(self, path: Path, resume_step: int | None = None):
        """With `resume_step`, rows past that step (from an interrupted run) are dropped."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.exists():
            rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
            keep = [r for r in rows if r.get("step", 0) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def write(self, row: dict) -> None:
        row = {"time": round(time.time(), 3), **row}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]


class GracefulStop:
    """Turns SIGINT/SIGTERM into a flag the training loops check between steps.

    A loop that sees `requested` saves a checkpoint at the step boundary and
    raises KeyboardInterrupt, so `--resume` continues exactly where it stopped.
    A second signal stops at once.
    """

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)
        return False
