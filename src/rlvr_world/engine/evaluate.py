"""Greedy evaluation of a model on a domain's examples, broken down by group."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..progress import advance, bar
from .domain import Domain, Example
from .sampler import sample


@dataclass
class EvalResult:
    """Mean metric in percent, overall and per group, with every example's outcome.

    `parts` holds the means (in percent) of the reward parts the domain reports
    besides its metric (`domain.reported_parts`, e.g. precision and recall).
    """

    overall: float
    groups: dict[str, float]
    counts: dict[str, int]
    n: int
    records: list[dict] = field(default_factory=list, repr=False)
    parts: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {**{g: round(v, 2) for g, v in sorted(self.groups.items())}, "overall": round(self.overall, 2),
                **{k: round(v, 2) for k, v in self.parts.items()}, "n": self.n, "counts": self.counts}


def length_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Index batches of similar prompt length (less padding), longest first."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].prompt_ids))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    domain: Domain,
    examples: Sequence[Example],
    *,
    metric: str | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 512,
    autocast=None,
    description: str = "eval",
    show_progress: bool = True,
) -> EvalResult:
    metric = metric or domain.metric
    reported = getattr(domain, "reported_parts", ())
    model.eval()
    values: list[float] = [0.0] * len(examples)
    records: list[dict] = [{}] * len(examples)
    with bar(description, total=len(examples), disable=not show_progress) as progress:
        for idx in length_batches(examples, batch_size):
            out = sample(model, [examples[i].prompt_ids for i in idx], eos_id=domain.eos_id, pad_id=domain.pad_id,
                         max_new_tokens=max_new_tokens, temperature=0.0, autocast=autocast)
            for i, response in zip(idx, out.responses()):
                value, parts = domain.score(metric, response, examples[i])
                values[i] = value
                records[i] = {"index": i, "group": examples[i].group, "value": value,
                              "response": domain.decode(response),
                              **{k: v for k, v in parts.items() if k == "why" or k in reported}}
            advance(progress, len(idx))
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for e, v in zip(examples, values):
        sums[e.group] += v
        counts[e.group] += 1
    groups = {g: 100.0 * sums[g] / counts[g] for g in sums}
    overall = 100.0 * sum(values) / max(1, len(values))
    parts = {k: 100.0 * sum(r.get(k, 0.0) for r in records) / max(1, len(records)) for k in reported}
    return EvalResult(overall, groups, dict(counts), len(examples), records, parts)
