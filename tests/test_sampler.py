"""The KV-cache sampler against plain forward passes, and its sampling rules."""

import pytest
import torch

from rlvr_world.device import generator
from rlvr_world.engine.sampler import sample, sample_next
from rlvr_world.engine.sequences import make_batch, token_logprobs

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]


def test_cached_logits_match_a_no_cache_forward(tiny_lm):
    out = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=6, num_samples=2, temperature=1.0,
                 generator=generator(3), return_logits=True)
    for row in range(out.tokens.size(0)):
        prompt = PROMPTS[row // 2]
        n = int(out.lengths[row])
        seq = torch.tensor([prompt + out.tokens[row, :n].tolist()])
        with torch.no_grad():
            full = tiny_lm(input_ids=seq).logits[0]  # (L, V) no padding, no cache
        want = full[len(prompt) - 1: len(prompt) - 1 + n]
        assert torch.allclose(out.logits[row, :n], want, atol=1e-4), row


def test_token_logprobs_match_the_sampler(tiny_lm):
    out = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=5, generator=generator(0), return_logits=True)
    responses = out.responses()
    batch = make_batch(PROMPTS, responses, pad_id=0)
    with torch.no_grad():
        logp, _ = token_logprobs(tiny_lm, batch)
    for i, r in enumerate(responses):
        want = torch.log_softmax(out.logits[i, : len(r)], -1).gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
        assert torch.allclose(logp[i, : len(r)], want, atol=1e-4)


def test_greedy_is_deterministic_and_equals_argmax(tiny_lm):
    a = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=8, temperature=0.0, return_logits=True)
    b = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=8, temperature=0.0)
    assert torch.equal(a.tokens, b.tokens)
    for i in range(3):
        n = int(a.lengths[i])
        assert torch.equal(a.tokens[i, :n], a.logits[i, :n].argmax(-1))


def test_seeds_reproduce_and_differ(tiny_lm):
    kw = dict(eos_id=2, pad_id=0, max_new_tokens=10, num_samples=4)
    a = sample(tiny_lm, PROMPTS, generator=generator(7), **kw)
    b = sample(tiny_lm, PROMPTS, generator=generator(7), **kw)
    c = sample(tiny_lm, PROMPTS, generator=generator(8), **kw)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_rows_stop_at_eos_and_pad_after():
    class Chain(torch.nn.Module):
        """Next token is a fixed function of the last one: 6 -> 3 -> 4 -> 2 (end), and 7 -> 5 -> 5 -> ..."""

        NEXT = {6: 3, 3: 4, 4: 2, 7: 5, 5: 5}

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, past_key_values=None, **kw):
            from types import SimpleNamespace

            logits = torch.full((input_ids.size(0), input_ids.size(1), 8), -1e9)
            for i, last in enumerate(input_ids[:, -1].tolist()):
                logits[i, -1, self.NEXT.get(last, 0)] = 0
            return SimpleNamespace(logits=logits, past_key_values=past_key_values)

    for compact in (True, False):  # finished rows dropped from the batch, or kept and padded
        out = sample(Chain(), [[1, 6], [7]], eos_id=2, pad_id=0, max_new_tokens=6, temperature=0.0, compact=compact)
        assert out.tokens.tolist() == [[3, 4, 2, 0, 0, 0], [5, 5, 5, 5, 5, 5]]
        assert out.lengths.tolist() == [3, 6]
        assert out.finished.tolist() == [True, False]
    assert out.responses()[0] == [3, 4, 2]


def test_top_k_and_top_p_keep_only_allowed_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = generator(0)
    k = sample_next(logits, top_k=2, generator=g)
    assert set(k.tolist()) == {0, 1}
    p = sample_next(logits, top_p=0.7, generator=g)  # 0.5 + 0.3 reaches 0.7
    assert set(p.tolist()) == {0, 1}
    p = sample_next(logits, top_p=0.4, generator=g)
    assert set(p.tolist()) == {0}


def test_dropping_finished_rows_changes_nothing(tiny_lm):
    # this random model greedily repeats a prompt's last token: the three rows ending in 10 end at once
    prompts = PROMPTS + [[16, 10], [18], [19, 20, 21, 10]]
    eos = 10
    kw = dict(eos_id=eos, pad_id=0, max_new_tokens=10, temperature=0.0, return_logits=True)
    a, b = sample(tiny_lm, prompts, compact=True, **kw), sample(tiny_lm, prompts, compact=False, **kw)
    assert 2 <= int(a.finished.sum()) < len(prompts)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    for i, n in enumerate(a.lengths.tolist()):
        assert torch.allclose(a.logits[i, :n], b.logits[i, :n], atol=1e-4)


def _model(kind: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(1)
    shape = dict(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=128, pad_token_id=0, eos_token_id=2)
    if kind == "llama-gqa":  # 4 query heads share 2 key/value heads
        return LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **shape)).eval()
    return Qwen3ForCausalLM(Qwen3Config(num_key_value_heads=2, head_dim=16, **shape)).eval()  # per-head q/k norms


@pytest.mark.parametrize("kind", ["llama-gqa", "qwen3"])
def test_fast_decoder_matches_the_generic_one(kind):
    from rlvr_world.engine.decoders import supports_fast_decode

    model = _model(kind)
    assert supports_fast_decode(model)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15], [3]]  # left padding of different widths
    kw = dict(eos_id=4, pad_id=0, max_new_tokens=12, num_samples=3, temperature=1.0, return_logits=True)
    fast = sample(model, prompts, generator=generator(5), **kw)
    slow = sample(model, prompts, generator=generator(5), fast=False, **kw)
    assert 0 < int(fast.finished.sum()) < 12  # some rows ended early: compaction ran
    assert torch.equal(fast.tokens, slow.tokens)
    for i, n in enumerate(fast.lengths.tolist()):
        assert torch.allclose(fast.logits[i, :n], slow.logits[i, :n], atol=1e-4), i


def test_sampled_tokens_follow_the_model_distribution():
    """Chi-square goodness of fit of 40,000 draws against the softmax, per row, on a 6-token vocabulary."""
    from scipy.stats import chisquare

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5, -3.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    draws = sample_next(logits.repeat_interleave(20_000, dim=0), temperature=1.0, generator=generator(11)).view(2, -1)
    for row in range(2):
        counts = torch.bincount(draws[row], minlength=6).double()
        expected = logits[row].double().softmax(-1) * counts.sum()
        assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    hot = sample_next(logits[:1].repeat(20_000, 1), temperature=0.5, generator=generator(12))  # temperature sharpens
    counts = torch.bincount(hot, minlength=6).double()
    assert chisquare(counts.numpy(), ((logits[0].double() / 0.5).softmax(-1) * 20_000).numpy()).pvalue > 1e-3
    assert counts[5] < 20  # p = 2e-5 at T=0.5: essentially never


def test_group_logprobs_equal_full_rows_with_their_gradients(tiny_lm):
    from rlvr_world.engine.sequences import group_logprobs

    prompts = [[5, 6, 7, 8, 9, 10], [11, 12]]
    responses = [[3, 4, 2], [7], [9, 9, 9, 9, 2], [1, 2], [8, 8], [30, 31, 32, 33, 34]]  # G = 3, ragged
    batch = make_batch([p for p in prompts for _ in range(3)], responses, pad_id=0)
    full, _ = token_logprobs(tiny_lm, batch)
    full_grads = torch.autograd.grad((full * batch.response_mask).sum(), list(tiny_lm.parameters()))
    grouped, _, mask = group_logprobs(tiny_lm, prompts, responses, pad_id=0)
    grouped_grads = torch.autograd.grad((grouped * mask).sum(), list(tiny_lm.parameters()))
    assert torch.equal(mask, batch.response_mask)
    assert torch.allclose(grouped * mask, full * batch.response_mask, atol=1e-5)
    for a, b in zip(grouped_grads, full_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_forced_positions_are_written_in_and_the_rest_is_sampled_from_the_history(tiny_lm):
    """Interleaving (video: generated frame, real action, generated frame): given ids land where they belong,
    and every sampled token is drawn from the model conditioned on the given ones."""
    forced = [[-1, -1, 40, 41, -1, -1], None, [-1, 33]]
    out = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=6, num_samples=2, temperature=0.0,
                 return_logits=True, forced=forced)
    for row in range(out.tokens.size(0)):
        f = forced[row // 2]
        n = int(out.lengths[row])
        got = out.tokens[row, :n].tolist()
        for t, want in enumerate(f or []):
            if want >= 0 and t < n:
                assert got[t] == want
        seq = torch.tensor([PROMPTS[row // 2] + got])
        with torch.no_grad():
            full = tiny_lm(input_ids=seq).logits[0]  # (L, V) plain forward on the interleaved sequence
        P = len(PROMPTS[row // 2])
        for t in range(n):
            if not f or t >= len(f) or f[t] < 0:
                assert got[t] == int(full[P - 1 + t].argmax())
    # without forcing, the greedy row differs at the forced positions
    free = sample(tiny_lm, PROMPTS[:1], eos_id=2, pad_id=0, max_new_tokens=6, temperature=0.0)
    assert free.tokens[0, 2:4].tolist() != [40, 41]


def test_suppressed_ids_are_never_sampled_but_forced_ones_are_written(tiny_lm):
    banned = list(range(10, 50))
    out = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=8, num_samples=8, generator=generator(1),
                 suppress=banned, forced=[[-1, 45], None, None])
    for row, r in enumerate(out.responses()):
        free = [t for i, t in enumerate(r) if not (row < 8 and i == 1)]
        assert not set(free) & set(banned)
        if row < 8 and len(r) > 1:
            assert r[1] == 45


def test_a_pick_rule_chooses_the_free_tokens_and_forced_ones_stay(tiny_lm):
    last = lambda logits: torch.full((logits.size(0),), logits.size(-1) - 1, dtype=torch.long)  # noqa: E731 - the last id
    V = tiny_lm.config.vocab_size
    out = sample(tiny_lm, PROMPTS, eos_id=2, pad_id=0, max_new_tokens=4, pick=last, forced=[[-1, 9], None, None])
    assert out.tokens[0].tolist() == [V - 1, 9, V - 1, V - 1]
    assert out.tokens[1].tolist() == [V - 1] * 4


def test_a_rows_draws_do_not_depend_on_its_batch(tiny_lm):
    from rlvr_world.engine.sampler import uniforms

    # eos 10 ends some rows early, so compaction drops rows mid-way
    prompts = PROMPTS + [[16, 10], [18], [19, 20, 21, 10]]
    kw = dict(eos_id=10, pad_id=0, max_new_tokens=12, num_samples=3, temperature=1.5)
    whole = sample(tiny_lm, prompts, generator=generator(5), **kw)
    assert torch.equal(whole.tokens, sample(tiny_lm, prompts, generator=generator(5), compact=False, **kw).tokens)
    # two "processes", each sampling half the prompts with its rows of the whole batch's table
    table = uniforms((len(prompts) * 3, 12), generator(5), "cpu")
    first = sample(tiny_lm, prompts[:2], draws=table[:6], **kw)
    second = sample(tiny_lm, prompts[2:], draws=table[6:], **kw)
    assert first.responses() + second.responses() == whole.responses()
    assert len({tuple(r) for r in whole.responses()}) > 6  # the draws are random, not one repeated answer


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_fast_decoder_packs_its_weights_exactly_when_it_runs_fp32(dtype, monkeypatch):
    from rlvr_world import device as dev
    from rlvr_world.engine.decoders import LlamaDecoder

    monkeypatch.setenv("RLVR_WORLD_KERNELS", "onednn")  # whatever this machine measured
    model = _model("llama-gqa")
    ids, mask = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
    amp = dev.amp(torch.device("cpu"), dtype)  # what the pipeline passes: a context factory, never None
    decoder = LlamaDecoder(model, ids, mask, group_size=2, max_new_tokens=4, autocast=amp)
    packed = [layer.packed is not None for layer in (*decoder.qkv, *decoder.down, decoder.head)]
    assert all(packed) if dtype == "fp32" else not any(packed)
