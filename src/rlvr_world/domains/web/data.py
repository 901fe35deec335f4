"""The web domain's data: collected MiniWoB++ transitions, split into train and test by episode.

A dataset is a gzipped JSON-lines file written by `collect.collect`, one
transition a line: {task, episode, step, objective, before, action, after}.
The prediction target is the difference before -> after (`acctree.diff`),
computed after the ids are renamed when `WebData.ids` is "dense".
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ...engine.errors import UserError
from .acctree import Diff, diff, renumber


IDS = ("dense", "browser")


def check_ids(ids: str) -> None:
    """A one-line ValueError for an unknown `WebData.ids`."""
    if ids not in IDS:
        raise ValueError(f"unknown ids {ids!r}; known: {', '.join(IDS)}")


class DataError(UserError, ValueError):
    """A web dataset that is missing or cannot be read."""




@dataclass
class Transition:
    task: str
    episode: int
    step: int
    objective: str
    action: str
    before: str
    after: str
    rule: str = "aligned"

    @cached_property
    def diff(self) -> Diff:
        return diff(self.before, self.after, rule=self.rule)

    @property
    def changed(self) -> bool:
        return not self.diff.empty


def read(path: str | Path, rule: str = "aligned", ids: str = "dense") -> list[Transition]:
    """Transitions from a collected dataset, or a one-line DataError.

    ``ids="dense"`` renames each transition's element ids 1, 2, 3, ... in
    order of first appearance (`acctree.renumber`); ``"browser"`` keeps
    Chromium's DOM node ids.
    """
    check_ids(ids)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"web dataset not found: {path}")
    out = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 - the error below says which line
                if line.strip():
                    r = json.loads(line)
                    before, after, action = r["before"], r["after"], r["action"]
                    if not all(isinstance(x, str) for x in (before, after, action)):
                        raise TypeError("before, after and action must be strings")
                    if ids == "dense":
                        before, after, action = renumber(before, after, action)
                    out.append(Transition(r["task"], int(r["episode"]), int(r["step"]), r["objective"], action,
                                          before, after, rule))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}, line {lineno}: not a web transition ({type(e).__name__}: {e})") from e
    if not out:
        raise DataError(f"{path} holds no transitions")
    return out


def split(transitions: list[Transition], name: str, test_fraction: float, seed: int = 0) -> list[Transition]:
    """The train or test part; whole episodes go to one side, chosen by a seeded shuffle."""
    if name not in ("train", "test"):
        raise ValueError(f"unknown split {name!r}")
    episodes = sorted({t.episode for t in transitions})
    random.Random(seed).shuffle(episodes)
    test = set(episodes[: max(1, round(test_fraction * len(episodes)))])
    return [t for t in transitions if (t.episode in test) == (name == "test")]
