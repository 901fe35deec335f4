"""Prefill and decode for the sampler: a generic decoder for any HF causal LM, and a fast one for Llama-style models.

Axes: B prompts, G samples per prompt, n live rows (at most B*G), P prompt
length (left padded), t tokens generated so far, H query heads, K key/value
heads, D head dim, V vocabulary.

`HFDecoder` prefills the B prompts with the model's own forward pass and
drives it with a growing `DynamicCache`: it works for every causal LM.
`LlamaDecoder` runs the model itself, prefill and decode, on the model's own
modules and weights (norms, rotary embedding, projections), for the Llama /
Qwen2 / Qwen3 / Mistral layout; a LoRA adapter is folded into the packed
weights (`kernels.effective_linear`). Both advance every live row by one token per
`step`; `keep` drops finished rows. What the Llama decoder does differently
(against the generic one: `bench/speed.py`, results/bench.json):

* every linear map runs through oneDNN on a weight packed once per `sample`
  call (`kernels.PackedLinear`), the maps sharing an input (q/k/v, gate/up)
  fused into one;
* the prompts are prefilled a few at a time (`PREFILL_TOKENS`), so a chunk's
  activations stay in cache instead of faulting in fresh pages;
* the prompt's keys and values are stored once per prompt, not once per sample:
  the G samples of a group read them together, as a (G·H/K)-query matmul, so a
  step reads the prompt cache B times instead of B*G times;
* the generated keys and values live in buffers allocated once, so no step
  copies the cache to append one token, and attention reads only the filled part.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from .kernels import PackedLinear

FAST_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def with_cache(model, cache) -> dict:
    """The keyword arguments that hand `model`'s forward pass a KV cache: transformers 5.x names it `cache`
    (and warns about the older `past_key_values`, to be dropped in 5.40), earlier versions `past_key_values`."""
    return {_cache_name(type(getattr(model, "get_base_model", lambda: model)())): cache, "use_cache": True}


@functools.cache
def _cache_name(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward pass returned, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, autocast=None):
    """Run left-padded prompts (B, P) through the model once: (last-position logits (B, V), KV cache,
    positions (B, P))."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    with (autocast or contextlib.nullcontext)():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                    logits_to_keep=1, **with_cache(model, DynamicCache()))
    return out.logits[:, -1, :], returned_cache(out), positions


class HFDecoder:
    """Decode through the model's forward pass with a dynamic KV cache (any causal LM)."""

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, group_size: int, max_new_tokens: int,
                 autocast=None):
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
                             **with_cache(self.model, self.cache))
        self.cache = returned_cache(out)
        self.next_pos = self.next_pos + 1
        return out.logits[:, -1, :]

    def keep(self, live: torch.Tensor) -> None:
        """Keep only the live rows (indices into the current rows)."""
        self.cache.batch_select_indices(live)
        self.mask, self.next_pos = self.mask[live], self.next_pos[live]


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
    """Prefill and decode written out for Llama-style models: shared prompt cache, preallocated generated cache."""

    PREFILL_TOKENS = 2048  # prompt tokens per prefill chunk: whole prompts, so its activations stay in cache

    def __init__(self, model, ids: torch.Tensor, mask: torch.Tensor, group_size: int, max_new_tokens: int,
                 autocast=None):
        self.model, self.ctx, self.G = model, autocast or contextlib.nullcontext, group_size
        cfg, m = model.config, model.model
        self.H = cfg.num_attention_heads
        self.K = getattr(cfg, "num_key_value_heads", None) or self.H
        self.D = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.scale = m.layers[0].self_attn.scaling
        B, P = ids.shape
        N = B * group_size
        # every linear map of the model, the ones sharing an input fused, packed for N rows (a copy, for this call);
        # packed only when the context runs fp32 (a factory for fp32 is a no-op context, not None)
        with self.ctx():
            pack = not torch.is_autocast_enabled(ids.device.type)
        self.qkv = [PackedLinear.of(l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj, rows=N,
                                    pack_weight=pack) for l in m.layers]
        self.out = [PackedLinear.of(l.self_attn.o_proj, rows=N, pack_weight=pack) for l in m.layers]
        self.gate_up = [PackedLinear.of(l.mlp.gate_proj, l.mlp.up_proj, rows=N, pack_weight=pack) for l in m.layers]
        self.down = [PackedLinear.of(l.mlp.down_proj, rows=N, pack_weight=pack) for l in m.layers]
        self.head = PackedLinear.of(model.lm_head, rows=N, pack_weight=pack)
        # prefill: causal attention over the real prompt tokens; a padding query sees itself only (no empty softmax)
        valid = mask.bool()  # (B, P)
        causal = torch.ones((P, P), dtype=torch.bool, device=ids.device).tril()
        prefill_mask = (causal & valid[:, None, None, :]) | torch.eye(P, dtype=torch.bool, device=ids.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
        # per layer: (B, K, D, P) keys, stored transposed, and (B, K, P, D) values; filled chunk by chunk
        self.prompt_k, self.prompt_v = [[] for _ in m.layers], [[] for _ in m.layers]
        last = []
        chunk = max(1, self.PREFILL_TOKENS // P)  # prompts at a time
        for rows in (slice(c, c + chunk) for c in range(0, B, chunk)):
            self.prefill_mask = prefill_mask[rows]
            last.append(self.layers(ids[rows], positions[rows], self.prefill_attend)[:, -1])  # (b, hidden)
        self.prompt_k, self.prompt_v = [torch.cat(x) for x in self.prompt_k], [torch.cat(x) for x in self.prompt_v]
        with self.ctx():
            first = self.head(rms_norm(torch.cat(last), m.norm))  # (B, V)
        self.first_logits = first.repeat_interleave(group_size, dim=0)  # (N, V)
        dtype = self.prompt_v[0].dtype
        # additive padding mask over the prompt keys (B, 1, 1, P)
        self.prompt_bias = torch.zeros((B, 1, 1, P), dtype=dtype, device=ids.device).masked_fill(
            ~valid[:, None, None, :], float("-inf"))
        # generated cache, once per row, written in place: (N, K, T, D) keys and values
        shape = (N, self.K, max_new_tokens, self.D)
        self.gen_k = [torch.zeros(shape, dtype=dtype, device=ids.device) for _ in m.layers]
        self.gen_v = [torch.zeros(shape, dtype=dtype, device=ids.device) for _ in m.layers]
        self.rows = torch.arange(N, device=ids.device)  # (n,) each live row's slot among the B*G
        self.next_pos = positions[:, -1].repeat_interleave(group_size) + 1  # (n,)
        self.t = 0

    def layers(self, tok: torch.Tensor, pos: torch.Tensor, attend) -> torch.Tensor:
        """Run (n, L) tokens at positions (n, L) through every layer; `attend(i, q, k, v)` is layer i's attention."""
        m = self.model.model
        (n, L), H, K, D = tok.shape, self.H, self.K, self.D
        with self.ctx():
            h = m.embed_tokens(tok)  # (n, L, hidden)
            cos, sin = (x[:, :, None, :] for x in m.rotary_emb(h, pos))  # (n, L, 1, D)
            for i, layer in enumerate(m.layers):
                att = layer.self_attn
                qkv = self.qkv[i](rms_norm(h, layer.input_layernorm))  # (n, L, (H+2K)*D)
                qk = qkv[..., : (H + K) * D].view(n, L, H + K, D)
                if hasattr(att, "q_norm"):  # Qwen3 normalises each head before the rotation
                    qk = torch.cat([att.q_norm(qk[:, :, :H]), att.k_norm(qk[:, :, H:])], dim=2)
                qk = rotate(qk, cos, sin).transpose(1, 2)  # (n, H+K, L, D) queries and keys in one go
                v = qkv[..., (H + K) * D:].view(n, L, K, D).transpose(1, 2)  # (n, K, L, D)
                h = h + self.out[i](attend(i, qk[:, :H], qk[:, H:], v))
                gate, up = self.gate_up[i](rms_norm(h, layer.post_attention_layernorm)).chunk(2, dim=-1)
                h = h + self.down[i](layer.mlp.act_fn(gate) * up)
        return h

    def prefill_attend(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Layer i attention over the prompts; q (B, H, P, D), k and v (B, K, P, D) -> (B, P, H*D). Keeps k and v."""
        self.prompt_k[i].append(k.transpose(-1, -2).contiguous())
        self.prompt_v[i].append(v.contiguous())
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.prefill_mask, scale=self.scale,
                                           enable_gqa=self.K != self.H)  # (B, H, P, D)
        return o.transpose(1, 2).flatten(2)

    def decode_attend(self, i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Layer i attention for one new token per live row; q (n, H, 1, D), k and v (n, K, 1, D) -> (n, 1, H*D)."""
        n, K, D, t = q.size(0), self.K, self.D, self.t
        rep = self.H // K
        self.gen_k[i][:n, :, t, :] = k[:, :, 0, :]
        self.gen_v[i][:n, :, t, :] = v[:, :, 0, :]
        q = q.reshape(n, K, rep, D) * self.scale  # (n, K, rep, D) query heads grouped by their key head
        # scores against the prompt: the samples of a group in one matmul with their prompt's keys
        s_prompt = self.to_groups(q) @ self.prompt_k[i]  # (B, K, G*rep, P)
        s_prompt = self.to_rows(s_prompt + self.prompt_bias)  # (n, K, rep, P)
        # scores against the row's own generated tokens
        s_gen = q @ self.gen_k[i][:n, :, : t + 1, :].transpose(-1, -2)  # (n, K, rep, t+1)
        P = s_prompt.size(-1)
        p = torch.cat([s_prompt, s_gen], dim=-1).softmax(dim=-1)  # (n, K, rep, P+t+1)
        o = self.to_rows(self.to_groups(p[..., :P]) @ self.prompt_v[i])  # (n, K, rep, D)
        o = o + p[..., P:] @ self.gen_v[i][:n, :, : t + 1, :]
        return o.reshape(n, 1, self.H * D)

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
        h = self.layers(tok[:, None], self.next_pos[:, None], self.decode_attend)  # (n, 1, hidden)
        with self.ctx():
            logits = self.head(rms_norm(h[:, 0], self.model.model.norm))  # (n, V)
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
    if hasattr(model, "get_base_model"):  # a peft model: the decoder reads its adapted layers (`PackedLinear.of`)
        model = model.get_base_model()
    cls = LlamaDecoder if fast and supports_fast_decode(model) else HFDecoder
    return cls(model, ids, mask, group_size, max_new_tokens, autocast)
