"""Does GRPO's gain on the video prompts it trains on reach other prompts?

    python experiments/video_transfer.py --run runs/video --preset video --n 8 --steps 30

Runs GRPO with the preset's RL settings on one fixed batch of `n` training
prompts (the same batch every step) from the run's MLE model, and every
`eval-every` steps measures the greedy reward -(MAE + 1 - SSIM) on those
prompts, on `held-out` other training prompts and on `held-out` test prompts.
If the trained prompts improve and the others do not, the RL machinery works
and what limits RLVR is how far its gains generalise. Writes
results/bench-video-transfer.json and a plot of the three curves beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path

from rlvr_world import device as dev
from rlvr_world.domains.video import VideoDomain, VideoTokenizer
from rlvr_world.engine import models
from rlvr_world.engine.evaluate import evaluate
from rlvr_world.engine.rl import train_rl
from rlvr_world.engine.evaluate import subsample
from rlvr_world.pipeline import preset


def greedy(model, domain, examples) -> float:
    return round(evaluate(model, domain, examples, batch_size=48, max_new_tokens=256, show_progress=False).overall, 5)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["step"] for r in result["curve"]]
    for name, label in (("trained", f"the {result['rl']['prompts']} trained prompts"),
                        ("train_held_out", "other training prompts"), ("test", "test prompts")):
        ax.plot(steps, [r[f"greedy/{name}"] for r in result["curve"]], marker="o", label=label)
    ax.set_xlabel("GRPO step (the same prompts every step)")
    ax.set_ylabel("greedy reward -(MAE + 1 - SSIM)")
    ax.set_title("video: does the RL gain transfer?")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a video run directory with tokenizer/ and mle/model")
    ap.add_argument("--preset", default="video", help="the preset whose data and RL settings to use")
    ap.add_argument("--n", type=int, default=8, help="training prompts, the same every step")
    ap.add_argument("--held-out", type=int, default=200, help="other training prompts and test prompts measured")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench-video-transfer.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    cfg = preset(args.preset)
    rl = dataclasses.replace(cfg.rl, prompts_per_step=args.n, steps=args.steps, eval_every=args.eval_every,
                             save_every=args.steps + 1)
    tok = VideoTokenizer.from_pretrained(Path(args.run) / "tokenizer")
    domain = VideoDomain(tok, cfg.data)
    policy = models.load(Path(args.run) / "mle" / "model")
    pool = subsample(domain.examples("train", stage="rl"), args.n + args.held_out, seed=11)
    sets = {"trained": pool[: args.n], "train_held_out": pool[args.n:],
            "test": subsample(domain.examples("test"), args.held_out, seed=12)}
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "run": args.run,
              "preset": args.preset, "rl": {"lr": rl.lr, "group_size": rl.group_size, "temperature": rl.temperature,
                                            "credit": rl.credit, "prompts": args.n},
              "sizes": {k: len(v) for k, v in sets.items()}}
    with tempfile.TemporaryDirectory() as tmp:  # every step's batch is the n trained prompts (in a new order)
        train_rl(policy, tok, domain, sets["trained"], rl, Path(tmp),
                 evaluate_fn=lambda m: {f"greedy/{k}": greedy(m, domain, v) for k, v in sets.items()})
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").open()]
    result["curve"] = [{k: v for k, v in r.items() if k == "step" or k.startswith("greedy/")}
                       for r in rows if "greedy/test" in r]
    first, last = result["curve"][0], result["curve"][-1]
    result["gain"] = {k: round(last[f"greedy/{k}"] - first[f"greedy/{k}"], 5) for k in sets}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    plot(result, Path(args.out).with_suffix(".png"))
    print(f"gain {result['gain']}\nwrote {args.out} and its plot")


if __name__ == "__main__":
    main()
