"""Where does a video world model repeat the previous frame, and what does RLVR do to those rollouts?

    python experiments/video_repetition.py --run runs/video

Reads a finished video run (its config, tokenizer and the MLE and RLVR test
evaluations, `eval_mle.json` / `eval_rlvr.json`; nothing is decoded again)
and splits the multi-step test rollouts by whether the model's last
predicted frame repeats the one before, code for code. For each side it
reports how much the real arm moved between those two frames (mean absolute
pixel change, 0-255), the reward, and how much RLVR changed the reward; and
how many rollouts RLVR stopped or started repeating. In the paper RLVR cut
its baseline's repetition, so there the repeats cost reward; a model that
repeats only where the real frames barely change gives the reward little to
punish. Both rewards are compared on the MLE model's rollouts: -(MAE + 1 -
SSIM) and, when the run measured LPIPS, the paper's -(MAE + LPIPS); as
repeats happen where the arm moves little, they are also compared within
quartiles of the real motion ("matched": the mean over the quartiles of
repeating minus other rollouts, weighted by the repeating ones; below 0 means
the reward punishes repeats). Writes results/bench-video-repetition.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.domains.video.evaluation import REWARD_FROM_PARTS, real_repetition
from rlvr_world.engine.atomicwrite import save_json


def describe(values: np.ndarray) -> dict:
    return {"mean": round(float(values.mean()), 4),
            "quartiles": np.quantile(values, [0.25, 0.5, 0.75]).round(3).tolist(),
            "p90": round(float(np.quantile(values, 0.9)), 3)} if len(values) else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True,
                    help="a finished video run directory (config.json, tokenizer/, eval_*.json)")
    ap.add_argument("--out", default="results/bench-video-repetition.json")
    args = ap.parse_args()
    run = Path(args.run)
    data = VideoData(**json.loads((run / "config.json").read_text())["data"])
    domain = VideoDomain(VideoTokenizer.from_pretrained(run / "tokenizer"), data)
    test = domain.examples("test")
    evals = {name: json.loads((run / f"eval_{name}.json").read_text())["records"] for name in ("mle", "rlvr")}
    recs = {name: {r["index"]: r for r in rs if r["group"] == "multi_step"} for name, rs in evals.items()}
    idx = sorted(recs["mle"])
    if len(idx) != sum(e.group == "multi_step" for e in test):
        raise SystemExit("the run's evaluations cover a subset of the test split (eval_limit): use a full run")
    frames = [test[i].payload.frames.astype(np.int16) for i in idx]  # (F, H, W, 3) each
    motion = np.array([np.abs(f[-1] - f[-2]).mean() for f in frames])
    rep = {name: np.array([recs[name][i]["repeat"] for i in idx]).astype(bool) for name in recs}
    value = {name: np.array([recs[name][i]["value"] for i in idx]) for name in recs}
    gain = value["rlvr"] - value["mle"]
    sides = {"repeating": rep["mle"], "others": ~rep["mle"]}
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "run": args.run, "grid": data.grid,
        "n_rollouts": len(idx),
        "repetition_rate": {"mle": round(100 * float(rep["mle"].mean()), 2),
                            "rlvr": round(100 * float(rep["rlvr"].mean()), 2),
                            "real_frames": real_repetition([test[i] for i in idx]).get("repetition_rate")},
        "by_mle_repetition": {side: {"n": int(m.sum()), "real_motion": describe(motion[m]),
                                     "mle_reward": round(float(value["mle"][m].mean()), 4) if m.any() else None,
                                     "rlvr_minus_mle_reward": round(float(gain[m].mean()), 4) if m.any() else None}
                              for side, m in sides.items()},
        "rlvr_stopped_repeating": int((rep["mle"] & ~rep["rlvr"]).sum()),
        "rlvr_started_repeating": int((~rep["mle"] & rep["rlvr"]).sum()),
    }
    edges = np.quantile(motion, [0.25, 0.5, 0.75])
    bins = np.digitize(motion, edges)  # 0..3
    result["rewards_on_mle_rollouts"] = {}
    for name, (needs, fn) in REWARD_FROM_PARTS.items():
        if not all(k in recs["mle"][idx[0]] for k in needs):
            continue
        r = np.array([fn(recs["mle"][i]) for i in idx])
        rows, diffs, weights = [], [], []
        for b in range(4):
            rep_b, oth_b = (bins == b) & rep["mle"], (bins == b) & ~rep["mle"]
            row = {"motion_bin": b, "n_repeating": int(rep_b.sum()), "n_other": int(oth_b.sum())}
            if rep_b.any() and oth_b.any():
                row |= {"repeating": round(float(r[rep_b].mean()), 4), "other": round(float(r[oth_b].mean()), 4)}
                diffs.append(r[rep_b].mean() - r[oth_b].mean())
                weights.append(rep_b.sum())
            rows.append(row)
        result["rewards_on_mle_rollouts"][name] = {
            "repeating": round(float(r[rep["mle"]].mean()), 4), "other": round(float(r[~rep["mle"]].mean()), 4),
            "matched_repeating_minus_other": round(float(np.average(diffs, weights=weights)), 4) if diffs else None,
            "by_motion_quartile": rows}
    save_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
