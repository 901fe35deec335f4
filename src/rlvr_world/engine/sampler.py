"""Batched autoregressive sampling with a KV cache, for any Hugging Face causal LM.

Axes: B prompts, G samples per prompt, N = B*G rows, P prompt length (left
padded), T generated tokens, V vocabulary.

The sampler knows only token ids: prompts in, response ids out. Each prompt is
prefilled once, so a group of G samples costs one prefill; the decode step is
a `decoders` object (a fast hand-written one for Llama-style models, the
model's own forward for any other). A row that emits the end-of-sequence id
is padded from then on; once a quarter of the live rows are done they are
dropped from the batch and the cache (`compact`), so short answers stop paying
for long ones. Positions a prompt's `forced` list gives (e.g. the real action
tokens between generated video frames) are written in instead of sampled, so
one call interleaves generated and given tokens. Ids in `suppress` are never
sampled (their logits are -inf before the draw), e.g. a video model's
non-visual ids where only frame codes may go. The uniforms behind the draws
are a table with one per (row, position), drawn before decoding (or given as
`draws`), so what a row samples does not depend on which rows share its batch
or when finished rows are dropped: a process that samples some of a batch's
groups draws exactly what one process sampling the whole batch would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .decoders import make_decoder


@dataclass
class SampleOutput:
    """Generated responses, one row per (prompt, sample), prompt-major order."""

    tokens: torch.Tensor  # (N, T) generated ids, pad after the end
    lengths: torch.Tensor  # (N,) response length, end-of-sequence id included when emitted
    finished: torch.Tensor  # (N,) bool: the row emitted end-of-sequence
    logits: torch.Tensor | None = None  # (N, T, V) raw logits per step, when asked for

    def responses(self) -> list[list[int]]:
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad prompts into (B, P) ids and a (B, P) attention mask."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids, mask


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one token per row from (N, V) logits; temperature 0 means greedy.

    `u` (N,): the uniforms in [0, 1) for the draws; by default drawn from `generator`.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)  # (N,)
    logits = logits.float() / temperature
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (N, V)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (N, V)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    # inverse-CDF draw: one uniform per row (torch.multinomial draws one exponential per vocabulary entry)
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (N, V)
    if u is None:
        u = uniforms((cdf.size(0),), generator, cdf.device)
    u = u.to(cdf.device).view(-1, 1) * cdf[:, -1:]  # (N, 1)
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.size(-1) - 1)  # (N,)


def uniforms(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniforms in [0, 1), drawn where the generator lives (a CPU generator serves a GPU model with the CPU's draws)."""
    at = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=at).to(device)


def forced_ids(forced, B: int, G: int, max_new_tokens: int) -> torch.Tensor:
    """Per-prompt forced ids -> (B*G, T') long, -1 where the model samples (T' = 0 when nothing is forced)."""
    if not forced or all(f is None for f in forced):
        return torch.full((B * G, 0), -1, dtype=torch.long)
    if len(forced) != B:
        raise ValueError(f"forced has {len(forced)} entries for {B} prompts")
    width = min(max_new_tokens, max(len(f or ()) for f in forced))
    out = torch.full((B, width), -1, dtype=torch.long)
    for b, f in enumerate(forced):
        if f:
            out[b, : min(width, len(f))] = torch.as_tensor(list(f)[:width], dtype=torch.long)
    return out.repeat_interleave(G, dim=0)  # (N, T')


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    return_logits: bool = False,
    autocast=None,
    compact: bool = True,
    fast: bool = True,
    forced: Sequence[Sequence[int] | None] | None = None,
    suppress: Sequence[int] | None = None,
    pick: Callable[[torch.Tensor], torch.Tensor] | None = None,
    draws: torch.Tensor | None = None,
) -> SampleOutput:
    """Sample `num_samples` responses per prompt (temperature 0: greedy).

    `forced[b][t]`, when >= 0, is the id written at response position t of
    prompt b's samples instead of a sampled one (-1, or a list that has ended:
    sample as usual). `suppress`: ids never sampled (forced ids are still
    written). `return_logits` gives the raw logits, before suppression.
    `autocast` is an optional context-manager factory for mixed precision;
    `compact=False` keeps finished rows in the batch and `fast=False` uses the
    generic decoder even for Llama-style models (both for comparison).
    `pick`, when given, chooses each free token from the (n, V) logits after
    suppression instead of the temperature draw (e.g. a decision rule).
    `draws` (N, >= max_new_tokens): the uniforms for each row's draws, e.g. its
    rows of a larger batch's table; by default drawn here from `generator`.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id)  # (B, P)
    decoder = make_decoder(model, ids.to(device), mask.to(device), num_samples, max_new_tokens, autocast, fast=fast)
    logits = decoder.first_logits  # (N, V)
    N = logits.size(0)
    given = forced_ids(forced, len(prompts), num_samples, max_new_tokens).to(device)  # (N, T) -1 where free
    banned = torch.as_tensor(list(suppress or ()), dtype=torch.long, device=device)  # (S,)
    if draws is None and temperature > 0 and pick is None:
        draws = uniforms((N, max_new_tokens), generator, device)  # (N, T) one per row and position
    rows = torch.arange(N, device=device)  # (n,) each live row's index in the output
    done = torch.zeros(N, dtype=torch.bool, device=device)  # (n,)
    tokens, step_logits = [], []
    for _ in range(max_new_tokens):
        if return_logits:
            all_rows = logits.new_zeros((N, logits.size(-1)), dtype=torch.float)  # (N, V) rows that left stay 0
            step_logits.append(all_rows.index_copy(0, rows, logits.float()))
        if banned.numel():
            logits = logits.index_fill(-1, banned, float("-inf"))  # (n, V)
        u = draws[rows, len(tokens)] if draws is not None else None  # (n,)
        tok = pick(logits) if pick else sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                                    u=u)  # (n,)
        if given.size(1) > len(tokens):
            g = given[rows, len(tokens)]  # (n,)
            tok = torch.where(g >= 0, g, tok)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens.append(torch.full((N,), pad_id, dtype=tok.dtype, device=device).index_copy(0, rows, tok))
        done = done | (tok == eos_id)
        if bool(done.all()) or len(tokens) == max_new_tokens:
            break
        if compact and 4 * int(done.sum()) >= done.numel():
            live = (~done).nonzero().squeeze(-1)  # (n',)
            decoder.keep(live)
            rows, tok, done = rows[live], tok[live], done[live]
        logits = decoder.step(tok)  # (n, V)
    gen = torch.stack(tokens, dim=1) if tokens else torch.zeros((N, 0), dtype=torch.long, device=device)  # (N, T)
    is_eos = gen == eos_id  # (N, T)
    finished = is_eos.any(dim=1)
    first_eos = torch.where(finished, is_eos.float().argmax(dim=1),
                            torch.full_like(finished, gen.size(1), dtype=torch.long))
    lengths = torch.where(finished, first_eos + 1, first_eos)
    return SampleOutput(
        tokens=gen.cpu(), lengths=lengths.cpu(), finished=finished.cpu(),
        logits=torch.stack(step_logits, dim=1).cpu() if return_logits else None,
    )
