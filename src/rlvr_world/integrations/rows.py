"""A language domain's transitions as engine-neutral rows, and the domain's reward on a row.

A row holds what any RL engine needs to train a world model with our
verifiable rewards: the prompt text (exactly what our own runs tokenize),
the target text (the ground truth the reward compares with, in the domain's
answer format), and the transition itself as JSON, because a reward reads
more than the target (the text game's task-specific reward compares the
predicted state with the state before; the web reward parses the page
difference). `score` rebuilds the transition from that JSON and calls the
domain's reward by name, so the same function scores a response here, under
verl, or under TRL.

Only the language domains (text game, web, your own JSON lines) export:
a video world model's prompts are frame and action codes of its own frame
tokenizer, which a text-to-text engine cannot hold.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

DATA_SOURCE = "rlvr_world/"  # + the domain's name: verl's `data_source`, which picks the reward


@dataclass
class Row:
    """One transition, ready for an RL engine."""

    domain: str  # rlvr-world's domain name
    split: str  # train or test
    index: int  # position in the split as exported
    group: str  # changed or unchanged
    prompt: str  # the prompt text, as the domain writes it
    ground_truth: str  # the target text (what a perfect world model answers)
    transition: str  # the transition as JSON (what the reward reads)
    reward: str  # the reward's name (the preset's RL reward)


@functools.cache
def text_domain(name: str):
    """The domain class of a language domain, or a one-line error for any other."""
    from .. import domains
    from ..domains.textdomain import TextDomain

    cls = domains.get(name)
    if not issubclass(cls, TextDomain):
        raise ValueError(f"the {name} domain's prompts are not text (a video world model reads frame codes); "
                         f"export serves the language domains: textgame, web, jsonl")
    return cls


def rows(domain: str, data: Any, split: str, reward: str, rl_unchanged_ratio: float | None = None, seed: int = 0,
         limit: int = 0) -> list[Row]:
    """The rows of a split: for training, rebalanced as our RL phase samples them (`rl_unchanged_ratio`)."""
    from ..domains.balance import rebalance

    cls = text_domain(domain)
    ts = cls.transitions(split, data)
    if split == "train" and rl_unchanged_ratio is not None:
        ts = rebalance(ts, rl_unchanged_ratio, seed)
    if limit:
        ts = ts[:limit]
    return [Row(domain, split, i, "changed" if t.changed else "unchanged", cls.prompt_text(t), cls.target_text(t),
                json.dumps(dataclasses.asdict(t), ensure_ascii=False), reward) for i, t in enumerate(ts)]


def score(domain: str, reward: str, response: str, transition: str) -> tuple[float, dict]:
    """The domain's reward `reward` of a response text against a row's transition JSON: (value, parts).

    Never raises on the response (the rewards score unparseable text 0); an unknown domain or reward, or a
    transition that is not the domain's, is a one-line ValueError.
    """
    cls = text_domain(domain)
    if reward not in cls.rewards:
        raise ValueError(f"unknown {domain} reward {reward!r}; known: {', '.join(cls.rewards)}")
    fn = cls.rewards[reward]  # (a reward of the user's own is imported here)
    try:
        t = cls.transition_type(**json.loads(transition))
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a {domain} transition: {e}") from None
    return fn(response if isinstance(response, str) else "", t)
