"""What the language domains share: transitions serialised as text, a BPE tokenizer, a reward on decoded text.

A subclass says how to read its transitions (`transitions`) and how to write
one as prompt and target text (`prompt_text`, `target_text`) and what the
answer "nothing changes" is (`trivial_text`); its transitions
carry a boolean `changed`, which labels the evaluation groups and lets
training rebalance changed against unchanged transitions.

A response that is not a sequence of the tokenizer's ids (a negative id, one
past the vocabulary, a float; `ids.token_ids`) decodes to "" and scores as
the empty response, the reward's unparseable case, with `parts["why"]`
saying what was wrong.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..engine.domain import Domain, Example
from ..text import load_tokenizer, train_bpe
from .balance import rebalance
from .ids import token_ids


class TextDomain(Domain):
    """Token ids in and out for domains whose states and actions are text."""

    rewards: dict  # name -> (response text, transition) -> (value, parts)
    transition_type: type  # the transitions' dataclass: its fields are JSON values, so a transition travels as JSON
    split_digits = False  # one token per digit in the BPE tokenizer (`text.train_bpe`)

    def __init__(self, tokenizer, data):
        self.tokenizer = tokenizer
        self.data = data
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    # --- what a subclass provides ---------------------------------------------
    @staticmethod
    def transitions(split: str, data) -> list:
        raise NotImplementedError

    @staticmethod
    def prompt_text(t) -> str:
        raise NotImplementedError

    @staticmethod
    def target_text(t) -> str:
        raise NotImplementedError

    @staticmethod
    def trivial_text(t) -> str:
        """The answer "nothing changes" to `t`: the target text of a transition to the state it starts from."""
        raise NotImplementedError

    @staticmethod
    def kind_of(text: str, t) -> str:
        """What a response's text predicts for `t`: "no_change", a "change" or nothing readable ("invalid")."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------
    @classmethod
    def corpus(cls, data) -> list[str]:
        """Training texts for the tokenizer."""
        return [cls.prompt_text(t) + cls.target_text(t) for t in cls.transitions("train", data)]

    @classmethod
    def make_tokenizer(cls, data, vocab_size: int):
        """A byte-level BPE tokenizer trained on the training split."""
        return train_bpe(cls.corpus(data), vocab_size, split_digits=cls.split_digits)

    load_tokenizer = staticmethod(load_tokenizer)  # a saved BPE tokenizer, or a pretrained model's own

    def example(self, t) -> Example:
        prompt = self.tokenizer.encode(self.prompt_text(t), add_special_tokens=False)
        target = self.tokenizer.encode(self.target_text(t), add_special_tokens=False) + [self.eos_id]
        trivial = self.tokenizer.encode(self.trivial_text(t), add_special_tokens=False) + [self.eos_id]
        return Example(prompt, target, group="changed" if t.changed else "unchanged", payload=t, trivial_ids=trivial)

    def examples(self, split: str, stage: str = "", seed: int = 0) -> list[Example]:
        """Examples of a split; for training, `stage` ("mle" or "rl") picks the changed/unchanged balance."""
        ts = self.transitions(split, self.data)
        if split == "train":
            ratio = {"mle": self.data.mle_unchanged_ratio, "rl": self.data.rl_unchanged_ratio}.get(stage, -1.0)
            ts = rebalance(ts, ratio, seed)
        out = [self.example(t) for t in ts]
        if split == "train":
            out = [e for e in out if len(e.prompt_ids) <= self.data.max_prompt_tokens]
        return out

    def decode(self, response_ids: Sequence[int]) -> str:
        """The response's text ("" when it is not a sequence of token ids; never raises)."""
        ids, _ = token_ids(response_ids, len(self.tokenizer))
        if ids is None:
            return ""
        return self.tokenizer.decode([i for i in ids if i not in (self.eos_id, self.pad_id)], skip_special_tokens=True)

    def card_example(self, example: Example) -> dict[str, str]:
        t = example.payload
        return {"prompt": self.prompt_text(t), "answer": self.target_text(t), "nothing changes": self.trivial_text(t)}

    def answer_kind(self, response_ids: Sequence[int], example: Example) -> str:
        ids, _ = token_ids(response_ids, len(self.tokenizer))
        return "invalid" if ids is None else self.kind_of(self.decode(ids), example.payload)

    def score(self, reward_name: str, response_ids: Sequence[int], example: Example) -> tuple[float, dict[str, Any]]:
        """Decode the response and score it with the named reward (never raises)."""
        reward = self.rewards[reward_name]
        ids, why = token_ids(response_ids, len(self.tokenizer))
        if ids is None:  # scored as the empty response, the reward's unparseable case
            value, parts = reward("", example.payload)
            return value, {**parts, "why": why}
        return reward(self.decode(ids), example.payload)
