"""Files written atomically: to a temporary name, flushed to disk, then renamed into place, so an interrupted write
leaves the previous file whole."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any


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
    """A run's whole config as `config.json` in its directory."""
    save_json(run_dir / "config.json", dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config)
