"""How much could a video world model gain by choosing codes for the pixel metric instead of their probability?

    python experiments/video_hedge.py --run runs/video --preset video --n 300

Greedy decoding writes each frame code's most probable value. The reward
scores the decoded pixels, and the frame tokenizer's codes are FSQ digits the
decoder reads as numbers, so when the model is unsure a code between its
candidates can decode closer to the real tile than the most probable one.
This experiment decodes the held-out test prompts two ways with the same model:
greedy, and "hedge", the code with the least expected L1 distance (in the
decoder's latent space) to a code drawn from the model's distribution, a rule
that uses nothing but the model's own probabilities. The gap between the two
is a gain RLVR could learn from the reward alone; it also says how far
an RLVR model's greedy codes moved towards the MLE model's hedge codes.
Writes results/bench-video-hedge.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from rlvr_world import device as dev
from rlvr_world.domains.video import VideoDomain, VideoTokenizer
from rlvr_world.engine import models
from rlvr_world.engine.evaluate import evaluate
from rlvr_world.engine.evaluate import subsample
from rlvr_world.pipeline import preset
from rlvr_world.stats import paired_test

METRICS = {"value": False, "psnr": False, "ssim": False, "mae": True}  # name -> lower is better


def hedge_rule(tok: VideoTokenizer):
    """pick(logits) -> the visual code minimising the expected latent L1 distance to a sampled code."""
    fsq, K = tok.frames.fsq, tok.codebook
    latent = fsq.from_codes(torch.arange(K)[:, None], 1).flatten(1)  # (K, D): each code as a 1x1 grid
    cost = torch.cdist(latent, latent, p=1)  # (K, K)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits[:, :K].float(), dim=-1)  # (n, K); non-visual ids are suppressed at free positions
        return (p @ cost).argmin(dim=-1)  # (n,)

    return pick


def summary(res, group: str) -> dict:
    recs = [r for r in res.records if r["group"] == group]
    return {k: round(float(np.mean([r[k] for r in recs])), 5) for k in METRICS}


def agreement(a, b, group: str) -> float:
    """Share of frame codes two decodings of the same examples have in common."""
    same = total = 0
    for ra, rb in zip(a.records, b.records):
        if ra["group"] == group:
            x, y = np.asarray(ra["response"]), np.asarray(rb["response"])
            same += int((x == y).sum())
            total += x.size
    return round(same / max(1, total), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a video run directory with tokenizer/, mle/model (and rl/model)")
    ap.add_argument("--preset", default="video", help="the preset whose data settings to use")
    ap.add_argument("--n", type=int, default=300, help="test examples per setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench-video-hedge.json")
    args = ap.parse_args()
    dev.set_threads(args.threads)
    run = Path(args.run)
    tok = VideoTokenizer.from_pretrained(run / "tokenizer")
    domain = VideoDomain(tok, preset(args.preset).data)
    test = domain.examples("test")
    examples = [e for g in domain.groups for e in subsample([e for e in test if e.group == g], args.n, seed=13)]
    pick = hedge_rule(tok)
    names = ["mle"] + (["rlvr"] if (run / "rl" / "model" / "config.json").is_file() else [])
    runs = {}
    for name in names:
        model = models.load(run / ("mle" if name == "mle" else "rl") / "model")
        for rule in ("greedy", "hedge"):
            print(f"{name} {rule} ...", flush=True)
            runs[name, rule] = evaluate(model, domain, examples, batch_size=48, max_new_tokens=256,
                                        show_progress=False, pick=pick if rule == "hedge" else None)
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "run": args.run,
              "preset": args.preset, "n_per_setting": args.n, "settings": {}}
    for g in domain.groups:
        s = {f"{name}/{rule}": summary(runs[name, rule], g) for name, rule in runs}
        mle_g, mle_h = ({"records": runs["mle", r].records} for r in ("greedy", "hedge"))
        s["hedge_vs_greedy_mle"] = {k: paired_test(mle_g, mle_h, g, binary=False, key=k, scale=1.0,
                                                   lower_is_better=low) for k, low in METRICS.items()}
        if "rlvr" in names:
            s["rlvr_vs_mle_greedy"] = {k: paired_test(mle_g, {"records": runs["rlvr", "greedy"].records}, g,
                                                      binary=False, key=k, scale=1.0, lower_is_better=low)
                                       for k, low in METRICS.items()}
            hedge = runs["mle", "hedge"]
            s["codes_shared_with_mle_hedge"] = {"mle_greedy": agreement(runs["mle", "greedy"], hedge, g),
                                                "rlvr_greedy": agreement(runs["rlvr", "greedy"], hedge, g)}
        result["settings"][g] = s
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["settings"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
