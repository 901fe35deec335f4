"""Prompt + response batches and their per-token log-probabilities.

Axes: N rows, P prompt length (left padded), T response length (right padded), V vocab.

Layout: every row is [pad.. prompt | response ..pad], so all responses start
at column P and the logits that predict them are columns P-1 .. P+T-2. Only
those T columns go through the output head (`logits_to_keep`), which skips
the head's cost on every prompt token.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch

from .sampler import left_pad


@dataclass
class TokenBatch:
    """A padded prompt+response batch."""

    input_ids: torch.Tensor  # (N, P+T)
    attention_mask: torch.Tensor  # (N, P+T)
    position_ids: torch.Tensor  # (N, P+T)
    response_ids: torch.Tensor  # (N, T)
    response_mask: torch.Tensor  # (N, T) 1 on real response tokens

    @property
    def num_tokens(self) -> int:
        return int(self.response_mask.sum())


def make_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> TokenBatch:
    p_ids, p_mask = left_pad(prompts, pad_id)  # (N, P)
    T = max(1, max(len(r) for r in responses))
    r_ids = torch.full((len(responses), T), pad_id, dtype=torch.long)  # (N, T)
    r_mask = torch.zeros((len(responses), T), dtype=torch.long)
    for i, r in enumerate(responses):
        r_ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        r_mask[i, : len(r)] = 1
    ids = torch.cat([p_ids, r_ids], dim=1)  # (N, P+T)
    mask = torch.cat([p_mask, r_mask], dim=1)  # (N, P+T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (N, P+T)
    return TokenBatch(ids, mask, positions, r_ids, r_mask)


def token_logprobs(
    model: torch.nn.Module, batch: TokenBatch, *, autocast=None, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of each response token (N, T), and optionally the policy entropy (N, T)."""
    device = next(model.parameters()).device
    T = batch.response_ids.size(1)
    with (autocast or contextlib.nullcontext)():
        out = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            position_ids=batch.position_ids.to(device),
            logits_to_keep=T + 1,
            use_cache=False,
        )
    logits = out.logits[:, :-1, :].float()  # (N, T, V)
    logp_all = torch.log_softmax(logits, dim=-1)  # (N, T, V)
    logp = logp_all.gather(-1, batch.response_ids.to(device)[..., None]).squeeze(-1)  # (N, T)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N, T)
    return logp, entropy


def micro_batches(n: int, size: int) -> list[slice]:
    """Slices that cover range(n) in chunks of at most `size`."""
    return [slice(i, min(i + size, n)) for i in range(0, n, max(1, size))]


def select(batch: TokenBatch, rows: slice | torch.Tensor) -> TokenBatch:
    """Rows of a batch, trimmed to the columns they use."""
    b = TokenBatch(*(t[rows] for t in (batch.input_ids, batch.attention_mask, batch.position_ids, batch.response_ids, batch.response_mask)))
    P = batch.input_ids.size(1) - batch.response_ids.size(1)
    keep_left = int((b.attention_mask[:, :P].sum(0) > 0).nonzero().min()) if P else 0
    T = max(1, int(b.response_mask.sum(1).max()))
    return TokenBatch(
        b.input_ids[:, keep_left: P + T], b.attention_mask[:, keep_left: P + T],
        b.position_ids[:, keep_left: P + T], b.response_ids[:, :T], b.response_mask[:, :T],
    )
