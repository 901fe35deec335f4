"""The ByteSized32 text-game domain: predict the next game state as a JSON difference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ...engine.domain import Example
from ...text import train_bpe
from . import reward
from .data import Transition, load_split, rebalance, select_games
from .serialize import prompt_text, target_text


@dataclass
class TextGameData:
    """Which transitions to use."""

    games: list[str] = field(default_factory=list)  # games to keep (all when empty)
    train_path: str = ""  # a training file in the bundled format (default: the bundled train split)
    test_path: str = ""  # a test file in the bundled format (default: the benchmark's test split)
    max_prompt_tokens: int = 1536  # longer training prompts are skipped (test prompts never are)
    mle_unchanged_ratio: float = 1.0  # unchanged transitions kept per changing one for MLE (-1: all)
    rl_unchanged_ratio: float = 1.0  # unchanged transitions kept per changing one for RL (-1: all)


class TextGameDomain:
    """Serialises transitions into token ids and scores decoded responses."""

    name = "textgame"
    rewards = reward.REWARDS
    metric = "binary"  # exact-state accuracy, the benchmark's metric

    def __init__(self, tokenizer, data: TextGameData | None = None):
        self.tokenizer = tokenizer
        self.data = data or TextGameData()
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    # --- data ---------------------------------------------------------------
    @staticmethod
    def check_data(data: TextGameData) -> None:
        """Read both splits once, so bad data fails before anything is written."""
        transitions("train", data)
        transitions("test", data)

    @staticmethod
    def corpus(data: TextGameData) -> list[str]:
        """Training texts for the tokenizer."""
        return [prompt_text(t) + target_text(t) for t in transitions("train", data)]

    def example(self, t: Transition) -> Example:
        prompt = self.tokenizer.encode(prompt_text(t), add_special_tokens=False)
        target = self.tokenizer.encode(target_text(t), add_special_tokens=False) + [self.eos_id]
        return Example(prompt, target, group="changed" if t.changed else "unchanged", payload=t)

    def examples(self, split: str, stage: str = "", seed: int = 0) -> list[Example]:
        """Examples of a split; for training, `stage` ("mle" or "rl") picks the changed/unchanged balance."""
        ts = transitions(split, self.data)
        if split == "train":
            ratio = {"mle": self.data.mle_unchanged_ratio, "rl": self.data.rl_unchanged_ratio}.get(stage, -1.0)
            ts = rebalance(ts, ratio, seed)
        out = [self.example(t) for t in ts]
        if split == "train":
            out = [e for e in out if len(e.prompt_ids) <= self.data.max_prompt_tokens]
        return out

    # --- decoding and scoring ----------------------------------------------
    def decode(self, response_ids: Sequence[int]) -> str:
        ids = [i for i in response_ids if i not in (self.eos_id, self.pad_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def score(self, reward_name: str, response_ids: Sequence[int], example: Example) -> tuple[float, dict[str, Any]]:
        return self.rewards[reward_name](self.decode(response_ids), example.payload)


def transitions(split: str, data: TextGameData) -> list[Transition]:
    path = data.train_path if split == "train" else data.test_path
    return select_games(load_split(split, path), data.games)


def make_tokenizer(data: TextGameData, vocab_size: int):
    return train_bpe(TextGameDomain.corpus(data), vocab_size)
