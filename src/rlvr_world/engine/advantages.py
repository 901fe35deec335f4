"""Advantage estimators: a registry of pure functions, chosen by name (`RLConfig.estimator`).

Axes: B prompts, G samples per prompt, N = B*G responses (prompt-major), T response tokens.

Each estimator takes the whole batch's `Scores` and the RL options and returns
the advantages, (N,) one per response or (N, T) one per token, and its
metrics as a dict with namespaced keys. The math is in `grpo`; an estimator
says which of it a choice of options runs, on which of the scores. A new
estimator is a function decorated with `register`:

    @register("mine")
    def mine(s: Scores, cfg: RLConfig) -> tuple[torch.Tensor, dict[str, float]]:
        ...

(verl's `core_algos.register_adv_est`, with the batch as a typed dataclass.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .grpo import decision_advantages, group_advantages, token_advantages
from .options import RLConfig

KINDS = ("change", "no_change", "invalid")  # `Domain.answer_kind`, coded by position


@dataclass
class Scores:
    """What a batch of responses earned: all an estimator reads. Rows are prompt-major, G per prompt."""

    rewards: torch.Tensor  # (N,) the task reward
    group_size: int  # G
    decided: torch.Tensor  # (N, 3) long, from `rl.decisions`: decision position, `KINDS` index, stratum
    lengths: torch.Tensor  # (N,) long: response tokens
    baseline: torch.Tensor | None = None  # (B,) the greedy response's reward (`RLConfig.baseline = "greedy"`)
    token_rewards: torch.Tensor | None = None  # (N, T) the reward split over tokens (`RLConfig.credit = "token"`)
    token_mask: torch.Tensor | None = None  # (N, T) 1 on the tokens that may earn credit
    token_baseline: torch.Tensor | None = None  # (B, T) the greedy response's token rewards


Estimator = Callable[[Scores, RLConfig], "tuple[torch.Tensor, dict[str, float]]"]
ESTIMATORS: dict[str, Estimator] = {}


def register(name: str) -> Callable[[Estimator], Estimator]:
    def add(fn: Estimator) -> Estimator:
        ESTIMATORS[name] = fn
        return fn

    return add


@register("grpo")
def grpo(s: Scores, cfg: RLConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """(N,): each reward against its group's mean, or the greedy response's reward where there is one (ReMax)."""
    return group_advantages(s.rewards, s.group_size, baseline=s.baseline, scale=cfg.scale)


@register("decision")
def decision(s: Scores, cfg: RLConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """(N, T): the decision ("nothing changes" or not) credited by whether it was right, an attempted change's
    content by its reward against the group's other attempts (`grpo.decision_advantages`); T the longest response.
    With `cfg.balance_strata` the two strata's decision credit is balanced; with `cfg.balance_axis` the batch's
    decisions have no net pull toward or away from the trivial answer."""
    at, kind, unchanged = s.decided.unbind(1)  # (N,) each
    attempt = (kind == KINDS.index("change")) | (at < 0)  # (N,) no trivial answer: every response attempts
    return decision_advantages(s.rewards, at, attempt, decided_right(s.decided), s.group_size,
                               max(1, int(s.lengths.max())), scale=cfg.scale,
                               unchanged=unchanged.bool() if cfg.balance_strata else None,
                               trivial=kind == KINDS.index("no_change") if cfg.balance_axis else None)


@register("token")
def token(s: Scores, cfg: RLConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """(N, T): each token's reward against the same position's in its group, or in the greedy response
    (`grpo.token_advantages`). Its metrics include the response-level ones of `grpo`, for comparison."""
    if s.token_rewards is None or s.token_mask is None:
        raise ValueError("the token estimator needs token rewards (RLConfig.credit = 'token')")
    _, metrics = group_advantages(s.rewards, s.group_size, baseline=s.baseline, scale=cfg.scale)
    adv, token_metrics = token_advantages(s.token_rewards, s.token_mask, s.group_size, scale=cfg.scale,
                                          baseline=s.token_baseline)  # (N, T)
    return adv, {**metrics, **token_metrics}


def decided_right(decided: torch.Tensor) -> torch.Tensor:
    """(N,) bool: no change predicted where nothing changes, a readable change where something does."""
    kind, unchanged = decided[:, 1], decided[:, 2].bool()
    return torch.where(unchanged, kind == KINDS.index("no_change"), kind == KINDS.index("change"))


def decision_metrics(decided: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
    """Per stratum (nothing changes: "unchanged", else "changed"), the share of sampled answers of no change and
    their mean advantage (at their first token), from `decided` (N, 3) and the advantages (N,) or (N, T):
    a collapse toward "nothing changes" shows here first."""
    at, kind, unchanged = decided.unbind(1)  # (N,) each
    trivial = kind == KINDS.index("no_change")
    out = {}
    for name, members in (("unchanged", unchanged.bool() & (at >= 0)), ("changed", ~unchanged.bool() & (at >= 0))):
        if not members.any():
            continue
        chosen = members & trivial
        out[f"decision/{name}/trivial_frac"] = chosen.float().sum().item() / members.sum().item()
        if chosen.any():
            a = adv if adv.dim() == 1 else adv[:, 0]  # (N,) the first token carries the decision's credit
            out[f"decision/{name}/trivial_adv"] = a[chosen].mean().item()
    return out
