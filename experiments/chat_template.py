"""Does a pretrained model's chat template help it start? Target log-likelihood with and without it.

    python experiments/chat_template.py [--model smollm2-135m] [--n 40] [--threads 2]
                                 [--out results/bench-chat-template.json]

On a fixed subset of text-game test transitions (half changed), the mean
per-token negative log-likelihood of the real target (the JSON difference and
the end id) under the model, with the prompt written as plain text (what the
presets use) or wrapped in the model's chat template as one user turn with
the generation prompt. Lower is a better starting point for SFT. This is the
model before any training: it says where SFT starts, not where it ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from rlvr_world.domains.textgame import TextGameData, TextGameDomain
from rlvr_world.engine import models
from rlvr_world.engine.atomicwrite import save_json
from rlvr_world.engine.pretrained import resolve
from rlvr_world.engine.sequences import make_batch, token_logprobs
from rlvr_world.engine.evaluate import balanced_indices
from rlvr_world.text import load_tokenizer


def chat_ids(tok, text: str) -> list[int]:
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@torch.no_grad()
def nll(model, prompt: list[int], target: list[int]) -> tuple[float, int]:
    batch = make_batch([prompt], [target], pad_id=0)
    logp, _ = token_logprobs(model, batch)
    return -float(logp.sum()), len(target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/bench-chat-template.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = resolve(args.model)
    tok, model = load_tokenizer(path), models.load(path).eval()
    domain = TextGameDomain(tok, TextGameData())
    test = domain.examples("test")
    idx = balanced_indices(test, args.n, seed=5)
    t0 = time.time()
    res = {"command": "python " + " ".join(sys.argv), "model": args.model, "n": len(idx), "test_indices": idx}
    for fmt in ("plain", "chat"):
        sums: dict[str, list[float]] = {}
        for i in idx:
            e = test[i]
            prompt = e.prompt_ids if fmt == "plain" else chat_ids(tok, domain.prompt_text(e.payload))
            s, n = nll(model, prompt, e.target_ids)
            acc = sums.setdefault(e.group, [0.0, 0])
            acc[0] += s
            acc[1] += n
        res[fmt] = {g: round(s / n, 4) for g, (s, n) in sorted(sums.items())}
        res[fmt]["all"] = round(sum(s for s, _ in sums.values()) / sum(n for _, n in sums.values()), 4)
    res["wall_s"] = round(time.time() - t0, 1)
    save_json(Path(args.out), res)
    print(res)


if __name__ == "__main__":
    main()
