"""Reading a (gzipped) JSON-lines data file, with one-line errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def read_json_lines(path: str | Path, parse: Callable[[object], T], error: type[Exception], what: str) -> list[T]:
    """`parse` of every non-blank line's JSON value; `error` (one line) for a missing, unreadable or bad file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[T] = []
    lineno = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 - the error below says which line
                if line.strip():
                    out.append(parse(json.loads(line)))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise error(f"cannot read {path}: {e}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise error(f"{path}, line {lineno}: not {what} ({type(e).__name__}: {e})") from None
    if not out:
        raise error(f"{path} holds no data (no line with {what})")
    return out
