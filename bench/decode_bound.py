"""How close distinct-prompt sampling at batch 16 is to what memory bandwidth allows.

    python bench/decode_bound.py          # ~2 min on 2 CPU cores -> results/bench-decode-bound.json

The same model, prompts and lengths as `bench/speed.py` (5.87M-parameter
Llama, 16 distinct 512-token prompts, 256 new tokens, EOS disabled). Measured
in one process: the machine's memory read bandwidth (best sum of a 256 MB tensor), our
sampler's time split into prefill and decode, and `generate` with a static
cache on the same work and model (whose linear maps run on oneDNN, as every
model the engine builds). Then the floor: every decode step must read each
row's fp32 keys and values and the weights at least once, so no fp32 decoder
can take less than prefill + steps x bytes / bandwidth; that floor bounds the
speed-up any implementation could show against `generate` here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch

from rlvr_world import device as dev
from rlvr_world.engine import decoders, models
from rlvr_world.engine.sampler import left_pad, sample

from speed import VOCAB, alternated, generation_config, timed


def read_bandwidth(mb: int = 256, repeats: int = 10) -> float:
    """Best GB/s of reading a large tensor once (its sum)."""
    x = torch.randn(mb * 2**20 // 4)
    x.sum()
    best = min(timed(lambda: x.sum()) for _ in range(repeats))
    return x.numel() * 4 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/bench-decode-bound.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    torch.manual_seed(0)
    model = models.build(models.ModelConfig(hidden_size=256, num_layers=6, num_heads=4, max_positions=1024), VOCAB,
                         pad_id=0, bos_id=1, eos_id=2).eval()
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(4, VOCAB, (args.batch, args.prompt_tokens), generator=g).tolist()
    ids, mask = left_pad(prompts, 0)
    gen_cfg = generation_config(args.new_tokens, pad_id=0, eos_id=2)

    def ours():
        sample(model, prompts, eos_id=-1, pad_id=0, max_new_tokens=args.new_tokens, generator=dev.generator(0))

    def prefill():  # the sampler's own prefill: the decoder's set-up with room for one token
        with torch.no_grad():
            decoders.LlamaDecoder(model, ids, mask, 1, 1)

    def hf():
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, generation_config=gen_cfg)

    bandwidth = read_bandwidth()
    t = alternated({"ours": ours, "prefill": prefill, "generate": hf}, args.repeats)
    med = {k: statistics.median(v) for k, v in t.items()}
    steps = args.new_tokens - 1  # the first token comes from the prefill's logits
    heads_kv, head_dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    mean_len = args.prompt_tokens + (steps + 1) / 2
    kv_bytes = cfg.num_hidden_layers * 2 * args.batch * heads_kv * mean_len * head_dim * 4  # per step, fp32
    weight_bytes = models.num_params(model) * 4
    decode_step = (med["ours"] - med["prefill"]) / steps
    floor = med["prefill"] + steps * (kv_bytes + weight_bytes) / (bandwidth * 1e9)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "threads": args.threads, "batch_distinct_prompts": args.batch, "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens, "params": models.num_params(model),
        "read_bandwidth_gb_s": round(bandwidth, 1),
        "times_s": {k: [round(x, 3) for x in v] for k, v in t.items()},
        "ours_s": round(med["ours"], 3), "prefill_s": round(med["prefill"], 3),
        "generate_static_s": round(med["generate"], 3),
        "speedup_vs_generate": round(med["generate"] / med["ours"], 2),
        "decode_step_ms": round(1e3 * decode_step, 2),
        "kv_mb_read_per_step": round(kv_bytes / 1e6, 1), "weight_mb_per_step": round(weight_bytes / 1e6, 1),
        "achieved_read_gb_s": round((kv_bytes + weight_bytes) / decode_step / 1e9, 1),
        "floor_s": round(floor, 3),
        "max_speedup_vs_generate_at_floor": round(med["generate"] / floor, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
