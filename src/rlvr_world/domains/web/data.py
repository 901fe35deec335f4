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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ...cache import cache_file
from ...config import require, require_choice
from .acctree import Diff, diff, renumber
from .collect import TASKS, CollectConfig


IDS = ("dense", "browser")


def check_ids(ids: str) -> None:
    """A one-line ValueError for an unknown `WebData.ids`."""
    if ids not in IDS:
        raise ValueError(f"unknown ids {ids!r}; known: {', '.join(IDS)}")


class DataError(ValueError):
    """A web dataset that is missing or cannot be read."""


@dataclass
class WebData:
    """Which transitions to collect and use."""

    tasks: list[str] = field(default_factory=list)  # MiniWoB task pages (all 44 known ones when empty)
    episodes_per_task: int = 12  # episodes collected per task
    max_steps: int = 5  # actions per episode at most
    scripted_prob: float = 0.6  # share of steps taken by the task-aware scripted policy (the rest: random)
    collect_seed: int = 0  # policy randomness during collection
    dataset: str = ""  # a collected dataset file (default: collected once into $RLVR_WORLD_CACHE or ~/.cache/rlvr-world)
    test_fraction: float = 0.2  # share of episodes held out for testing
    diff_rule: str = "aligned"  # target difference: aligned (plain) or wma (the WMA-Agents annotation rule)
    ids: str = "dense"  # element ids: dense (1, 2, ... per transition, `acctree.renumber`) or browser (as collected)
    max_prompt_tokens: int = 1536  # longer training prompts are skipped (test prompts never are)
    mle_unchanged_ratio: float = -1.0  # unchanged transitions kept per changing one for MLE (-1: all)
    rl_unchanged_ratio: float = 0.25  # unchanged transitions kept per changing one for RL (-1: all)

    def __post_init__(self):
        require_choice(self, "data.", diff_rule=("aligned", "wma"), ids=("dense", "browser"))
        require(self, "data.", episodes_per_task=">= 1", max_steps=">= 1", scripted_prob="in [0, 1]",
                test_fraction="in (0, 1)", max_prompt_tokens=">= 1", mle_unchanged_ratio=">= 0, or -1 for all",
                rl_unchanged_ratio=">= 0, or -1 for all")

    def collect_config(self) -> CollectConfig:
        return CollectConfig(tasks=self.tasks or list(TASKS), episodes_per_task=self.episodes_per_task,
                             max_steps=self.max_steps, scripted_prob=self.scripted_prob, seed=self.collect_seed)

    def path(self) -> Path:
        """The dataset file: the one given, or the cache file for these collection settings."""
        if self.dataset:
            return Path(self.dataset)
        return cache_file("web", "miniwob", vars(self.collect_config()), ".jsonl.gz")


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
            for lineno, line in enumerate(f, 1):
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
