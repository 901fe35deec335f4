"""The domains' verifiable rewards in TRL's contract (`GRPOTrainer(reward_funcs=...)`).

TRL calls a reward function with the batch's prompts and completions and,
as keyword lists, every other column of the dataset: the rows of
`rlvr-world export trl` carry `domain`, `reward` and `transition`, which is
all the reward needs. Completions are plain strings for a plain-text
dataset, or lists of messages for a conversational one (the last message's
content is the answer).

    from rlvr_world.integrations.trl import reward_function
    trainer = GRPOTrainer(model=..., reward_funcs=reward_function(), train_dataset=...)
"""

from __future__ import annotations

from .rows import score


def completion_text(completion) -> str:
    """A completion's text: the string itself, or the content of the last message of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return ""


def reward_function(reward: str | None = None):
    """A TRL reward function over exported rows; `reward` overrides the reward named in each row."""

    def rlvr_world_reward(prompts, completions, domain, transition, **columns) -> list[float]:
        names = [reward] * len(completions) if reward else columns["reward"]
        return [float(score(d, r, completion_text(c), t)[0])
                for c, d, r, t in zip(completions, domain, names, transition)]

    rlvr_world_reward.__name__ = f"rlvr_world_{reward}" if reward else "rlvr_world"  # TRL logs rewards by name
    return rlvr_world_reward
