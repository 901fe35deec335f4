"""Greedy evaluation speed with and without dropping finished rows from the batch.

    python bench/sampler_compaction.py --model runs/textgame-full/mle/model --n 96

Runs both modes on the same test transitions, alternating, and writes
results/bench-sampler-compaction.json (time ratio, and whether the outputs agree).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from rlvr_world import device as dev
from rlvr_world.domains.textgame import TextGameData, TextGameDomain
from rlvr_world.engine import models
from rlvr_world.engine.evaluate import length_batches
from rlvr_world.engine.sampler import sample
from rlvr_world.engine.evaluate import subsample
from rlvr_world.text import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a saved model directory (with its tokenizer)")
    ap.add_argument("--n", type=int, default=96, help="test transitions")
    ap.add_argument("--batch-size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench-sampler-compaction.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    device = dev.pick_device("auto")
    amp = dev.amp(device)
    tok = load_tokenizer(args.model)
    model = models.load(args.model).to(device).eval()
    domain = TextGameDomain(tok, TextGameData())
    examples = subsample(domain.examples("test"), args.n, seed=3)
    seconds = {True: 0.0, False: 0.0}
    outputs: dict[bool, list] = {True: [], False: []}
    for idx in length_batches(examples, args.batch_size):
        prompts = [examples[i].prompt_ids for i in idx]
        for compact in (True, False):
            t0 = time.perf_counter()
            out = sample(model, prompts, eos_id=domain.eos_id, pad_id=domain.pad_id, max_new_tokens=512,
                         temperature=0.0, autocast=amp, compact=compact)
            seconds[compact] += time.perf_counter() - t0
            outputs[compact].extend(out.responses())
    same = sum(a == b for a, b in zip(outputs[True], outputs[False]))
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "n": len(examples), "batch_size": args.batch_size, "threads": args.threads,
        "compact_s": round(seconds[True], 2), "no_compact_s": round(seconds[False], 2),
        "speedup": round(seconds[False] / seconds[True], 2),
        "identical_responses": same,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
