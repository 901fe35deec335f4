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

from ..device import MemoryTrimmer
from ..progress import advance, bar
from . import distributed as dist
from .checkpoint import GracefulStop, MetricLog, check_finite, load_trainer_state, save_model
from .domain import Example
from .models import merged
from .options import MLEConfig
from .sequences import make_batch, token_logprobs




def plan_batches(lengths: Sequence[int], batch_tokens: int, epochs: float, seed: int) -> list[list[int]]:
    """Index batches for every step: per epoch, shuffle, sort chunks by length, cut by token budget."""
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
    start = 0
    state = load_trainer_state(out_dir / "checkpoint") if resume else None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
    main = dist.is_main()
    log = MetricLog(out_dir / "metrics.jsonl", resume_step=start if state else -1,
                    tensorboard=tensorboard) if main else None
    model.train()
    pad_id = tokenizer.pad_token_id
    trim = MemoryTrimmer()  # the resident set stays near its size after warm-up
    with bar("MLE", total=len(plan), disable=not main) as progress, GracefulStop() as stop:
        advance(progress, start)
        for step in range(start, len(plan)):
            t0 = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, len(plan), cfg)
            loss, n_tok = mle_loss(model, [examples[i] for i in dist.share(plan[step])], pad_id, autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t_sync = dist.sum_gradients(params)
            loss = dist.total(loss.detach())
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            check_finite("MLE", step + 1, f"lower --mle.lr (now {cfg.lr:g})",
                         loss=loss.item(), gradient_norm=gnorm.item())
            opt.step()
            trim()
            row = {"step": step + 1, "loss": loss.item(), "lr": opt.param_groups[0]["lr"], "grad_norm": gnorm.item(),
                   "target_tokens": n_tok, "step_s": time.perf_counter() - t0}
            if dist.active():
                row["sync_s"] = t_sync
            stopping = dist.any_rank(stop.requested)  # every process stops at the same step
            if main:
                log.write(row)
            advance(progress, 1, f"loss {row['loss']:.3f}")
            if stopping or ((step + 1) % cfg.save_every == 0 and step + 1 < len(plan)):
                if main:
                    save_model(out_dir / "checkpoint", model, tokenizer,
                               {"optimizer": opt.state_dict(), "step": step + 1})
                dist.barrier()
            if stopping:
                raise KeyboardInterrupt
    model = merged(model)  # a LoRA adapter folded in: the final model is a plain HF model
    if main:
        save_model(out_dir / "model", model, tokenizer)
    dist.barrier()
    return model
