"""The ByteSized32 text-game domain: predict the next game state as a JSON difference."""

from __future__ import annotations

from ..textdomain import TextDomain
from . import reward
from .data import Transition, load_split, select_games
from .options import TextGameData
from .serialize import prompt_text, target_text




class TextGameDomain(TextDomain):
    """Serialises transitions into token ids and scores decoded responses."""

    name = "textgame"
    rewards = reward.REWARDS
    metric = "binary"  # exact-state accuracy, the benchmark's metric
    metric_label = "exact-state accuracy"
    columns = ("unchanged", "changed", "overall")  # of the results table
    binary_metric = True  # 0/1 per example (McNemar's test) or graded (Wilcoxon's)
    reported_parts = ()  # reward parts averaged into the results besides the metric
    # facts from the RLVR-World paper (text game, 1.5B model, task-specific reward) and its GPT-4 baseline
    reference = {
        "paper 1.5B MLE": {"unchanged": 38.9, "changed": 24.2, "overall": 32.9},
        "paper 1.5B RLVR": {"unchanged": 83.7, "changed": 33.8, "overall": 63.2},
        "GPT-4 (benchmark paper)": {"overall": 64.8},
    }

    def __init__(self, tokenizer, data: TextGameData | None = None):
        super().__init__(tokenizer, data or TextGameData())

    @staticmethod
    def check_data(data: TextGameData) -> None:
        """Read both splits once, so bad data fails before anything is written."""
        TextGameDomain.transitions("train", data)
        TextGameDomain.transitions("test", data)

    @staticmethod
    def describe(data: TextGameData) -> dict:
        return {"games": data.games or "all"}

    @staticmethod
    def transitions(split: str, data: TextGameData) -> list[Transition]:
        path = data.train_path if split == "train" else data.test_path
        return select_games(load_split(split, path), data.games)

    prompt_text = staticmethod(prompt_text)
    target_text = staticmethod(target_text)

