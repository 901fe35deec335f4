"""Speed of the RL loop against Hugging Face TRL and `generate`, side by side in one process.

    pip install -e ".[bench]"
    python bench/speed.py                 # ~10 min on 2 CPU cores -> results/bench.json, results/bench.md

Everything runs on one random Llama-style model (5.7M parameters, 4,096-word
vocabulary), the same 512-token prompts, 256-token responses and one reward:

1. one RLVR step of ours (`engine.rl.collect` + `engine.rl.update`) against one
   step of TRL's `GRPOTrainer` (16 rollouts = 2 prompts x 8, static KV cache,
   aligned generation so TRL skips its old-log-prob pass, the same KL coefficient
   so both run the frozen reference model); median step time after warm-up;
2. our sampler against `model.generate` (static cache) in generated tokens per
   second at batch 1, 16 and 64, with distinct prompts and with groups of 8
   samples per prompt (what GRPO samples); `generate` on the stock model (as
   transformers and TRL load it) and again on ours, whose linear maps run on
   oneDNN (`engine.kernels`), which isolates the sampler's own share;
3. our MLE training throughput in tokens per second;
4. the machine's fp32 matrix-multiply peak, measured here, and the share of it
   that MLE training and sampling reach (model FLOPs: 2 per parameter per token
   forward, 3x that for training, plus attention).

Where the speed comes from is timed too (`ablations`): the fast decoder against
the generic one, grouped log-probs against per-row ones, and an MLE step with
oneDNN linear maps against PyTorch's own.

No response ends early: the end-of-sequence token is disabled on both sides, so
every row generates exactly 256 tokens and both sides do the same work.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rlvr_world import device as dev
from rlvr_world.engine import kernels, models
from rlvr_world.engine.domain import Domain, Example
from rlvr_world.engine.mle import mle_loss
from rlvr_world.engine.rl import RLConfig, collect, update
from rlvr_world.engine.sampler import sample

VOCAB = 4096
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def word_tokenizer():
    """A word-level tokenizer over w4 .. w4095, so a prompt of n words is exactly n tokens."""
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)} | {f"w{i}": i for i in range(len(SPECIALS), VOCAB)}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def reward_of_text(text: str) -> float:
    """Share of even-numbered words: cheap, the same on both sides, varied across samples."""
    words = text.split()
    return sum(int(w[1:]) % 2 == 0 for w in words if w[1:].isdigit()) / max(1, len(words))


class WordDomain(Domain):
    """The smallest domain the engine accepts: score = `reward_of_text` on the decoded response."""

    name, metric, pad_id = "bench", "even", 0
    eos_id = -1  # never emitted: every response runs to max_new_tokens

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.rewards = {"even": lambda text, _: (reward_of_text(text), {})}

    def score(self, reward, response_ids, example):
        return self.rewards[reward](self.tokenizer.decode(response_ids), example.payload)


def forward_flops(cfg, tokens: int, context: float) -> float:
    """Matmul FLOPs of a forward pass over `tokens` tokens that attend to `context` keys on average."""
    d, kv = cfg.hidden_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * cfg.intermediate_size
    params = cfg.num_hidden_layers * per_layer + d * cfg.vocab_size  # the output head, not the embedding lookup
    return tokens * (2 * params + 4 * cfg.num_hidden_layers * d * context)


def matmul_peak(seconds: float = 3.0, n: int = 2048, dtype: torch.dtype = torch.float32) -> dict:
    """Best GFLOP/s of an n x n matrix product on this machine, with the current threads, per kernel.

    In fp32 `torch.mm` goes to MKL; the engine's linear maps use oneDNN on a
    prepacked weight (`engine.kernels`), which on AMD CPUs is the faster of the
    two, so the machine's peak is the better of both. In bf16 `torch.mm` is
    oneDNN's own kernel (AMX or AVX512-BF16 where the CPU has them).
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    if dtype == torch.float32:
        packed = kernels.pack(b, n)
        products = {"mkl": lambda: a @ b, "onednn": lambda: kernels.packed_linear(a, packed, None)}
    else:
        products = {"torch": lambda: a @ b}
    best = {}
    for name, fn in products.items():
        best[name], end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            fn()
            best[name] = max(best[name], 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternated(runs: dict, repeats: int, warmups: dict | None = None) -> dict[str, list[float]]:
    """Seconds of each run, `repeats` times, in alternation so that drift hits all alike, after one warm-up call
    of each (`warmups[name]` instead of the run itself where given, e.g. a shorter one)."""
    for name, fn in runs.items():
        (warmups or {}).get(name, fn)()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k].append(timed(fn))
    return times


def generation_config(new_tokens: int, pad_id: int, eos_id: int, temperature: float = 1.0, exact: bool = True):
    """`generate`'s settings for a fair race: static KV cache, no top-k / top-p, no compilation; `exact`: every row
    makes `new_tokens` tokens (end-of-sequence held back); temperature 0: greedy."""
    from transformers import GenerationConfig

    draw = {"do_sample": False} if temperature <= 0 else dict(do_sample=True, temperature=temperature, top_k=0,
                                                               top_p=1.0)
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens if exact else 0, pad_token_id=pad_id,
                            eos_token_id=eos_id, cache_implementation="static", disable_compile=True, **draw)


def step_timer():
    """A `transformers` callback that keeps the seconds of every optimizer step (`.times`)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    return StepTimer()


def trl_grpo_config(out: str, **shape):
    """TRL `GRPOConfig` with its best CPU shot: `use_cpu`, static KV cache, no vLLM, gradient checkpointing off (TRL
    turns it on by default), dropout off, token-mean loss over the batch (`dapo`), no top-k / top-p, no logging or
    saving; `shape` gives the rest (batch, group, lengths, learning rate, KL coefficient, ...)."""
    from trl import GRPOConfig

    return GRPOConfig(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, loss_type="dapo",
                      top_p=1.0, top_k=0, cache_implementation="static", disable_dropout=True, dataloader_num_workers=0,
                      seed=0, shuffle_dataset=False, disable_tqdm=True, gradient_checkpointing=False, **shape)


def onednn_forced(fn):
    """`fn` run with every linear map on oneDNN, whatever this machine's measured `kernels.choice()` says."""
    def run():
        before = os.environ.get("RLVR_WORLD_KERNELS")
        os.environ["RLVR_WORLD_KERNELS"] = "onednn"
        try:
            fn()
        finally:
            if before is None:
                os.environ.pop("RLVR_WORLD_KERNELS")
            else:
                os.environ["RLVR_WORLD_KERNELS"] = before
    return run


def stock(model):
    """A copy of `model` with PyTorch's own `nn.Linear` (MKL on the CPU): the model a plain transformers user has."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) is kernels.OneDNNLinear:
            module.__class__ = torch.nn.Linear
    return model


def bench_sampler(model, plain, prompts, batch: int, group: int, new_tokens: int, repeats: int) -> dict:
    """Ours vs `generate` (static cache) on `batch` rows = batch/group prompts x group samples.

    `generate` runs twice: on the stock model (`plain`, what transformers gives a
    user) and on ours, whose linear maps already run on oneDNN, so the second
    ratio is the sampler's own share of the speed-up.
    """
    rows = prompts[: batch // group]
    ids = torch.tensor([p for p in rows for _ in range(group)])  # generate gets every row, as TRL gives it
    gen_cfg = generation_config(new_tokens, pad_id=0, eos_id=2)

    def ours():
        sample(model, rows, eos_id=-1, pad_id=0, max_new_tokens=new_tokens, num_samples=group,
               generator=dev.generator(0))

    def generate(m):
        with torch.no_grad():
            m.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)

    times = alternated({"ours": ours, "stock": lambda: generate(plain), "onednn": lambda: generate(model)}, repeats)
    t = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "group": group, "prompts": len(rows), "ours_s": round(t["ours"], 3),
            "generate_static_s": round(t["stock"], 3), "ours_tok_s": round(batch * new_tokens / t["ours"], 1),
            "generate_static_tok_s": round(batch * new_tokens / t["stock"], 1),
            "speedup": round(t["stock"] / t["ours"], 2),
            "generate_static_onednn_s": round(t["onednn"], 3),
            "speedup_vs_generate_onednn": round(t["onednn"] / t["ours"], 2)}


def bench_ours_rl(model_dir, tok, prompts, args) -> dict:
    policy = models.load(model_dir).eval()
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
    domain = WordDomain(tok)
    cfg = RLConfig(reward="even", prompts_per_step=2, group_size=8, max_new_tokens=args.new_tokens,
                   micro_batch_size=16, kl_coef=0.001, temperature=1.0)
    times, sample_s = [], []
    for step in range(args.warmup + args.steps):
        batch = [Example(p, [], payload=None) for p in prompts[2 * step: 2 * step + 2]]
        t0 = time.perf_counter()
        ro = collect(policy, domain, batch, cfg, step, None)
        t1 = time.perf_counter()
        update(policy, ref, opt, ro, cfg, domain.pad_id, None)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            sample_s.append(t1 - t0)
    return {"step_s": times, "sample_s": sample_s}


def bench_trl_rl(model_dir, tok, prompts, args) -> dict:
    from datasets import Dataset
    from trl import GRPOTrainer

    def reward(completions, **kw):
        return [reward_of_text(c) for c in completions]

    steps = args.warmup + args.steps
    data = Dataset.from_dict({"prompt": [tok.decode(p) for p in prompts[: 2 * steps]]})
    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        cfg = trl_grpo_config(
            out, bf16=False, max_steps=steps, per_device_train_batch_size=16, num_generations=8,
            gradient_accumulation_steps=1, max_completion_length=args.new_tokens, learning_rate=1e-4, beta=0.001,
            epsilon=0.2, temperature=1.0, generation_kwargs={"min_new_tokens": args.new_tokens},
        )
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=cfg, train_dataset=data,
                              processing_class=tok, callbacks=[timer])
        trainer.train()
    return {"step_s": timer.times[args.warmup:]}


def bench_ablations(model, prompts, long, args) -> dict:
    """What three of the engine's speed choices buy, each against the plain way, on the same work."""
    from rlvr_world.engine.sequences import group_logprobs, make_batch, token_logprobs

    rows = prompts[:16]

    def fast():
        sample(model, rows, eos_id=-1, pad_id=0, max_new_tokens=args.new_tokens, generator=dev.generator(0))

    def generic():  # the model's own forward with a DynamicCache
        sample(model, rows, eos_id=-1, pad_id=0, max_new_tokens=args.new_tokens, generator=dev.generator(0), fast=False)

    group_prompts = prompts[:2]
    responses = torch.randint(len(SPECIALS), VOCAB, (16, args.new_tokens),
                              generator=torch.Generator().manual_seed(2)).tolist()

    def grouped():
        logp, _, mask = group_logprobs(model, group_prompts, responses, 0)
        (logp * mask).sum().backward()

    def per_row():
        batch = make_batch([p for p in group_prompts for _ in range(8)], responses, 0)
        logp, _ = token_logprobs(model, batch)
        (logp * batch.response_mask).sum().backward()

    mle_rows = [Example(p[:-args.new_tokens], p[-args.new_tokens:]) for p in long[:16]]
    trained, plain = copy.deepcopy(model).train(), stock(model).train()

    def mle_step(m):
        m.zero_grad(set_to_none=True)
        mle_loss(m, mle_rows, pad_id=0)[0].backward()

    out = {}
    cases = {"decoder_batch16": (fast, generic), "logprobs_fwd_bwd_2x8": (grouped, per_row),
             "mle_fwd_bwd_onednn_vs_mkl": (onednn_forced(lambda: mle_step(trained)), lambda: mle_step(plain))}
    for name, (a, b) in cases.items():
        a(), b()
        t_a, t_b = [], []
        for _ in range(args.repeats):
            t_a.append(timed(a))
            t_b.append(timed(b))
        out[name] = {"ours_s": round(statistics.median(t_a), 3), "plain_s": round(statistics.median(t_b), 3),
                     "speedup": round(statistics.median(t_b) / statistics.median(t_a), 2)}
    model.zero_grad(set_to_none=True)
    return out


def bench_mle(model, prompts, args) -> dict:
    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = 16  # 16 x (512 + 256) = 12,288 tokens per step, the MLE default token budget
    examples = [Example(p[:-args.new_tokens], p[-args.new_tokens:]) for p in prompts[: rows * (args.steps + 1)]]
    times = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        loss, _ = mle_loss(model, examples[rows * step: rows * (step + 1)], pad_id=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    length = len(prompts[0])
    return {"rows": rows, "tokens_per_step": rows * length, "target_tokens_per_step": rows * args.new_tokens,
            "step_s": round(step_s, 3), "tok_s": round(rows * length / step_s, 1),
            "target_tok_s": round(rows * args.new_tokens / step_s, 1),
            "flops_per_step": 3 * forward_flops(model.config, rows * length, (length + 1) / 2)}


def markdown(r: dict) -> str:
    rl, mle = r["rl_step"], r["mle"]
    lines = [
        f"# Speed, side by side in one process (`{r['command']}`)",
        "",
        f"{r['params'] / 1e6:.2f}M-parameter Llama-style model, {r['threads']} threads, {r['prompt_tokens']}-token "
        f"prompts, {r['new_tokens']}-token responses, fp32; measured matmul peak {r['matmul_peak_gflops']} GFLOP/s "
        f"(the best of MKL's and oneDNN's kernels: {r['matmul_peak_by_kernel_gflops']}).",
        "",
        "| what | ours | reference | speed-up |",
        "| --- | --- | --- | --- |",
        f"| one RLVR step, 16 rollouts (2 prompts x 8), median s | {rl['ours_s']} | TRL GRPOTrainer {rl['trl_s']} "
        f"| {rl['speedup']}x |",
    ]
    for s in r["sampler"]:
        kind = "distinct prompts" if s["group"] == 1 else f"{s['prompts']} prompts x {s['group']} samples"
        lines.append(f"| sampling, batch {s['batch']} ({kind}), tokens/s | {s['ours_tok_s']} | generate, static "
                     f"cache {s['generate_static_tok_s']} | {s['speedup']}x |")
    lines += [
        "",
        f"MLE training: {mle['tok_s']} tokens/s ({mle['target_tok_s']} target tokens/s), "
        f"{100 * mle['peak_share']:.1f}% of the matmul peak. Sampling at batch 64 (distinct prompts): "
        f"{100 * next(s['ours_peak_share'] for s in r['sampler'] if s['batch'] == 64 and s['group'] == 1):.1f}% "
        "of the peak.",
        "",
        f"TRL settings: {rl['trl_settings']}.",
        "",
    ]
    ab = r["ablations"]
    lines += [
        "Where the speed comes from, each against the plain way on the same work: the hand-written decode step "
        f"vs the model's forward with a dynamic cache (batch 16): {ab['decoder_batch16']['speedup']}x; log-probs "
        "(forward + backward) with each group's prompt run once vs every row in full (2 prompts x 8): "
        f"{ab['logprobs_fwd_bwd_2x8']['speedup']}x; an MLE forward + backward (16 x 768 tokens) with the linear "
        f"maps on oneDNN vs PyTorch's own (MKL): {ab['mle_fwd_bwd_onednn_vs_mkl']['speedup']}x.",
        "",
        "`generate` is timed on the stock model (PyTorch's `nn.Linear`, as transformers and TRL load it); on a model "
        "whose linear maps already run on oneDNN the sampler's own speed-up is: "
        + ", ".join(f"batch {s['batch']} (groups of {s['group']}) {s['speedup_vs_generate_onednn']}x"
                    for s in r["sampler"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed RL / MLE steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="RL steps run before timing")
    ap.add_argument("--repeats", type=int, default=2, help="timed sampler runs per setting")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--out", default="results/bench.json")
    args = ap.parse_args()
    dev.quiet_hf()
    dev.set_threads(args.threads)
    t_start = time.perf_counter()
    tok = word_tokenizer()
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(hidden_size=256, num_layers=6, num_heads=4, max_positions=1024), VOCAB,
                         pad_id=0, bos_id=1, eos_id=2).eval()
    g = torch.Generator().manual_seed(1)
    long = torch.randint(len(SPECIALS), VOCAB, (256, args.prompt_tokens + args.new_tokens), generator=g).tolist()
    prompts = [p[: args.prompt_tokens] for p in long]
    result: dict = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "threads": args.threads,
                    "cpu": dev.cpu_signature(), "kernel_choice": kernels.choice(),
                    "params": models.num_params(model), "prompt_tokens": args.prompt_tokens,
                    "new_tokens": args.new_tokens}
    print(f"model {result['params'] / 1e6:.2f}M parameters, {args.threads} threads", flush=True)

    peaks = matmul_peak()
    peak = max(peaks.values())
    result["matmul_peak_gflops"] = round(peak, 1)
    result["matmul_peak_by_kernel_gflops"] = {k: round(v, 1) for k, v in peaks.items()}
    print(f"matmul peak {peak:.1f} GFLOP/s ({', '.join(f'{k} {v:.0f}' for k, v in peaks.items())})", flush=True)

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        tok.save_pretrained(d)
        ours_a = bench_ours_rl(d, tok, prompts, args)
        print(f"ours: RL step {statistics.median(ours_a['step_s']):.2f} s", flush=True)
        trl = bench_trl_rl(d, tok, prompts, args)
        print(f"TRL GRPOTrainer: step {statistics.median(trl['step_s']):.2f} s", flush=True)
        ours_b = bench_ours_rl(d, tok, prompts, args)  # ours again after TRL: A-B-A against drift
    ours_steps = ours_a["step_s"] + ours_b["step_s"]
    ours_s, trl_s = statistics.median(ours_steps), statistics.median(trl["step_s"])
    result["rl_step"] = {
        "rollouts": 16, "prompts": 2, "group_size": 8, "kl_coef": 0.001,
        "ours_s": round(ours_s, 3),
        "ours_sample_s": round(statistics.median(ours_a["sample_s"] + ours_b["sample_s"]), 3),
        "trl_s": round(trl_s, 3), "speedup": round(trl_s / ours_s, 2),
        "ours_all_s": [round(t, 3) for t in ours_steps], "trl_all_s": [round(t, 3) for t in trl["step_s"]],
        "trl_settings": "GRPOTrainer on CPU (use_cpu), fp32, cache_implementation=static, no vLLM, "
                        "gradient_checkpointing off, per_device_train_batch_size=16, num_generations=8, "
                        "gradient_accumulation_steps=1 (aligned: no old-log-prob pass), beta=0.001, loss_type=dapo, "
                        f"min_new_tokens={args.new_tokens}",
    }
    print(f"RL step speed-up {trl_s / ours_s:.2f}x", flush=True)

    result["sampler"] = []
    plain = stock(model)
    for batch, group in ((1, 1), (16, 1), (16, 8), (64, 1), (64, 8)):
        row = bench_sampler(model, plain, prompts, batch, group, args.new_tokens, args.repeats)
        flops = (forward_flops(model.config, row["prompts"] * args.prompt_tokens, (args.prompt_tokens + 1) / 2)
                 + forward_flops(model.config, batch * args.new_tokens, args.prompt_tokens + args.new_tokens / 2))
        row["ours_peak_share"] = round(flops / row["ours_s"] / 1e9 / peak, 4)
        result["sampler"].append(row)
        print(f"sampler batch {batch} (groups of {group}): ours {row['ours_tok_s']} tok/s, "
              f"generate {row['generate_static_tok_s']} tok/s, {row['speedup']}x", flush=True)

    result["ablations"] = bench_ablations(model, prompts, long, args)
    print(f"ablations: {result['ablations']}", flush=True)

    mle = bench_mle(model, long, args)
    mle["peak_share"] = round(mle.pop("flops_per_step") / mle["step_s"] / 1e9 / peak, 4)
    result["mle"] = mle
    print(f"MLE {mle['tok_s']} tok/s ({100 * mle['peak_share']:.1f}% of the matmul peak)", flush=True)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
