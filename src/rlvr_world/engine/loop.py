"""The skeleton MLE and RL training share: resume, the metric log, a graceful stop, periodic saves, the final save.

A training phase gives its model, optimizer and number of steps, and one
step as a function of the step's index that returns the step's metric row;
`TrainingLoop` does the rest the same way for both. Under `torchrun` every
process runs the loop and process 0 alone writes the log and the
checkpoints; a stop signal that reached any process stops all of them at the
same step, after a checkpoint, so `--resume` continues exactly where it
stopped (`stopsignal.GracefulStop`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..device import MemoryTrimmer
from ..progress import advance, bar
from . import distributed as dist
from .checkpoint import load_trainer_state, save_model
from .metriclog import MetricLog
from .models import has_lora, merged
from .stopsignal import GracefulStop


class TrainingLoop:
    """One phase's steps, from the last checkpoint under `out_dir` when resuming.

    `out_dir/checkpoint` holds the model (a LoRA model: its adapter), the
    optimizer state, the step and the state of each of `carried` (modules the
    phase needs back on resume, e.g. RL's frozen reference); `out_dir/model`
    the final model, merged; `out_dir/adapter` a LoRA model's final adapter
    alone (what `rlvr-world adapter save` keeps); `out_dir/metrics.jsonl` one
    row per step.
    """

    def __init__(self, name: str, out_dir: Path, model: torch.nn.Module, tokenizer, opt: torch.optim.Optimizer,
                 steps: int, save_every: int, *, resume: bool = False, tensorboard: bool = False,
                 carried: dict[str, torch.nn.Module] | None = None):
        self.name, self.out_dir, self.model, self.tokenizer, self.opt = name, out_dir, model, tokenizer, opt
        self.steps, self.save_every, self.carried = steps, save_every, carried or {}
        self.main = dist.is_main()
        state = load_trainer_state(out_dir / "checkpoint") if resume else None
        self.start = 0  # the first step to run
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            for key, module in self.carried.items():
                module.load_state_dict(state[key])
            self.start = state["step"]
        self.log = MetricLog(out_dir / "metrics.jsonl", resume_step=self.start if state else -1,
                             tensorboard=tensorboard) if self.main else None

    def write(self, row: dict) -> None:
        """Log a row (process 0 alone writes)."""
        if self.log is not None:
            self.log.write(row)

    def run(self, step: Callable[[int], dict], shown: Callable[[dict], str]) -> None:
        """Run `step(i)` for the remaining steps; log each row it returns, with `shown(row)` beside the progress
        bar; checkpoint every `save_every` steps and on a stop signal, after which it raises KeyboardInterrupt."""
        trim = MemoryTrimmer()  # the resident set stays near its size after warm-up
        with bar(self.name, total=self.steps, disable=not self.main) as progress, GracefulStop() as stop:
            advance(progress, self.start)
            for i in range(self.start, self.steps):
                row = step(i)
                trim()
                stopping = dist.any_rank(stop.requested)  # every process stops at the same step
                self.write(row)
                advance(progress, 1, shown(row))
                if stopping or ((i + 1) % self.save_every == 0 and i + 1 < self.steps):
                    self.save(i + 1)
                if stopping:
                    raise KeyboardInterrupt

    def save(self, step: int) -> None:
        """Checkpoint the model, the optimizer, the carried modules and the number of steps done."""
        if self.main:
            carried = {key: module.state_dict() for key, module in self.carried.items()}
            save_model(self.out_dir / "checkpoint", self.model, self.tokenizer,
                       {"optimizer": self.opt.state_dict(), **carried, "step": step})
        dist.barrier()

    def finish(self) -> torch.nn.Module:
        """The trained model, a LoRA adapter folded in (a plain HF model), saved to `out_dir/model`; the adapter
        alone first, to `out_dir/adapter`."""
        if self.main and has_lora(self.model):
            save_model(self.out_dir / "adapter", self.model)
        model = merged(self.model)
        if self.main:
            save_model(self.out_dir / "model", model, self.tokenizer)
        dist.barrier()
        return model
