"""RLVR post-training with GRPO, top to bottom: sample -> decode -> reward -> advantage -> loss -> step.

Axes: B prompts per step, G samples per prompt, N = B*G responses, T response tokens.

One optimisation epoch per batch: the whole batch of N responses makes one
optimizer step (gradients accumulated over micro-batches, token-mean over the
whole batch), so the sampling policy is the policy being updated and the old
log-probabilities are the current ones, detached: the clipped ratio starts
at 1 and no second forward pass is spent on them. The frozen starting model
supplies the reference log-probabilities for the k3 KL term. Micro-batches
hold whole groups, and each group's prompt goes through the model once, not G
times (`sequences.group_logprobs`).

A step, in the order of this file: `draw` samples (this process's share of
the prompts), `score` decodes and rewards, `gathered` joins every process's
scores into the whole batch's, the estimator `RLConfig.estimator` names
(`advantages.ESTIMATORS`) credits them, and `update` takes the step;
`collect` is the first four. `loop.TrainingLoop` does resuming, logging,
stopping and saving, as for MLE.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..device import generator
from . import distributed as dist
from .advantages import ESTIMATORS, KINDS, Scores, decision_metrics
from .checkpoint import check_finite
from .domain import Domain, Example
from .grpo import grpo_loss
from .loop import TrainingLoop
from .models import has_lora, reference_mode
from .options import RLConfig
from .sampler import sample, uniforms
from .sequences import group_logprobs, micro_batches


@dataclass
class Samples:
    """What one process sampled for its share of a step's prompts (B here: this process's prompts)."""

    examples: list[Example]  # (B,) the prompts' examples
    responses: list[list[int]]  # (N,) G responses per prompt, prompt-major
    finished: torch.Tensor  # (N,) bool: ended with the end-of-sequence id
    greedy: list[list[int]] | None  # (B,) each prompt's greedy response, for the greedy baseline; else None


@dataclass
class Rollouts:
    """One step's sampled responses, what they earned and their credit: what `update` trains on."""

    prompts: list[list[int]]  # (N,) prompt ids, each prompt repeated G times
    responses: list[list[int]]  # (N,) response ids
    rewards: torch.Tensor  # (N,)
    advantages: torch.Tensor  # (N,), or (N, T) with token credit or the decision split
    parts: dict[str, float]  # the whole batch's metrics: mean reward components, advantage statistics
    finished: torch.Tensor  # (N,) bool
    given: list[list[int] | None] | None = None  # (N,) per response, the `Example.loss_mask` (0: given, no loss)
    decision_at: torch.Tensor | None = None  # (N,) each response's last decision token (-1: no trivial answer)


def prompt_batches(n: int, per_step: int, steps: int, seed: int) -> list[list[int]]:
    """Prompt indices for every step: consecutive slices of seeded shuffles."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < per_step * steps:
        perm = list(range(n))
        rng.shuffle(perm)
        order.extend(perm)
    return [order[s * per_step: (s + 1) * per_step] for s in range(steps)]


def collect(policy, domain: Domain, examples: Sequence[Example], cfg: RLConfig, step: int, autocast) -> Rollouts:
    """Sample, score and credit one step's batch of `examples` (B prompts): this process's rollouts.

    Under data parallelism this process samples only its share of the
    prompts, with its rows of the whole batch's uniforms, so the responses are
    the ones a single process would sample; the scores are then gathered, so
    the advantages and the logged means are the whole batch's.
    """
    G = cfg.group_size
    drawn = draw(policy, domain, examples, cfg, step, autocast)  # ---- sample
    mine, parts = score(domain, drawn, cfg)  # ---- decode + reward
    everyone, parts, finished, rows = gathered(mine, parts, drawn.finished)  # the whole batch, in rank order
    adv, metrics = ESTIMATORS[cfg.estimator](everyone, cfg)  # ---- advantage: (N_all,) or (N_all, T)
    metrics = {**logged(everyone, parts, finished), **metrics, **decision_metrics(everyone.decided, adv)}
    given = [e.loss_mask for e in drawn.examples for _ in range(G)]
    return Rollouts([e.prompt_ids for e in drawn.examples for _ in range(G)], drawn.responses, mine.rewards,
                    adv[rows], metrics, drawn.finished, given if any(given) else None, everyone.decided[rows, 0])


# ---- sample --------------------------------------------------------------------------------------------------------
def draw(policy, domain: Domain, examples: Sequence[Example], cfg: RLConfig, step: int, autocast) -> Samples:
    """G samples of each of this process's prompts (whole groups), drawn with its rows of the whole batch's (B*G, T)
    uniforms; with the greedy baseline, each prompt's greedy response too."""
    G = cfg.group_size
    own = dist.share(range(len(examples)))  # this process's prompts
    draws = uniforms((len(examples) * G, cfg.max_new_tokens), generator(cfg.seed * 1_000_003 + step),
                     next(policy.parameters()).device)  # (B*G, T) the whole batch's
    draws = draws.view(-1, G, draws.size(1))[own].reshape(-1, draws.size(1))  # (N, T) this process's rows
    examples = [examples[b] for b in own]
    prompts = [e.prompt_ids for e in examples]
    common = dict(eos_id=domain.eos_id, pad_id=domain.pad_id, max_new_tokens=cfg.max_new_tokens, autocast=autocast,
                  forced=[e.forced() for e in examples], suppress=domain.suppressed_ids)
    out = sample(policy, prompts, num_samples=G, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                 draws=draws, **common)
    greedy = sample(policy, prompts, temperature=0.0, **common).responses() if cfg.baseline == "greedy" else None
    return Samples(examples, out.responses(), out.finished, greedy)


# ---- decode + reward -----------------------------------------------------------------------------------------------
def score(domain: Domain, drawn: Samples, cfg: RLConfig) -> tuple[Scores, list[dict]]:
    """This process's `Scores` and each response's reward parts; per token too with token credit."""
    G, responses, greedy = cfg.group_size, drawn.responses, drawn.greedy
    examples = [e for e in drawn.examples for _ in range(G)]  # (N,) each response's example
    scored = [domain.score(cfg.reward, r, e) for r, e in zip(responses, examples)]
    s = Scores(rewards=torch.tensor([v for v, _ in scored]), group_size=G,
               decided=decisions(domain, responses, examples), lengths=torch.tensor([len(r) for r in responses]))
    if greedy is not None:
        s.baseline = torch.tensor([domain.score(cfg.reward, r, e)[0] for r, e in zip(greedy, drawn.examples)])  # (B,)
    if cfg.credit == "token":
        T = max(1, max(map(len, responses + (greedy or []))))
        given = [e.loss_mask for e in examples]
        s.token_rewards, s.token_mask = token_table([domain.token_rewards(cfg.reward, r, e)
                                                     for r, e in zip(responses, examples)], T)  # (N, T) each
        s.token_mask *= trained_mask(responses, given, T)
        if greedy is not None:
            s.token_baseline = token_table([domain.token_rewards(cfg.reward, r, e)
                                            for r, e in zip(greedy, drawn.examples)], T)[0]  # (B, T)
            s.token_mask *= departs(responses, greedy, G, T)  # a token the greedy response shares earns no credit
    return s, [p for _, p in scored]


def decisions(domain: Domain, responses: Sequence[Sequence[int]], examples: Sequence[Example]) -> torch.Tensor:
    """(N, 3) long, per response to its example: where its decision token is (for a readable change its first token
    that departs from the trivial answer, else its last; -1: the example has no trivial answer), what it predicts
    (`KINDS`), and whether the trivial answer is the target (the example's stratum: nothing changes)."""
    out = torch.zeros((len(responses), 3), dtype=torch.long)
    for i, (r, e) in enumerate(zip(responses, examples)):
        t = e.trivial_ids
        if t is None:
            out[i, 0] = -1
            continue
        kind = domain.answer_kind(r, e)
        n = min(len(r), len(t))
        part = next((j for j in range(n) if r[j] != t[j]), n)  # the first token that departs from it
        at = min(part, len(r) - 1) if kind == "change" else len(r) - 1  # all of any other answer is its decision
        out[i] = torch.tensor([max(at, 0), KINDS.index(kind), e.target_ids == t])
    return out


def token_table(rows: Sequence[Sequence[float]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-token values -> (values, mask), both (len(rows), width), zero-padded."""
    values, mask = torch.zeros((len(rows), width)), torch.zeros((len(rows), width))
    for i, v in enumerate(rows):
        values[i, : len(v)] = torch.as_tensor(v, dtype=torch.float)
        mask[i, : len(v)] = 1.0
    return values, mask


def departs(responses: Sequence[Sequence[int]], greedy: Sequence[Sequence[int]], group_size: int, width: int
            ) -> torch.Tensor:
    """(N, width) float: 1 where a response's token differs from (or outruns) its prompt's greedy response."""
    out = torch.ones((len(responses), width))
    for i, r in enumerate(responses):
        g = greedy[i // group_size]
        n = min(len(r), len(g))
        out[i, :n] = (torch.as_tensor(r[:n]) != torch.as_tensor(g[:n])).float()
    return out


def trained_mask(responses: Sequence[Sequence[int]], given: Sequence[list[int] | None] | None, width: int
                 ) -> torch.Tensor:
    """(N, width) float: 1 on sampled response tokens, 0 on padding and on tokens the data gave."""
    mask = torch.zeros((len(responses), width))
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
        if given and given[i] is not None:
            m = torch.as_tensor(given[i][: len(r)], dtype=torch.float)
            mask[i, : len(m)] *= m
    return mask


# ---- the whole batch -----------------------------------------------------------------------------------------------
def gathered(mine: Scores, parts: list[dict], finished: torch.Tensor
             ) -> tuple[Scores, list[dict], torch.Tensor, slice]:
    """Every process's scores, reward parts and finished flags, in rank order, and where this process's rows are."""
    everyone = dist.gather((mine, parts, finished))
    first = sum(len(s.rewards) for s, _, _ in everyone[: dist.rank()])
    return (joined([s for s, _, _ in everyone]), [p for _, ps, _ in everyone for p in ps],
            torch.cat([f for _, _, f in everyone]), slice(first, first + len(mine.rewards)))


def joined(shares: Sequence[Scores]) -> Scores:
    """One `Scores` of several processes' rows: tensors concatenated along the rows, token tables zero-padded to
    the widest."""
    def cat(name: str) -> torch.Tensor | None:
        tables = [getattr(s, name) for s in shares]
        if tables[0] is None:
            return None
        if tables[0].dim() == 1:
            return torch.cat(tables)
        width = max(t.size(1) for t in tables)
        return torch.cat([torch.nn.functional.pad(t, (0, width - t.size(1))) for t in tables])

    return Scores(group_size=shares[0].group_size,
                  **{f.name: cat(f.name) for f in fields(Scores) if f.name != "group_size"})


def logged(everyone: Scores, parts: Sequence[dict], finished: torch.Tensor) -> dict[str, float]:
    """The whole batch's mean reward and reward parts, greedy reward, response length and share finished."""
    out = {"reward/mean": everyone.rewards.mean().item(), **mean_parts(parts),
           "response/length": everyone.lengths.sum().item() / len(everyone.lengths),
           "response/finished_frac": finished.float().mean().item()}
    if everyone.baseline is not None:
        out["reward/greedy"] = everyone.baseline.mean().item()
    return out


def mean_parts(parts: Sequence[dict]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for p in parts:
        for k, v in p.items():
            if isinstance(v, (int, float)):
                sums[k] += float(v)
                counts[k] += 1
    return {f"reward/{k}": sums[k] / counts[k] for k in sums}


# ---- loss + step ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def reference_logprobs(policy, ref, prompts, responses, pad_id: int, autocast) -> torch.Tensor:
    """Log-probs (n, T) under the starting model: `ref`, or for a LoRA policy (ref None) the policy, adapter off."""
    with contextlib.nullcontext() if ref is not None else reference_mode(policy):
        return group_logprobs(ref if ref is not None else policy, prompts, responses, pad_id, autocast=autocast)[0]


def update(policy, ref, opt, ro: Rollouts, cfg: RLConfig, pad_id: int, autocast, step: int = 0) -> dict[str, float]:
    """One optimizer step on the rollouts: the clipped loss with the KL term, token-mean over the whole batch."""
    G = cfg.group_size
    # token-mean over the whole batch: every process's responses
    width = max(1, max(map(len, ro.responses)))
    total_tokens = int(dist.total_float(trained_mask(ro.responses, ro.given, width).sum()))
    metrics: dict[str, float] = defaultdict(float)
    ent_sum = 0.0
    opt.zero_grad(set_to_none=True)
    for rows in micro_batches(len(ro.responses), max(G, cfg.micro_batch_size // G * G)):  # whole groups
        prompts, responses = ro.prompts[rows][::G], ro.responses[rows]
        ref_logp = (reference_logprobs(policy, ref, prompts, responses, pad_id, autocast)
                    if cfg.kl_coef or cfg.decision_kl else None)
        logp, entropy, mask = group_logprobs(policy, prompts, responses, pad_id, autocast=autocast, with_entropy=True)
        if ro.given is not None:
            mask = trained_mask(responses, ro.given[rows], mask.size(1)).to(mask.device)  # (n, T)
        adv = ro.advantages[rows] if ro.advantages.dim() == 1 else ro.advantages[rows, : mask.size(1)]  # (n,) / (n, T)
        loss, m = grpo_loss(logp, logp.detach(), ref_logp, adv.to(logp.device), mask,
                            clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef, num_tokens=max(1, total_tokens),
                            decision_kl=cfg.decision_kl,
                            decision_at=None if ro.decision_at is None else ro.decision_at[rows])
        loss.backward()
        for k, v in m.items():
            metrics[k] += v
        ent_sum += float((entropy * mask).sum())
    params = [p for p in policy.parameters() if p.requires_grad]
    t_sync = dist.sum_gradients(params)
    metrics = dist.summed(metrics)  # the whole batch's loss terms
    ent_sum = dist.total_float(ent_sum)
    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    check_finite("RL", step, f"lower --rl.lr (now {cfg.lr:g})",
                 loss=metrics.get("loss/total", 0.0), gradient_norm=gnorm.item())
    opt.step()
    metrics["policy/entropy"] = ent_sum / max(1, total_tokens)
    metrics["policy/grad_norm"] = gnorm.item()
    if dist.active():
        metrics["time/sync_s"] = t_sync
    return dict(metrics)


# ---- the loop ------------------------------------------------------------------------------------------------------
def train_rl(
    policy: torch.nn.Module,
    tokenizer,
    domain: Domain,
    examples: Sequence[Example],
    cfg: RLConfig,
    out_dir: Path,
    *,
    autocast=None,
    resume: bool = False,
    evaluate_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    tensorboard: bool = False,
) -> torch.nn.Module:
    """GRPO from the policy's current weights, which also become the frozen KL reference.

    A LoRA policy (`models.with_lora`) trains its adapter only; its reference
    is itself with the adapter off (no second copy); it checkpoints the
    adapter and is returned and saved merged.
    """
    if cfg.credit == "token" and not domain.token_credit:
        raise ValueError(f"the {domain.name} domain cannot split its reward over tokens: use credit 'sequence'")
    if cfg.prompts_per_step < dist.world():
        raise ValueError(f"--rl.prompts-per-step {cfg.prompts_per_step} is below the {dist.world()} processes: "
                         "each process needs at least one prompt group")
    ref = None if has_lora(policy) else copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    loop = TrainingLoop("RLVR", out_dir, policy, tokenizer, opt, cfg.steps, cfg.save_every, resume=resume,
                        tensorboard=tensorboard, carried={} if ref is None else {"reference": ref})
    plan = prompt_batches(len(examples), cfg.prompts_per_step, cfg.steps, cfg.seed)
    if loop.start == 0 and evaluate_fn and cfg.eval_every:
        loop.write({"step": 0, **evaluate_fn(policy)})

    def step(i: int) -> dict:
        t0 = time.perf_counter()
        policy.eval()  # no dropout in rollouts or in the update
        ro = collect(policy, domain, [examples[j] for j in plan[i]], cfg, i, autocast)
        t_sample = time.perf_counter() - t0
        m = update(policy, ref, opt, ro, cfg, domain.pad_id, autocast, i + 1)
        row = {"step": i + 1, **ro.parts, **m, "time/sample_s": t_sample, "time/step_s": time.perf_counter() - t0}
        if evaluate_fn and cfg.eval_every and (i + 1) % cfg.eval_every == 0:
            row.update(evaluate_fn(policy))
        return row

    loop.run(step, lambda row: f"reward {row['reward/mean']:.3f}  kl {row.get('loss/kl', 0):.4f}")
    return loop.finish()
