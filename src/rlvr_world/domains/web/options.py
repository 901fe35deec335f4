"""The web domain's data options: which pages to collect and how to use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...optionparsing import choices_of, require, require_choice

# the names `--rl.reward` takes (the domain's `rewards`, listed here for `--help`, which loads no domain)
REWARDS = ("f1",)


@dataclass
class WebData:
    """Which transitions to collect and use."""

    tasks: list[str] = field(default_factory=list)  # MiniWoB task pages (all 44 known ones when empty)
    episodes_per_task: int = 12  # episodes collected per task
    max_steps: int = 5  # actions per episode at most
    scripted_prob: float = 0.6  # share of steps taken by the task-aware scripted policy (the rest: random)
    collect_seed: int = 0  # policy randomness during collection
    dataset: str = ""  # a collected dataset file (default: collected once into $RLVR_WORLD_CACHE, ~/.cache/rlvr-world)
    test_fraction: float = 0.2  # share of episodes held out for testing
    # target difference: aligned (plain) or wma (the WMA-Agents annotation rule)
    diff_rule: Literal["aligned", "wma"] = "aligned"
    # element ids: dense (1, 2, ... per transition, `acctree.renumber`) or browser (as collected)
    ids: Literal["dense", "browser"] = "dense"
    max_prompt_tokens: int = 1536  # longer training prompts are skipped (test prompts never are)
    mle_unchanged_ratio: float = -1.0  # unchanged transitions kept per changing one for MLE (-1: all)
    rl_unchanged_ratio: float = 0.25  # unchanged transitions kept per changing one for RL (-1: all)

    def __post_init__(self):
        require_choice(self, "data.", **choices_of(self))
        require(self, "data.", episodes_per_task=">= 1", max_steps=">= 1", scripted_prob="in [0, 1]",
                test_fraction="in (0, 1)", max_prompt_tokens=">= 1", mle_unchanged_ratio=">= 0, or -1 for all",
                rl_unchanged_ratio=">= 0, or -1 for all")

    def collect_config(self):
        from .collect import TASKS, CollectConfig

        return CollectConfig(tasks=self.tasks or list(TASKS), episodes_per_task=self.episodes_per_task,
                             max_steps=self.max_steps, scripted_prob=self.scripted_prob, seed=self.collect_seed)

    def path(self) -> Path:
        """The dataset file: the one given, or the cache file for these collection settings."""
        from ...cache import cache_file

        if self.dataset:
            return Path(self.dataset)
        return cache_file("web", "miniwob", vars(self.collect_config()), ".jsonl.gz")
