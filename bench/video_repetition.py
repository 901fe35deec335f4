"""Where does a video world model repeat the previous frame, and what does RLVR do to those rollouts?

    python bench/video_repetition.py --run runs/video

Reads a finished video run (its config, tokenizer and the MLE and RLVR test
evaluations, `eval_mle.json` / `eval_rlvr.json`; nothing is decoded again)
and splits the multi-step test rollouts by whether the model's last
predicted frame repeats the one before, code for code. For each side it
reports how much the real arm moved between those two frames (mean absolute
pixel change, 0-255), the reward, and how much RLVR changed the reward; and
how many rollouts RLVR stopped or started repeating. In the paper RLVR cut
its baseline's repetition, so there the repeats cost reward; a model that
repeats only where the real frames barely change gives the reward little to
punish. Writes results/bench-video-repetition.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from rlvr_world.domains.video import VideoData, VideoDomain, VideoTokenizer
from rlvr_world.domains.video.evaluation import real_repetition
from rlvr_world.engine.checkpoint import save_json


def describe(values: np.ndarray) -> dict:
    return {"mean": round(float(values.mean()), 4), "quartiles": np.quantile(values, [0.25, 0.5, 0.75]).round(3).tolist(),
            "p90": round(float(np.quantile(values, 0.9)), 3)} if len(values) else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished video run directory (config.json, tokenizer/, eval_*.json)")
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
        "repetition_rate": {"mle": round(100 * float(rep["mle"].mean()), 2), "rlvr": round(100 * float(rep["rlvr"].mean()), 2),
                            "real_frames": real_repetition([test[i] for i in idx]).get("repetition_rate")},
        "by_mle_repetition": {side: {"n": int(m.sum()), "real_motion": describe(motion[m]),
                                     "mle_reward": round(float(value["mle"][m].mean()), 4) if m.any() else None,
                                     "rlvr_minus_mle_reward": round(float(gain[m].mean()), 4) if m.any() else None}
                              for side, m in sides.items()},
        "rlvr_stopped_repeating": int((rep["mle"] & ~rep["rlvr"]).sum()),
        "rlvr_started_repeating": int((~rep["mle"] & rep["rlvr"]).sum()),
    }
    save_json(Path(args.out), result)
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
