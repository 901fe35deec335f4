"""Run directories, checkpoints and metric logs.

A checkpoint is a Hugging Face directory (`save_pretrained`: weights, config,
tokenizer) plus `trainer_state.pt` (optimizer state and step: tensors and
plain values, read back with `weights_only=True`), written to a temporary name,
flushed to disk and renamed into place, so an interrupted save never leaves a
half-written checkpoint: at worst the previous one waits under `NAME.old`,
and the next load or save puts it back. Weights that are not finite are never
saved (`TrainingDiverged`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read back."""


class TrainingDiverged(ValueError):
    """The loss, the gradients or the weights stopped being finite numbers."""


def check_finite(phase: str, step: int, hint: str, **values: float) -> None:
    """Stop training, before the optimizer steps, when a loss or a gradient norm is not finite."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise TrainingDiverged(f"{phase} diverged at step {step} ({shown}): nothing from this step was saved "
                               f"(the last checkpoint is intact); {hint}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, flushed, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(obj, indent=2, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_config(run_dir: Path, config: Any) -> None:
    save_json(run_dir / "config.json", dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config)


def recover(path: Path) -> None:
    """Put back the previous copy of `path` that a save interrupted between its two renames left as `.old`."""
    old = path.with_name(path.name + ".old")
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old)
        else:
            old.rename(path)


def save_model(path: Path, model, tokenizer=None, trainer_state: dict | None = None) -> None:
    """Save atomically (a LoRA model: its adapter alone; the tokenizer beside it when given); refuse weights that are
    not finite (the last good save stays)."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(f"not saving {path}: {len(bad)} weight tensors are not finite (e.g. {bad[0]}); "
                               f"lower the learning rate")
    recover(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer_state.pt")
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    old = path.with_name(path.name + ".old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def load_trainer_state(path: Path) -> dict | None:
    """The optimizer state and step saved beside a checkpoint, or None when there is none."""
    recover(path)
    f = path / "trainer_state.pt"
    if not f.is_file():
        return None
    try:
        state = torch.load(f, weights_only=True, map_location="cpu")
    except (EOFError, RuntimeError, OSError, ValueError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{f} is damaged ({type(e).__name__}): delete {path} to redo that phase "
                              f"from its start") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{f} holds no training step: delete {path} to redo that phase from its start")
    return state


class MetricLog:
    """Appends one JSON object per step to `metrics.jsonl`; with `tensorboard`, the same numbers as TensorBoard
    scalars (same keys, x = step) in a `tensorboard/` folder beside it."""

    def __init__(self, path: Path, resume_step: int | None = None, tensorboard: bool = False):
        """With `resume_step`, rows past that step (from an interrupted run) are dropped, in both logs."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.exists():
            keep = [r for r in self.rows() if r.get("step", 0) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        self.board = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None and resume_step >= 0 else None
            self.board = SummaryWriter(log_dir=str(path.parent / "tensorboard"), purge_step=purge)

    def write(self, row: dict) -> None:
        row = {"time": round(time.time(), 3), **row}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.board is not None:
            for key, value in row.items():
                if key not in ("step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.board.add_scalar(key, value, global_step=row.get("step", 0), walltime=row["time"])
            self.board.flush()

    def rows(self) -> list[dict]:
        """The logged rows; a line torn by a crash mid-write is skipped."""
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows


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
