"""The text-game domain's data options."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...optionparsing import require

# the names `--rl.reward` takes (the domain's `rewards`, listed here for `--help`, which loads no domain)
REWARDS = ("binary", "task_specific")


@dataclass
class TextGameData:
    """Which transitions to use."""

    games: list[str] = field(default_factory=list)  # games to keep (all when empty)
    train_path: str = ""  # a training file in the bundled format (default: the bundled train split)
    test_path: str = ""  # a test file in the bundled format (default: the benchmark's test split)
    max_prompt_tokens: int = 1536  # longer training prompts are skipped (test prompts never are)
    mle_unchanged_ratio: float = 1.0  # unchanged transitions kept per changing one for MLE (-1: all)
    rl_unchanged_ratio: float = 1.0  # unchanged transitions kept per changing one for RL (-1: all)

    def __post_init__(self):
        require(self, "data.", max_prompt_tokens=">= 1", mle_unchanged_ratio=">= 0, or -1 for all",
                rl_unchanged_ratio=">= 0, or -1 for all")
