"""Data parallelism on this machine: MLE and RL throughput at 1 and at N processes, and the all-reduce's share.

    python bench/distributed.py [--preset default] [--processes 1,2] [--cores 2] [--mle-epochs 0.02]
                                [--rl-steps 4] [--out results/bench-distributed.json]

For each process count P it runs `rlvr-world run --preset PRESET` (under
`torchrun --standalone --nproc-per-node P` when P > 1) with `--threads
cores / P`, so every setting uses the same cores, a short MLE phase
(`--mle.epochs`), `--rl.steps` GRPO steps and an 8-example evaluation, in a
fresh run directory under a temporary folder. From the run's
`mle/metrics.jsonl` and `rl/metrics.jsonl` it reports, after the first two
steps of each phase (warm-up): MLE target tokens a second and the median step;
RL responses a second, the median step and its sampling share; and for P > 1
the share of the step spent summing gradients across processes (`sync_s`,
which includes waiting for the slower process). On a 2-core CPU two processes
cannot be faster than one with two threads: the point is the mechanism and
its cost; on a multi-GPU machine the same command measures the speed-up.

Writes the JSON and a bar plot beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlvr_world.device import cpu_signature
from rlvr_world.engine.atomicwrite import save_json

WARMUP = 2  # steps of each phase left out of the timings


def run(preset: str, processes: int, threads: int, mle_epochs: float, rl_steps: int, out: Path) -> float:
    args = ["run", "--preset", preset, "--threads", str(threads), "--out", str(out), "--results",
            str(out / "results.json"), "--mle.epochs", str(mle_epochs), "--rl.steps", str(rl_steps),
            "--rl.eval-every", "0", "--eval-limit", "8", "--curve-limit", "0"]
    launcher = [sys.executable, "-m", "rlvr_world"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
         "-m", "rlvr_world"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    print(f"P={processes}: {shlex.join(launcher[1:] + args)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(launcher + args, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"P={processes} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()][WARMUP:]


def summarise(out: Path) -> dict:
    mle, rl = rows(out / "mle" / "metrics.jsonl"), rows(out / "rl" / "metrics.jsonl")
    if not mle or not rl:
        raise SystemExit(f"{out}: fewer steps than the {WARMUP} warm-up steps; raise --mle-epochs / --rl-steps")
    mle_s = sum(r["step_s"] for r in mle)
    rl_s = sum(r["time/step_s"] for r in rl)
    responses = json.loads((out / "config.json").read_text())["rl"]
    per_step = responses["prompts_per_step"] * responses["group_size"]
    return {
        "mle": {"steps": len(mle), "target_tokens_per_s": round(sum(r["target_tokens"] for r in mle) / mle_s, 1),
                "median_step_s": round(statistics.median(r["step_s"] for r in mle), 4),
                "sync_share": round(sum(r.get("sync_s", 0.0) for r in mle) / mle_s, 4)},
        "rl": {"steps": len(rl), "responses_per_s": round(per_step * len(rl) / rl_s, 2),
               "median_step_s": round(statistics.median(r["time/step_s"] for r in rl), 3),
               "mean_response_tokens": round(statistics.mean(r["response/length"] for r in rl), 1),
               "sample_share": round(sum(r["time/sample_s"] for r in rl) / rl_s, 4),
               "sync_share": round(sum(r.get("time/sync_s", 0.0) for r in rl) / rl_s, 4)},
    }


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = res["runs"]
    labels = [f"{r['processes']} x {r['threads']} thr" for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (phase, key, title) in zip(axes, (("mle", "target_tokens_per_s", "MLE: target tokens / s"),
                                              ("rl", "responses_per_s", "RL: responses / s"))):
        speed = [r[phase][key] for r in runs]
        sync = [r[phase]["sync_share"] * s for r, s in zip(runs, speed)]
        ax.bar(labels, speed, color="#4c72b0", label="throughput")
        ax.bar(labels, sync, color="#dd8452", label="share spent in all-reduce")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{res['preset']} preset, {res['cpu']['model']}, {res['cores']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--processes", default="1,2", help="comma-separated process counts")
    ap.add_argument("--cores", type=int, default=2, help="threads shared out among the processes")
    ap.add_argument("--mle-epochs", type=float, default=0.02)
    ap.add_argument("--rl-steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("results/bench-distributed.json"))
    a = ap.parse_args()
    res = {"command": shlex.join(["python", "bench/distributed.py", *sys.argv[1:]]), "preset": a.preset,
           "cpu": cpu_signature(), "cores": a.cores, "warmup_steps_left_out": WARMUP, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.processes.split(",")):
            threads = max(1, a.cores // n)
            wall = run(a.preset, n, threads, a.mle_epochs, a.rl_steps, Path(tmp) / f"p{n}")
            res["runs"].append({"processes": n, "threads": threads, "wall_s": round(wall, 1),
                                **summarise(Path(tmp) / f"p{n}")})
            print(json.dumps(res["runs"][-1]), file=sys.stderr, flush=True)
    save_json(a.out, res)
    plot(res, a.out.with_suffix(".png"))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
