"""Where generated files are kept: $RLVR_WORLD_CACHE or ~/.cache/rlvr-world, one file per settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RLVR_WORLD_CACHE", Path.home() / ".cache" / "rlvr-world"))


def cache_file(domain: str, stem: str, settings: dict, suffix: str) -> Path:
    """The cache file for a dataset generated with `settings` (their hash names it)."""
    key = json.dumps(settings, sort_keys=True, default=str)
    return cache_root() / domain / f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}{suffix}"
