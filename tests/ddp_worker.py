"""One process of a data-parallel toy run, for tests/test_distributed.py (run alone: one process).

    python tests/ddp_worker.py mle|rl|rl-token|eval OUT [--resume] [--slow SECONDS]
    torchrun --standalone --nproc-per-node 2 tests/ddp_worker.py ...
"""

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from rlvr_world.engine import distributed as dist
from rlvr_world.engine import models
from rlvr_world.engine.domain import Example
from rlvr_world.engine.evaluate import evaluate
from rlvr_world.engine.mle import MLEConfig, train_mle
from rlvr_world.engine.rl import train_rl
from test_rl_loop import EXAMPLES, TARGET, ToyDomain, ToyTokenDomain, cfg, toy_model

TOK = SimpleNamespace(pad_token_id=0, save_pretrained=lambda path: None)


class Slow(ToyTokenDomain):
    """The toy reward, `delay` seconds a response slower (so a test can stop a run mid-way)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def score(self, reward, ids, example):
        time.sleep(self.delay)
        return super().score(reward, ids, example)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["mle", "rl", "rl-token", "eval"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--slow", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist.setup("cpu")
    ckpt = a.out / "checkpoint"
    model = models.load(ckpt) if a.resume and ckpt.exists() else toy_model()
    if a.mode == "eval":  # the toy model's greedy answers, 3 to a batch, records kept in a partial file
        examples = [Example([3 + i % 7, 4 + i % 3, 5], [TARGET, 2], group=f"g{i % 2}") for i in range(23)]
        a.out.mkdir(parents=True, exist_ok=True)
        r = evaluate(model, ToyDomain(), examples, metric="share", batch_size=3, max_new_tokens=4,
                     partial=a.out / "eval.partial.jsonl")
        if dist.is_main():
            (a.out / "eval.json").write_text(json.dumps({**r.summary(), "records": r.records}))
    elif a.mode == "mle":
        train_mle(model, TOK, EXAMPLES, MLEConfig(epochs=3, batch_tokens=40, lr=3e-3, warmup_steps=2, save_every=2),
                  a.out, resume=a.resume)
    else:
        domain = Slow(a.slow) if a.slow else (ToyTokenDomain() if a.mode == "rl-token" else ToyDomain())
        rl = cfg(steps=8, prompts_per_step=4, group_size=4, save_every=2, scale="batch",
                 credit="token" if a.mode == "rl-token" else "sequence")
        train_rl(model, TOK, domain, EXAMPLES, rl, a.out, resume=a.resume)
    dist.teardown()


if __name__ == "__main__":
    main()
