"""The domains' verifiable rewards in verl's contract (`custom_reward_function`).

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)`
once per response, with the columns of the rows `rlvr-world export verl`
wrote: `data_source` is `rlvr_world/<domain>`, `extra_info` carries the
transition (JSON) and the reward's name. Point verl at this file:

    custom_reward_function.path=$(python -c "import rlvr_world.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score

It returns a float (verl's reward managers also accept a dict, but theirs
must have the same keys for every response, and ours do not).
"""

from __future__ import annotations

from .rows import DATA_SOURCE, score


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **_) -> float:
    """The reward of one decoded response; a row not exported by rlvr-world is a one-line ValueError."""
    if not isinstance(data_source, str) or not data_source.startswith(DATA_SOURCE) or not extra_info:
        raise ValueError(f"not an rlvr-world row (data_source {data_source!r}); export with `rlvr-world export verl`")
    domain = data_source[len(DATA_SOURCE):]
    return float(score(domain, extra_info["reward"], solution_str, extra_info["transition"])[0])
