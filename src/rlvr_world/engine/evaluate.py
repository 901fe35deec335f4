"""Greedy evaluation of a model on a domain's examples, broken down by group."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..progress import advance, bar, skip
from . import distributed as dist
from .domain import Domain, Example
from .sampler import sample


@dataclass
class EvalResult:
    """Mean metric, overall and per group, with every example's outcome.

    `parts` holds the means of the reward parts the domain reports besides its
    metric (`domain.reported_parts`, e.g. precision and recall), `group_parts`
    the same per group. Means are in percent unless the domain says otherwise
    (`domain.metric_scale`, e.g. 1 for PSNR in dB).
    """

    overall: float
    groups: dict[str, float]
    counts: dict[str, int]
    n: int
    records: list[dict] = field(default_factory=list, repr=False)
    parts: dict[str, float] = field(default_factory=dict)
    group_parts: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict:
        return {**{g: round(v, 4) for g, v in sorted(self.groups.items())}, "overall": round(self.overall, 4),
                **{k: round(v, 4) for k, v in self.parts.items()}, "n": self.n, "counts": self.counts,
                "group_parts": {g: {k: round(v, 4) for k, v in p.items()} for g, p in sorted(self.group_parts.items())}}


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
    pick: Callable[[torch.Tensor], torch.Tensor] | None = None,
    partial: Path | None = None,
) -> EvalResult:
    """Greedy responses scored by `metric` (or responses chosen by `pick`, see `sample`).

    `partial`: a JSON-lines file that gets each finished batch's records, and
    whose records an interrupted evaluation of the same examples reuses (the
    caller removes it once the whole result is saved). Under `torchrun` each
    process answers every world()-th batch, writes its records to a partial
    file of its own (`NAME.RANK.jsonl` beside `partial`, for ranks above 0),
    and every process gets the whole result.
    """
    metric = metric or domain.metric
    reported = domain.reported_parts
    model.eval()
    records: list[dict] = [{}] * len(examples)
    done: dict[int, dict] = {}
    for path in partial_files(partial) if partial else ():
        done.update(read_partial(path, len(examples)))
    for i, r in done.items():
        records[i] = r
    mine = dist.share(length_batches(examples, batch_size))  # batches as one process forms them: the same answers
    if partial is not None and dist.rank():
        partial = partial.with_name(f"{partial.stem}.{dist.rank()}.jsonl")
    with bar(description, total=sum(map(len, mine)), disable=not show_progress or not dist.is_main()) as progress:
        skip(progress, sum(i in done for idx in mine for i in idx))
        for idx in mine:
            if all(i in done for i in idx):
                continue
            out = sample(model, [examples[i].prompt_ids for i in idx], eos_id=domain.eos_id, pad_id=domain.pad_id,
                         max_new_tokens=max_new_tokens, temperature=0.0, autocast=autocast,
                         forced=[examples[i].forced() for i in idx], suppress=domain.suppressed_ids,
                         pick=pick)
            for i, response in zip(idx, out.responses()):
                value, parts = domain.score(metric, response, examples[i])
                records[i] = {"index": i, "group": examples[i].group, "value": value,
                              "response": domain.decode(response),
                              **({"answer": domain.answer_kind(response, examples[i])}
                                 if examples[i].trivial_ids is not None else {}),
                              **{k: v for k, v in parts.items() if k == "why" or k in reported}}
            if partial is not None:
                with partial.open("a") as f:
                    f.write("".join(json.dumps(records[i]) + "\n" for i in idx))
            advance(progress, len(idx) - sum(i in done for i in idx))
    if dist.world() > 1:
        for share in dist.gather({i: records[i] for idx in mine for i in idx}):
            for i, r in share.items():
                records[i] = r
    return result_of(records, reported, domain.metric_scale)


def result_of(records: Sequence[dict], reported: Sequence[str], scale: float) -> EvalResult:
    """The means, overall and per group, of scored records (each with its `group` and `value`)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        sums[r["group"]] += r["value"]
        counts[r["group"]] += 1
    groups = {g: scale * sums[g] / counts[g] for g in sums}
    overall = scale * sum(r["value"] for r in records) / max(1, len(records))
    parts = part_means(records, reported, scale)
    group_parts = {g: part_means([r for r in records if r["group"] == g], reported, scale) for g in counts}
    return EvalResult(overall, groups, dict(counts), len(records), list(records), parts, group_parts)


def trivial_eval(domain: Domain, examples: Sequence[Example]) -> dict | None:
    """The trivial predictor ("nothing changes") scored like a model on the same examples, its records included;
    None for a domain without one."""
    if any(e.trivial_ids is None for e in examples):
        return None
    records = [{"index": i, "group": e.group, "value": domain.score(domain.metric, e.trivial_ids, e)[0]}
               for i, e in enumerate(examples)]
    return {**result_of(records, (), domain.metric_scale).summary(), "records": records}


def partial_files(partial: Path) -> list[Path]:
    """An evaluation's partial records: `partial` and, from a multi-process run, each other process's file."""
    return [partial, *sorted(partial.parent.glob(partial.stem + ".*.jsonl"))]


def read_partial(path: Path | None, n: int) -> dict[int, dict]:
    """Records an interrupted evaluation left in `path`, by example index (a torn last line is dropped)."""
    out: dict[int, dict] = {}
    if path is None or not path.is_file():
        return out
    text = path.read_text()
    if not text.endswith("\n"):  # a torn last line: cut, so that the next batch starts a line of its own
        text = text[: text.rfind("\n") + 1]
        path.write_text(text)
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and isinstance(r.get("index"), int) and 0 <= r["index"] < n and "value" in r:
            out[r["index"]] = r
    return out


def part_means(records: Sequence[dict], keys: Sequence[str], scale: float) -> dict[str, float]:
    """Mean of each reported part over the records that have it (times `scale`)."""
    out = {}
    for k in keys:
        vals = [r[k] for r in records if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = scale * sum(vals) / len(vals)
    return out


def answer_breakdown(records: Sequence[dict]) -> dict[str, dict[str, int]]:
    """Per group, what the answers of an evaluation were (its records' `answer`, `Domain.answer_kind`): how many
    attempted a change (and how many of those were exactly right), said "nothing changes", or could not be read;
    empty where no record has an answer kind (examples without a trivial answer)."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        if "answer" not in r:
            continue
        kind = {"change": "attempted"}.get(r["answer"], r["answer"])
        counts = out.setdefault(r["group"], {"n": 0, "attempted": 0, "attempted_right": 0, "no_change": 0,
                                             "invalid": 0})
        counts["n"] += 1
        counts[kind] += 1
        counts["attempted_right"] += int(kind == "attempted" and r["value"] >= 1)
    return dict(sorted(out.items()))


@torch.no_grad()
def trivial_logprobs(model: torch.nn.Module, examples: Sequence[Example], pad_id: int, *, batch_size: int = 16,
                     autocast=None) -> list[float | None]:
    """log P(the trivial answer | prompt) under the model, per example (None where the example has none)."""
    from .sequences import group_logprobs

    model.eval()
    out: list[float | None] = [None] * len(examples)
    have = [i for i, e in enumerate(examples) if e.trivial_ids is not None]
    for idx in length_batches([examples[i] for i in have], batch_size):
        rows = [have[j] for j in idx]
        logp, _, mask = group_logprobs(model, [examples[i].prompt_ids for i in rows],
                                       [examples[i].trivial_ids for i in rows], pad_id, autocast=autocast)
        for i, v in zip(rows, (logp.float() * mask).sum(1).tolist()):  # (n,) summed over the answer's tokens
            out[i] = v
    return out


def decision_summary(examples: Sequence[Example], logps: Sequence[float | None]) -> dict:
    """How the model's probability of the trivial answer separates the examples it is right for ("unchanged")
    from the others ("changed"): the mean probability in each, and the AUC (0.5: no better than chance, 1: every
    unchanged example above every changed one)."""
    from scipy.stats import mannwhitneyu

    strata: dict[str, list[float]] = {"unchanged": [], "changed": []}
    for e, lp in zip(examples, logps):
        if lp is not None:
            strata["unchanged" if e.target_ids == e.trivial_ids else "changed"].append(math.exp(lp))
    out: dict = {"p_trivial": {k: round(sum(v) / len(v), 4) for k, v in strata.items() if v}}
    if all(strata.values()):
        u = mannwhitneyu(strata["unchanged"], strata["changed"]).statistic
        out["auc"] = round(float(u) / (len(strata["unchanged"]) * len(strata["changed"])), 4)
    return out


# ---- which examples: fixed random subsets (`--eval-limit`, `eval --limit`, the RL curve's) ----------------------

def subsample_indices(examples, n: int, seed: int) -> list[int]:
    """Positions of a fixed random subset of n examples, in order (all when n >= len)."""
    if n >= len(examples):
        return list(range(len(examples)))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(len(examples), generator=g)[:n].sort().values.tolist()


def balanced_indices(examples, n: int, seed: int) -> list[int]:
    """Positions of a fixed random subset of about n examples, n / (number of groups) from each group."""
    by_group: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_group.setdefault(e.group, []).append(i)
    per = n // max(1, len(by_group))
    out = []
    for k, (_, idx) in enumerate(sorted(by_group.items())):
        out += [idx[j] for j in subsample_indices(idx, per, seed + k)]
    return sorted(out)


def subsample(examples, n: int, seed: int):
    """A fixed random subset of n examples (all when n >= len)."""
    return [examples[i] for i in subsample_indices(examples, n, seed)]
