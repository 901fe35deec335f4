"""One-token decode steps for the sampler: a generic one for any Hugging Face causal LM, and a fast one for Llama-style models.

Axes: B prompts, G samples per prompt, n live rows (at most B*G), P prompt
length (left padded), t tokens generated so far, H query heads, K key/value
heads, D head dim, V vocabulary.

Both decoders prefill the B prompts once with the model's own forward pass and
then advance every live row by one token per `step`; `keep` drops finished rows.

`HFDecoder` drives the model's forward with a growing `DynamicCache`: it works
for every causal LM. `LlamaDecoder` runs the decode step itself on the model's
own modules (norms, projections, rotary embedding, MLP), for the Llama / Qwen2 /
Qwen3 / Mistral layout. What it does differently (the whole decoder against
the generic one: `bench/speed.py`, results/bench.json):

* the prompt's keys and values are stored once per prompt, not once per sample:
  the G samples of a group read them together, as a (G·H/K)-query matmul, so a
  step reads the prompt cache B times instead of B*G times;
* the generated keys and values live in buffers allocated once, so no step
  copies the cache to append one token, and attention reads only the filled part;
* fewer, larger ops per layer: q/k/v and gate/up each as one matmul (their
  weights concatenated once per `sample` call), queries and keys rotated
  together, RMSNorm as torch's fused op.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import DynamicCache

FAST_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, autocast=None):
    """Run left-padded prompts (B, P) through the model once: (last-position logits (B, V), KV cache, positions (B, P))."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    with (autocast or contextlib.nullcontext)():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                    past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :], out.past_key_values, positions


class HFDecoder:
    """Decode through the model's forward pass with a dynamic KV cache (any causal LM)."""

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, group_size: int, max_new_tokens: int, autocast=None):
        self.model, self.ctx = model, autocast or contextlib.nullcontext
        logits, self.cache, positions = prefill(model, ids, mask, autocast)
        self.first_logits = logits.repeat_interleave(group_size, dim=0)  # (N, V)
        if group_size > 1:
            self.cache.batch_repeat_interleave(group_size)
        self.mask = mask.repeat_interleave(group_size, dim=0)  # (n, P+t)
        self.next_pos = positions[:, -1].repeat_interleave(group_size) + 1  # (n,)

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row (n,); return the next-token logits (n, V)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.size(0), 1))], dim=1)
        with self.ctx():
            out = self.model(input_ids=tok[:, None], attention_mask=self.mask, position_ids=self.next_pos[:, None],
                             past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]

    def keep(self, live: torch.Tensor) -> None:
        """Keep only the live rows (indices into the current rows)."""
        self.cache.batch_select_indices(live)
        self.mask, self.next_pos = self.mask[live], self.next_pos[live]


def fuse(*linears) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight and bias of one linear map that computes several sharing their input, side by side."""
    bias = None if linears[0].bias is None else torch.cat([m.bias for m in linears])
    return torch.cat([m.weight for m in linears]), bias


def rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """A Llama-style RMSNorm module's function as one fused op."""
    return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (the half-split layout of Llama, Qwen and Mistral): x * cos + rotate_half(x) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def supports_fast_decode(model) -> bool:
    """True for the Llama-style layouts `LlamaDecoder` knows, without sliding-window attention."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in FAST_MODEL_TYPES:
        return False
    if getattr(config, "use_sliding_window", False) or getattr(config, "layer_types", None) and any(
        t != "full_attention" for t in config.layer_types
    ):
        return False
    return hasattr(model, "model") and hasattr(model.model, "layers") and hasattr(model, "lm_head")


class LlamaDecoder:
    """Decode step written out for Llama-style models: shared prompt cache, preallocated generated cache."""

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, group_size: int, max_new_tokens: int, autocast=None):
        self.model, self.ctx, self.G = model, autocast or contextlib.nullcontext, group_size
        cfg = model.config
        self.H = cfg.num_attention_heads
        self.K = getattr(cfg, "num_key_value_heads", None) or self.H
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.scale = model.model.layers[0].self_attn.scaling
        B, P = ids.shape
        N = B * group_size
        logits, cache, positions = prefill(model, ids, mask, autocast)
        self.first_logits = logits.repeat_interleave(group_size, dim=0)  # (N, V)
        # prompt cache, once per prompt: (B, K, P, D) keys and values
        self.prompt_k = [layer.keys for layer in cache.layers]
        self.prompt_v = [layer.values for layer in cache.layers]
        dtype = self.prompt_v[0].dtype
        # additive padding mask over the prompt keys (B, 1, 1, P)
        self.prompt_bias = torch.zeros((B, 1, 1, P), dtype=dtype, device=ids.device).masked_fill(
            ~mask.bool()[:, None, None, :], float("-inf"))
        # generated cache, once per row, written in place: (N, K, T, D) keys and values
        shape = (N, self.K, max_new_tokens, self.D)
        self.gen_k = [torch.zeros(shape, dtype=dtype, device=ids.device) for _ in cache.layers]
        self.gen_v = [torch.zeros(shape, dtype=dtype, device=ids.device) for _ in cache.layers]
        self.rows = torch.arange(N, device=ids.device)  # (n,) each live row's slot among the B*G
        self.next_pos = positions[:, -1].repeat_interleave(group_size) + 1  # (n,)
        self.t = 0
        # the projections that share an input, as one matrix each (a copy of those weights, for this call)
        self.qkv = [fuse(l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj) for l in model.model.layers]
        self.gate_up = [fuse(l.mlp.gate_proj, l.mlp.up_proj) for l in model.model.layers]

    def attend(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Layer i attention for one new token per live row; q (n, H, 1, D), k and v (n, K, 1, D) -> (n, H*D)."""
        n, K, D, t = q.size(0), self.K, self.D, self.t
        rep = self.H // K
        self.gen_k[i][:n, :, t, :] = k[:, :, 0, :]
        self.gen_v[i][:n, :, t, :] = v[:, :, 0, :]
        q = q.reshape(n, K, rep, D) * self.scale  # (n, K, rep, D) query heads grouped by their key head
        # scores against the prompt: the samples of a group in one matmul with their prompt's keys
        s_prompt = self.to_groups(q) @ self.prompt_k[i].transpose(-1, -2)  # (B, K, G*rep, P)
        s_prompt = self.to_rows(s_prompt + self.prompt_bias)  # (n, K, rep, P)
        # scores against the row's own generated tokens
        s_gen = q @ self.gen_k[i][:n, :, : t + 1, :].transpose(-1, -2)  # (n, K, rep, t+1)
        P = s_prompt.size(-1)
        p = torch.cat([s_prompt, s_gen], dim=-1).softmax(dim=-1)  # (n, K, rep, P+t+1)
        o = self.to_rows(self.to_groups(p[..., :P]) @ self.prompt_v[i])  # (n, K, rep, D)
        o = o + p[..., P:] @ self.gen_v[i][:n, :, : t + 1, :]
        return o.reshape(n, self.H * D)

    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row (n, K, rep, X) -> per-prompt (B, K, G*rep, X); slots of finished rows hold zeros."""
        B, G = self.prompt_v[0].size(0), self.G
        if x.size(0) < B * G:
            x = x.new_zeros((B * G, *x.shape[1:])).index_copy(0, self.rows, x)
        if G == 1:
            return x
        return x.view(B, G, *x.shape[1:]).transpose(1, 2).reshape(B, x.size(1), -1, x.size(-1))

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Per-prompt (B, K, G*rep, X) -> per-row (n, K, rep, X), the inverse of `to_groups`."""
        B, G, K = x.size(0), self.G, x.size(1)
        if G > 1:
            x = x.view(B, K, G, -1, x.size(-1)).transpose(1, 2).reshape(B * G, K, -1, x.size(-1))
        return x if self.rows.numel() == B * G else x[self.rows]

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row (n,); return the next-token logits (n, V)."""
        m = self.model.model
        n, H, K, D = tok.size(0), self.H, self.K, self.D
        with self.ctx():
            h = m.embed_tokens(tok)  # (n, hidden)
            cos, sin = m.rotary_emb(h, self.next_pos[:, None])  # (n, 1, D)
            for i, layer in enumerate(m.layers):
                att = layer.self_attn
                qkv = F.linear(rms_norm(h, layer.input_layernorm), *self.qkv[i])  # (n, (H+2K)*D)
                if hasattr(att, "q_norm"):  # Qwen3 normalises each head before the rotation
                    qk = torch.cat([att.q_norm(qkv[:, : H * D].view(n, H, D)),
                                    att.k_norm(qkv[:, H * D: (H + K) * D].view(n, K, D))], dim=1)
                else:
                    qk = qkv[:, : (H + K) * D].view(n, H + K, D)
                qk = rotate(qk, cos, sin)  # (n, H+K, D) queries and keys in one go
                q, k = qk[:, :H, None, :], qk[:, H:, None, :]  # (n, H, 1, D), (n, K, 1, D)
                v = qkv[:, (H + K) * D:].view(n, K, 1, D)
                h = h + att.o_proj(self.attend(i, q, k, v))
                gate, up = F.linear(rms_norm(h, layer.post_attention_layernorm), *self.gate_up[i]).chunk(2, dim=-1)
                h = h + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
            logits = self.model.lm_head(rms_norm(h, m.norm))  # (n, V)
        self.t += 1
        self.next_pos = self.next_pos + 1
        return logits

    def keep(self, live: torch.Tensor) -> None:
        """Keep only the live rows (indices into the current rows) and the prompts they belong to."""
        slots = self.rows[live]  # (n',) slots in the B*G layout
        prompts, owner = torch.unique(slots // self.G, return_inverse=True)  # prompts with a live row
        if prompts.numel() < self.prompt_v[0].size(0):
            self.prompt_k = [x[prompts] for x in self.prompt_k]
            self.prompt_v = [x[prompts] for x in self.prompt_v]
            self.prompt_bias = self.prompt_bias[prompts]
        self.rows = owner * self.G + slots % self.G
        self.next_pos = self.next_pos[live]
        for i in range(len(self.gen_k)):  # the generated cache stays packed at the front, in row order
            self.gen_k[i][: live.numel()] = self.gen_k[i][live]
            self.gen_v[i][: live.numel()] = self.gen_v[i][live]


def make_decoder(model, ids, mask, group_size: int, max_new_tokens: int, autocast=None, fast: bool = True):
    """The fast decoder where the model's layout allows it, the generic one elsewhere."""
    cls = LlamaDecoder if fast and supports_fast_decode(model) else HFDecoder
    return cls(model, ids, mask, group_size, max_new_tokens, autocast)
