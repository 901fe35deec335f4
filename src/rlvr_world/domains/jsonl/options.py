"""The jsonl domain's data options: which record files."""

from __future__ import annotations

from dataclasses import dataclass

from ...optionparsing import require

# the names `--rl.reward` takes (the domain's `rewards`, listed here for `--help`, which loads no domain);
# module:function names a reward of your own (records.user_reward)
REWARDS = ("exact", "field_accuracy", "diff_f1", "line_f1", "module:function")


@dataclass
class JsonlData:
    """Which records to use."""

    train_path: str = ""  # JSON-lines file of {"state", "action", "next_state"} records to train on (required)
    test_path: str = ""  # JSON-lines file of records to evaluate on (required)
    max_prompt_tokens: int = 1536  # longer training prompts are skipped (test prompts never are)
    mle_unchanged_ratio: float = -1.0  # unchanged records kept per changing one for MLE (-1: all)
    rl_unchanged_ratio: float = -1.0  # unchanged records kept per changing one for RL (-1: all)

    def __post_init__(self):
        require(self, "data.", max_prompt_tokens=">= 1", mle_unchanged_ratio=">= 0, or -1 for all",
                rl_unchanged_ratio=">= 0, or -1 for all")
