"""How much faster is a video world model on 4×4 codes per frame than on 8×8?

    python experiments/video_grid_speed.py --runs runs/video runs/video-g8 --threads 2

For each finished run (its config and tokenizer), side by side in one
process with the same threads: a freshly built model of the preset's shape
trains `--mle-steps` MLE batches on the run's training examples, then
greedy-decodes `--n` multi-step test prompts. Reports the sequence length
and the seconds of each, and the ratios to the first run. Writes
results/bench-video-grid-speed.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from rlvr_world import device as dev
from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.engine import models
from rlvr_world.engine.atomicwrite import save_json
from rlvr_world.engine.evaluate import evaluate
from rlvr_world.engine.mle import MLEConfig, train_mle
from rlvr_world.engine.models import ModelConfig
from rlvr_world.engine.evaluate import subsample


def measure(run: Path, mle_steps: int, n: int) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    tok = VideoTokenizer.from_pretrained(run / "tokenizer")
    domain = VideoDomain(tok, VideoData(**cfg["data"]))
    train = domain.examples("train", stage="mle")
    test = subsample([e for e in domain.examples("test") if e.group == "multi_step"], n, seed=3)
    dev.seed_everything(0)
    model = models.build(ModelConfig(**cfg["model"]), len(tok), pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                         eos_id=tok.eos_token_id)
    mle = MLEConfig(**cfg["mle"])
    epochs = mle_steps * mle.batch_tokens / sum(len(e.prompt_ids) + len(e.target_ids) for e in train)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train_mle(model, tok, train, dataclasses.replace(mle, epochs=epochs, save_every=10**9), Path(d))
        mle_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(model, domain, test, batch_size=48, max_new_tokens=256, show_progress=False)
    eval_s = time.perf_counter() - t0
    return {"run": str(run), "grid": domain.data.grid,
            "tokens_per_example": len(test[0].prompt_ids) + len(test[0].target_ids), "mle_epochs": round(epochs, 4),
            "mle_s": round(mle_s, 1), "eval_examples": len(test), "eval_s": round(eval_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="finished video run directories (config.json, tokenizer/)")
    ap.add_argument("--mle-steps", type=int, default=10, help="MLE batches (of the preset's batch_tokens) per run")
    ap.add_argument("--n", type=int, default=96, help="multi-step test prompts decoded per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/bench-video-grid-speed.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    rows = [measure(Path(r), args.mle_steps, args.n) for r in args.runs]
    for r in rows:  # seconds per batch of tokens and per decoded prompt, relative to the first run
        r["mle_s_per_epoch_ratio"] = round((r["mle_s"] / r["mle_epochs"]) / (rows[0]["mle_s"] / rows[0]["mle_epochs"]),
                                           3)
        r["eval_s_ratio"] = round(r["eval_s"] / rows[0]["eval_s"], 3)
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "threads": args.threads, "runs": rows}
    save_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
