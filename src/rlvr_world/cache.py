"""Where generated files are kept: $RLVR_WORLD_CACHE or ~/.cache/rlvr-world, one file per settings; and where the
files that installed packages ship (pretrained weights) are found."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence


def cache_root() -> Path:
    return Path(os.environ.get("RLVR_WORLD_CACHE", Path.home() / ".cache" / "rlvr-world"))


def cache_file(domain: str, stem: str, settings: dict, suffix: str) -> Path:
    """The cache file for a dataset generated with `settings` (their hash names it)."""
    key = json.dumps(settings, sort_keys=True, default=str)
    return cache_root() / domain / f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}{suffix}"


def converted_file(kind: str, source: Path, name: str) -> Path:
    """Where a file converted from `source` lives in the cache, keyed by the source's path, size and modification
    time (a reinstalled or changed source is converted again)."""
    st = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / kind / name.format(key=key)


def package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing it (its own imports may not be installed);
    None when the package is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def files_sha256(files: Sequence[Path], names: Sequence[str] | None = None) -> str:
    """The sha256 of these files' bytes, one after another, read in 4 MB chunks; with `names`, each file's name and
    a NUL byte go before its bytes (a folder's hash that a renamed file changes)."""
    h = hashlib.sha256()
    for i, f in enumerate(files):
        if names is not None:
            h.update(names[i].encode() + b"\0")
        with f.open("rb") as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()
