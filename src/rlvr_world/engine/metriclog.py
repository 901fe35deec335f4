"""The metric log: one JSON object per training step, optionally mirrored as TensorBoard scalars."""

from __future__ import annotations

import json
import time
from pathlib import Path


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
