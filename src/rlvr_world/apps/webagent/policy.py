"""The proposal policy: K distinct candidate actions for the page in front of the agent.

It is the collector's policy (`collect.scripted_action`, `collect.random_action`):
at each draw a task-aware scripted move with probability `scripted_prob`,
otherwise (or when the script has nothing left to do) a random one. The first
candidate is exactly the action the collector would have taken, so "the
policy alone" is the agent that always takes it. Later draws come from the
same mix until K distinct actions are found or `tries` draws are spent.
"""

from __future__ import annotations

import random

from ...domains.web.browser import Action
from ...domains.web.collect import random_action, scripted_action


def propose(tree: str, goal: str, k: int, rng: random.Random, *, scripted_prob: float = 0.6,
            done: set[int] | None = None, tries: int = 50) -> list[Action]:
    """Up to `k` distinct actions, the policy's own choice first; `done`: elements the scripted policy has used."""
    done = done if done is not None else set()
    out: list[Action] = []
    for _ in range(tries):
        used = done | {a.node for a in out}
        action = scripted_action(tree, goal, used, rng) if rng.random() < scripted_prob else None
        action = action or random_action(tree, rng)
        if action not in out:
            out.append(action)
        if len(out) == k:
            break
    return out
