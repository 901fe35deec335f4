"""Does the task-specific reward pay a wrong attempted change less than "no change"?

    python experiments/textgame_attempts.py --eval runs/tg-u25/eval_mle.json runs/tg-u25/eval_rlvr.json

For every changed test transition of each saved evaluation (the per-example
greedy responses `rlvr-world run` writes), scores the answer "nothing changes"
with the task-specific reward, and compares it with the model's own answer
where that answer attempts a change and is wrong. Counts unparseable answers,
attempted changes (parseable, something modified or removed) and exact
answers. Writes results/textgame-attempts.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from rlvr_world.domains.textgame import TextGameData, TextGameDomain, reward

NO_CHANGE = json.dumps({"modified": [], "removed": [], "score": {}})


def measure(records: list[dict], test: list) -> dict:
    changed = [r for r in records if r["group"] == "changed"]
    no_change = {r["index"]: reward.task_specific(NO_CHANGE, test[r["index"]])[0] for r in changed}
    diffs = [reward.parse_diff(r["response"])[0] for r in changed]
    unparseable = sum(d is None for d in diffs)
    attempts = [r for r, d in zip(changed, diffs) if d is not None and (d.get("modified") or d.get("removed"))]
    wrong = [(reward.task_specific(r["response"], test[r["index"]])[0], no_change[r["index"]])
             for r in attempts if not r["value"]]
    return {"changed": len(changed), "unparseable": unparseable, "attempted": len(attempts),
            "attempted_right": sum(int(r["value"]) for r in attempts), "right": sum(int(r["value"]) for r in changed),
            "no_change_reward_mean": round(statistics.fmean(no_change.values()), 4),
            "wrong_attempts": len(wrong),
            "wrong_attempt_reward_mean": round(statistics.fmean(w for w, _ in wrong), 4) if wrong else None,
            "wrong_attempt_reward_median": round(statistics.median(w for w, _ in wrong), 4) if wrong else None,
            "wrong_attempts_paid_no_more_than_no_change": (round(sum(w <= n for w, n in wrong) / len(wrong), 4)
                                                           if wrong else None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval", nargs="+", required=True, help="eval_*.json files of text-game runs")
    p.add_argument("--out", default="results/textgame-attempts.json")
    args = p.parse_args()
    test = TextGameDomain.transitions("test", TextGameData())
    res = {"command": "python experiments/textgame_attempts.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
           "reward": "task_specific", "runs": {}}
    for path in args.eval:
        records = json.loads(Path(path).read_text())["records"]
        if len(records) != len(test):
            sys.exit(f"{path}: {len(records)} records, but the test split has {len(test)} (evaluate the whole split)")
        res["runs"][path] = measure(records, test)
        print(path, json.dumps(res["runs"][path]))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
