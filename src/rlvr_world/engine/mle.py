"""Maximum-likelihood training: teacher-forced next-token loss on the target tokens only
(less any the data gives, `Example.loss_mask`).

Batches are formed by token budget from length-sorted chunks of a seeded
shuffle, so padding stays small; the whole batch plan is a function of the
seed, which makes `--resume` continue exactly where a run stopped.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Sequence

import torch

from . import distributed as dist
from .checkpoint import check_finite
from .domain import Example
from .loop import TrainingLoop
from .options import MLEConfig
from .sequences import make_batch, token_logprobs


def plan_batches(lengths: Sequence[int], batch_tokens: int, epochs: float, seed: int) -> list[list[int]]:
    """Index batches for every step: per epoch, shuffle, sort chunks by length, cut by token budget (none for 0
    epochs)."""
    if epochs == 0:
        return []
    rng = random.Random(seed)
    n_epochs = math.ceil(epochs)
    plan: list[list[int]] = []
    for _ in range(n_epochs):
        order = list(range(len(lengths)))
        rng.shuffle(order)
        batches = []
        chunk = 64 * max(1, batch_tokens // max(1, max(lengths)))
        for s in range(0, len(order), chunk):
            part = sorted(order[s: s + chunk], key=lambda i: lengths[i])
            cur: list[int] = []
            for i in part:
                if cur and (len(cur) + 1) * lengths[i] > batch_tokens:  # sorted: i is the longest
                    batches.append(cur)
                    cur = []
                cur.append(i)
            if cur:
                batches.append(cur)
        rng.shuffle(batches)
        plan.extend(batches)
    return plan[: max(1, round(len(plan) * epochs / n_epochs))]


def lr_at(step: int, total: int, cfg: MLEConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def mle_loss(model, examples: Sequence[Example], pad_id: int, autocast=None) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the target tokens, and how many there were.

    Under data parallelism `examples` is this process's share of the batch, the
    mean is over the whole batch's target tokens (so the processes' gradients
    sum to the whole batch's), and the count is the whole batch's.
    """
    if not examples:  # a batch smaller than the number of processes leaves some with nothing
        n = int(dist.total(torch.tensor(0.0)))
        return next(model.parameters()).sum() * 0.0, n
    batch = make_batch([e.prompt_ids for e in examples], [e.target_ids for e in examples], pad_id)
    logp, _ = token_logprobs(model, batch, autocast=autocast)  # (N, T)
    mask = batch.response_mask.float() * loss_masks(examples, batch.response_mask.size(1))  # (N, T)
    mask = mask.to(logp.device)
    n = dist.total(mask.sum())  # the global batch's target tokens
    return -(logp * mask).sum() / n.clamp(min=1), int(n)


def loss_masks(examples: Sequence[Example], width: int) -> torch.Tensor:
    """(N, width) float: 0 on target tokens the data gives (`Example.loss_mask`), 1 elsewhere."""
    out = torch.ones((len(examples), width))
    for i, e in enumerate(examples):
        if e.loss_mask is not None:
            out[i, : len(e.loss_mask)] = torch.as_tensor(e.loss_mask[:width], dtype=torch.float)
    return out


def train_mle(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    cfg: MLEConfig,
    out_dir: Path,
    *,
    autocast=None,
    resume: bool = False,
    tensorboard: bool = False,
) -> torch.nn.Module:
    """Train in place; checkpoints go to out_dir/checkpoint, the final model to out_dir/model.

    A LoRA model (`models.with_lora`) trains its adapter only, checkpoints the
    adapter, and is returned and saved merged. Under `torchrun` each process
    trains on its share of every batch and process 0 writes (`distributed`).
    """
    lengths = [len(e.prompt_ids) + len(e.target_ids) for e in examples]
    plan = plan_batches(lengths, cfg.batch_tokens, cfg.epochs, cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]  # with LoRA: the adapter only
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    loop = TrainingLoop("MLE", out_dir, model, tokenizer, opt, len(plan), cfg.save_every, resume=resume,
                        tensorboard=tensorboard)
    model.train()

    def step(i: int) -> dict:
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(i, len(plan), cfg)
        loss, n_tok = mle_loss(model, [examples[j] for j in dist.share(plan[i])], tokenizer.pad_token_id, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t_sync = dist.sum_gradients(params)
        loss = dist.total(loss.detach())
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        check_finite("MLE", i + 1, f"lower --mle.lr (now {cfg.lr:g})", loss=loss.item(), gradient_norm=gnorm.item())
        opt.step()
        row = {"step": i + 1, "loss": loss.item(), "lr": opt.param_groups[0]["lr"], "grad_norm": gnorm.item(),
               "target_tokens": n_tok, "step_s": time.perf_counter() - t0}
        return {**row, "sync_s": t_sync} if dist.active() else row

    loop.run(step, lambda row: f"loss {row['loss']:.3f}")
    return loop.finish()
