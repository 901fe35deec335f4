"""The GPU check (issue #28): the whole pipeline on CUDA, and the sampler and an RL step on the GPU against the CPU.

    python bench/gpu.py                      # a CUDA machine, ~5 min -> results/bench-gpu.json
    python bench/gpu.py --device cpu --out /tmp/gpu.json   # the same script on the CPU alone (a dry run)

1. `rlvr-world run --preset tiny --device cuda` end to end as a subprocess (tokenizer, MLE, RLVR, both
   evaluations, results), with its phase times;
2. the hand-written decoder on the GPU: greedy tokens and logits against the generic decoder (the model's own
   forward with a KV cache) on the same prompts;
3. the sampler (16 rows x 256 new tokens from 512-token prompts) and one RL step of ours (`rl.collect` +
   `rl.update`, 2 prompts x 8 samples) on the GPU and on the CPU, on the same random 5.7M-parameter model as
   `bench/speed.py`; median of 3 after a warm-up.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from speed import VOCAB, WordDomain, word_tokenizer  # noqa: E402  (bench/ is not a package)

from rlvr_world import device as dev  # noqa: E402
from rlvr_world.engine import models  # noqa: E402
from rlvr_world.engine.domain import Example  # noqa: E402
from rlvr_world.engine.options import ModelConfig  # noqa: E402
from rlvr_world.engine.rl import RLConfig, collect, update  # noqa: E402
from rlvr_world.engine.sampler import sample  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_s(fn, device: torch.device, repeats: int = 3) -> float:
    fn()  # warm-up (kernels chosen, caches allocated)
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def end_to_end(device: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = ["rlvr-world", "run", "--preset", "tiny", "--device", device, "--threads", str(threads), "--out",
               str(out), "--results", str(out / "results.json")]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        res = json.loads((out / "results.json").read_text()) if p.returncode == 0 else {}
    return {"command": shlex.join(cmd), "returncode": p.returncode, "wall_s": round(wall, 1),
            "phase_s": res.get("phase_s"), "mle": res.get("mle"), "rlvr": res.get("rlvr"),
            "error": p.stderr.strip().splitlines()[-1] if p.returncode else ""}


def decoders_agree(model, prompts, device: torch.device) -> dict:
    kw = dict(eos_id=-1, pad_id=0, max_new_tokens=32, temperature=0.0, return_logits=True)
    fast = sample(model, prompts, **kw)
    generic = sample(model, prompts, fast=False, **kw)
    return {"same_tokens": bool(torch.equal(fast.tokens, generic.tokens)),
            "max_logit_diff": float((fast.logits - generic.logits).abs().max())}


def timings(model, tok, prompts, device: torch.device) -> dict:
    model = model.to(device)
    rows = prompts[:16]
    sampler_s = median_s(lambda: sample(model, rows, eos_id=-1, pad_id=0, max_new_tokens=256,
                                        generator=dev.generator(0, device)), device)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    domain = WordDomain(tok)
    cfg = RLConfig(reward="even", prompts_per_step=2, group_size=8, max_new_tokens=256, micro_batch_size=16,
                   kl_coef=0.001, temperature=1.0)
    batch = [Example(p, [], payload=None) for p in prompts[:2]]
    amp = dev.amp(device, "auto")

    def rl_step():
        ro = collect(model, domain, batch, cfg, 0, amp)
        update(model, ref, opt, ro, cfg, domain.pad_id, amp)

    return {"sampler_16x256_s": round(sampler_s, 3), "rl_step_2x8x256_s": round(median_s(rl_step, device), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the device checked (cpu: a dry run of this script)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the CPU side (0: torch's default)")
    p.add_argument("--out", default="results/bench-gpu.json")
    args = p.parse_args()
    device = dev.pick_device(args.device)  # a one-line error where the device is missing
    dev.set_threads(args.threads)
    info = {"command": shlex.join(["python", *sys.argv]), "torch": torch.__version__, "device": str(device),
            "cpu": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())
    print(json.dumps(info), flush=True)
    res = {**info, "end_to_end": end_to_end(args.device, max(1, args.threads))}
    print("end to end:", json.dumps(res["end_to_end"]), flush=True)

    tok = word_tokenizer()
    torch.manual_seed(0)
    model = models.build(ModelConfig(hidden_size=256, num_layers=6, num_heads=8, max_positions=1024), VOCAB,
                         pad_id=0, bos_id=1, eos_id=2).eval()
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(4, VOCAB, (16, 512), generator=gen).tolist()
    res["decoders"] = decoders_agree(model.to(device), prompts[:4], device)
    print("decoders:", json.dumps(res["decoders"]), flush=True)
    res["timings"] = {d.type: timings(copy.deepcopy(model), tok, prompts, d)
                      for d in dict.fromkeys([device, torch.device("cpu")])}
    if device.type == "cuda":
        res["speedup"] = {k: round(res["timings"]["cpu"][k] / res["timings"]["cuda"][k], 2)
                          for k in res["timings"]["cuda"]}
    print("timings:", json.dumps(res["timings"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
