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

from .decoders import prefill, with_cache
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


def right_pad(responses: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad responses into (N, T) ids and a (N, T) mask; T is at least 1."""
    T = max(1, max(len(r) for r in responses))
    ids = torch.full((len(responses), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(responses), T), dtype=torch.long)
    for i, r in enumerate(responses):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def make_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int) -> TokenBatch:
    p_ids, p_mask = left_pad(prompts, pad_id)  # (N, P)
    r_ids, r_mask = right_pad(responses, pad_id)  # (N, T)
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
    return gather_logprobs(out.logits[:, :-1, :], batch.response_ids.to(device), with_entropy)


def gather_logprobs(logits: torch.Tensor, ids: torch.Tensor, with_entropy: bool
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities (N, T) of `ids` under (N, T, V) logits, and optionally the entropy (N, T)."""
    logp_all = torch.log_softmax(logits.float(), dim=-1)  # (N, T, V)
    logp = logp_all.gather(-1, ids[..., None]).squeeze(-1)  # (N, T)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N, T)
    return logp, entropy


def micro_batches(n: int, size: int) -> list[slice]:
    """Slices that cover range(n) in chunks of at most `size`."""
    return [slice(i, min(i + size, n)) for i in range(0, n, max(1, size))]


def group_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int,
    *,
    autocast=None,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Log-probabilities (N, T) of responses that come in groups sharing a prompt, the prompt run once per group.

    `prompts` holds B distinct prompts, `responses` the N = B*G responses,
    prompt-major. Each prompt goes through the model once and its keys and
    values are repeated for its G responses, which then run as a continuation;
    gradients flow through both passes. Equal to `token_logprobs` on the
    concatenated rows (a test checks it), at a fraction of the cost when
    prompts are long and G is large. Returns (logp, entropy or None, response mask).
    """
    device = next(model.parameters()).device
    G = len(responses) // len(prompts)
    p_ids, p_mask = (t.to(device) for t in left_pad(prompts, pad_id))  # (B, P)
    r_ids, r_mask = (t.to(device) for t in right_pad(responses, pad_id))  # (N, T)
    T = r_ids.size(1)
    first, cache, _ = prefill(model, p_ids, p_mask, autocast)  # (B, V) predicts each response's first token
    logits = [first[:, None, :].repeat_interleave(G, dim=0)]  # (N, 1, V)
    if T > 1:
        cache.batch_repeat_interleave(G)
        mask = torch.cat([p_mask.repeat_interleave(G, dim=0), torch.ones_like(r_ids[:, 1:])], dim=1)  # (N, P+T-1)
        positions = p_mask.sum(-1).repeat_interleave(G)[:, None] + torch.arange(T - 1, device=device)  # (N, T-1)
        with (autocast or contextlib.nullcontext)():
            out = model(input_ids=r_ids[:, :-1], attention_mask=mask, position_ids=positions,
                        **with_cache(model, cache))
        logits.append(out.logits)  # (N, T-1, V)
    logp, entropy = gather_logprobs(torch.cat(logits, dim=1), r_ids, with_entropy)
    return logp, entropy, r_mask
