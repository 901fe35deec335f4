"""Checkpoints, and the checks that stop a diverged training before it saves.

A checkpoint is a Hugging Face directory (`save_pretrained`: weights, config,
tokenizer) plus `trainer_state.pt` (optimizer state and step: tensors and
plain values, read back with `weights_only=True`), written to a temporary name,
flushed to disk and renamed into place, so an interrupted save never leaves a
half-written checkpoint: at worst the previous one waits under `NAME.old`,
and the next load or save puts it back. Weights that are not finite are never
saved (`TrainingDiverged`).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
from pathlib import Path

import torch

from .errors import UserError


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read back."""


class TrainingDiverged(UserError, ValueError):
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
