"""What sampling finds on changed text-game transitions: the behaviour GRPO can reinforce.

    python experiments/textgame_headroom.py --model runs/textgame-full/mle/model --n 48 --group-size 8

For `n` random changed transitions of the RL training set and of the test split,
draws `group-size` samples each at the RL temperature and reports the share of
samples that are exactly right, pass@G (a group with at least one exactly right
sample), mean accuracy on the properties that really change, and the share of
groups whose task-specific rewards are all equal (no learning signal). Writes
results/textgame-headroom.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
from pathlib import Path

import torch

from rlvr_world import device as dev
from rlvr_world.domains.textgame import TextGameData, TextGameDomain
from rlvr_world.engine import models
from rlvr_world.engine.sampler import sample
from rlvr_world.text import load_tokenizer


def measure(model, domain, examples, group_size: int, temperature: float, batch: int, amp) -> dict:
    exact, solved, changing, flat = [], 0, [], 0
    for start in range(0, len(examples), batch):
        chunk = examples[start: start + batch]
        g = torch.Generator().manual_seed(start)
        out = sample(model, [e.prompt_ids for e in chunk], eos_id=domain.eos_id, pad_id=domain.pad_id,
                     max_new_tokens=512, num_samples=group_size, temperature=temperature, generator=g, autocast=amp)
        responses = out.responses()
        for j, e in enumerate(chunk):
            scored = [domain.score("task_specific", r, e) for r in responses[j * group_size: (j + 1) * group_size]]
            hits = [parts["exact"] for _, parts in scored]
            exact.append(statistics.mean(hits))
            solved += max(hits) > 0
            changing.append(statistics.mean(parts.get("changing_acc", 0.0) for _, parts in scored))
            flat += len({round(v, 9) for v, _ in scored}) == 1
    n = len(examples)
    return {"n": n, "exact_pct": round(100 * statistics.mean(exact), 2), "pass_at_g_pct": round(100 * solved / n, 2),
            "changing_acc_pct": round(100 * statistics.mean(changing), 2), "flat_groups_pct": round(100 * flat / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a saved model directory (with its tokenizer)")
    ap.add_argument("--n", type=int, default=48, help="changed transitions per split")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=8, help="prompts per sampling batch")
    ap.add_argument("--out", default="results/textgame-headroom.json")
    args = ap.parse_args()
    device = dev.pick_device("auto")
    amp = dev.amp(device)
    tok = load_tokenizer(args.model)
    model = models.load(args.model).to(device).eval()
    domain = TextGameDomain(tok, TextGameData())
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "model": args.model,
              "group_size": args.group_size, "temperature": args.temperature}
    for split, stage in (("train", "rl"), ("test", "")):
        changed = [e for e in domain.examples(split, stage=stage) if e.group == "changed"]
        random.Random(0).shuffle(changed)
        chosen = sorted(changed[: args.n], key=lambda e: len(e.prompt_ids))
        with torch.no_grad():
            result[split] = measure(model, domain, chosen, args.group_size, args.temperature, args.batch, amp)
        print(split, result[split], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
